"""rq-dashboard behind Basic auth, plus the project's own metrics page."""
from __future__ import annotations

from flask import Flask


def init_dashboard(app: Flask) -> None:
    pass

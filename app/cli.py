"""Operator commands: `flask --app app <command>`."""
from __future__ import annotations

import click
from flask import Flask

from app.connections import db_session
from app.models import create_tables


@click.command("init-db")
def init_db_command():
    """Create missing tables and indexes (idempotent)."""
    with db_session():
        create_tables()
    click.echo("database ready")


def register(app: Flask) -> None:
    app.cli.add_command(init_db_command)

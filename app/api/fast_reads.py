"""The read routes' fast path: a plain, successful GET of a run's status, a history page or an
alerts page is answered without Flask's per-request machinery; every other request goes to Flask.

Profiling the status route under gunicorn showed the request's own work (one indexed query and
a small JSON body) was about a third of its CPU: the rest was Flask's request and app contexts,
their signals, the before/after hooks and teardowns of every blueprint (the dashboard's guard
included), URL routing and the response object. Those routes are the service's hottest and most
uniform reads, so this middleware answers them directly, with the same pieces the Flask views
use: the same token check (`app.auth.header_principal`, named tokens of any scope or API_TOKEN), the same query models
(`app.api.schemas`), the same use cases (`app.core.listings`) on this app's database and
settings, and the app's own JSON provider, so the status, headers and bytes are the view's.

It answers only what it is sure of: a request it does not recognise exactly (another method or
path, a query string with anything but plain characters, a parameter given twice, a value the
model refuses, a missing token when one is needed, an unknown job or run, any exception) is
handed to Flask untouched, which gives its usual answer (400, 401, 404, 503). So every error
still has one source, and `tests/test_fast_reads.py` compares both paths byte for byte.

History and alerts pages are kept (`app.core.page_cache`) and served again, after the same
token check, while the database has committed nothing since they were read; a history page
with a run waiting for RQ's retry is not kept (its retry time is read from Redis).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from app.api.schemas import AlertQuery, HistoryQuery
from app.auth import header_principal
from app.config import using_settings
from app.connections import using_database
from app.core import jobs, listings
from app.core.errors import ServiceError
from app.core.page_cache import PageCache, snapshot
from app.core.run_states import RETRY_STATUS, add_retry_states

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Exactly the paths Flask routes to these views (no trailing slash, no encoded characters).
_JOB_PATH = re.compile(r"/api/jobs/([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,64})", re.ASCII)
ALERTS_PATH = "/api/alerts"
# Query strings the fast path parses itself: nothing that percent- or plus-decoding would change,
# so the values are the ones Werkzeug's `request.args` gives.
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.:=&-]*", re.ASCII)


class FastReads:
    """WSGI middleware in front of `app.wsgi_app` (installed by `create_app`)."""

    def __init__(self, app: Flask, flask_wsgi_app: WSGIApp) -> None:
        self.app = app
        self.flask_wsgi_app = flask_wsgi_app
        self.settings = app.config["SETTINGS"]
        self.database = app.extensions["database"]
        self.pages = PageCache()
        # The JSON provider's compact form, as `jsonify` writes it outside debug mode.
        self.enabled = app.json.compact is not False and not app.debug  # type: ignore[attr-defined]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.enabled and environ.get("REQUEST_METHOD") == "GET" and not environ.get("SCRIPT_NAME"):
            path = environ.get("PATH_INFO", "")
            if path.startswith("/api/"):
                try:
                    body = self._answer(path, environ)
                except Exception:  # noqa: BLE001 - Flask answers it again, with its own error handling
                    body = None
                if body is not None:
                    start_response(
                        "200 OK",
                        [
                            ("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))),
                            ("X-Content-Type-Options", "nosniff"),
                        ],
                    )
                    return [body]
        return self.flask_wsgi_app(environ, start_response)

    def _answer(self, path: str, environ: dict[str, Any]) -> bytes | None:
        """The 200 body the Flask view would give, or None: let Flask answer."""
        settings = self.settings
        if settings.read_auth_required and header_principal(settings, environ.get("HTTP_AUTHORIZATION", "")) is None:
            return None
        args = _plain_args(environ.get("QUERY_STRING", ""))
        if args is None:
            return None
        page_key = f"{path}?{environ.get('QUERY_STRING', '')}"
        if path == ALERTS_PATH:
            alert_query = AlertQuery.model_validate(args)
            return self._run(lambda: listings.alerts_page(alert_query), page_key)
        match = _JOB_PATH.fullmatch(path)
        if match is None:
            return None
        job, second = match.groups()
        name = jobs.job_name(job)
        redis = self.app.extensions["redis"]
        if second == "history":
            history_query = HistoryQuery.model_validate(args)

            def history() -> dict[str, Any]:
                page = listings.history_page(name, history_query)
                add_retry_states(redis, page["runs"])  # as the view: runs waiting for a retry say when
                return page

            return self._run(history, page_key, keep=_no_run_waits_for_retry)
        if second == "trigger" or args:  # GET on trigger is a 405; status takes no parameters
            return None
        run_id = jobs.run_id(second)
        return self._run(lambda: add_retry_states(redis, [listings.run_status(name, run_id)])[0])

    def _run(
        self,
        use_case: Callable[[], dict[str, Any]],
        page_key: str | None = None,
        keep: Callable[[dict[str, Any]], bool] = lambda data: True,
    ) -> bytes | None:
        """The use case's JSON body. With a `page_key`, a page kept since the current snapshot is
        answered without running the use case, and a new answer is kept if `keep` says so."""
        db = self.database
        read_after = None
        with using_database(db), using_settings(self.settings):
            try:
                if page_key is not None and (read_after := snapshot()) is not None:
                    kept = self.pages.get(page_key, read_after)
                    if kept is not None:
                        return kept
                data = use_case()
            except ServiceError:
                return None
            finally:
                if not db.is_closed():
                    db.close()
        text: str = self.app.json.dumps(data, separators=(",", ":"))
        body = (text + "\n").encode()
        if read_after is not None and keep(data):  # read_after is only read for a page_key
            self.pages.put(page_key, read_after, body)
        return body


def _no_run_waits_for_retry(page: dict[str, Any]) -> bool:
    """A history page can be kept unless a run on it shows RQ's retry time (Redis, not the snapshot)."""
    return all(run["status"] != RETRY_STATUS for run in page["runs"])


def _plain_args(query: str) -> dict[str, str] | None:
    """The query's parameters when it has only plain characters and no repeated name, else None."""
    if not query:
        return {}
    if not _PLAIN_QUERY.fullmatch(query):
        return None
    args: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if key in args:
            return None  # Flask answers "given more than once"
        args[key] = value
    return args

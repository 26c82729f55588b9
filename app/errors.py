"""API errors: small named exceptions, and handlers that turn every failure into a JSON body.

The service layer's domain errors (`app.core.errors`) are answered through one table,
`DOMAIN_ERRORS` (HTTP status and JSON error code per error class).

No request ever yields an HTML page or a traceback: unknown exceptions are logged and
answered with a generic 500 body, and an unreachable Redis or database answers 503.
"""

from __future__ import annotations

import logging

import peewee
import redis.exceptions
from flask import Flask, jsonify
from rq.exceptions import NoSuchJobError
from werkzeug.exceptions import HTTPException

from app.connections import discard_idle_connections
from app.core import errors as domain

log = logging.getLogger(__name__)


class APIError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(APIError):
    status, code = 400, "bad_request"


class Unauthorized(APIError):
    status, code = 401, "unauthorized"


class NotFound(APIError):
    status, code = 404, "not_found"


class Conflict(APIError):
    status, code = 409, "conflict"


class ServiceUnavailable(APIError):
    status, code = 503, "service_unavailable"


# The API's one table: domain error -> (HTTP status, JSON error code). The most specific class wins.
DOMAIN_ERRORS: dict[type[domain.ServiceError], tuple[int, str]] = {
    domain.InvalidInput: (400, "bad_request"),
    domain.NotFound: (404, "not_found"),
    domain.Conflict: (409, "conflict"),
}


def error_response(status: int, code: str, message: str, **details):
    body = {"error": {"code": code, "message": message, **details}}
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if status == 429 and "retry_after_s" in details:
        response.headers["Retry-After"] = str(details["retry_after_s"])
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError):
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.errorhandler(domain.ServiceError)
    def _domain_error(exc: domain.ServiceError):
        status, code = next(DOMAIN_ERRORS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_ERRORS)
        return error_response(status, code, exc.message, **exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        response = error_response(exc.code or 500, _http_code(exc), exc.description or exc.name)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc):
        log.warning("redis unavailable: %s", type(exc).__name__)
        return error_response(503, "redis_unavailable", "Redis is unavailable; try again shortly.")

    @app.errorhandler(NoSuchJobError)
    def _no_such_job(exc):
        return error_response(404, "not_found", "no such job")

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    def _database_down(exc):
        log.warning("database unavailable: %s", type(exc).__name__)
        discard_idle_connections()
        return error_response(503, "database_unavailable", "The database is unavailable; try again shortly.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Internal error; it has been logged.")

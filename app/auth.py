"""Bearer-token auth for the API and Basic auth for the dashboard, compared in constant time."""

from __future__ import annotations

import functools
import hmac

from flask import current_app, request

from app.errors import Unauthorized


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def bearer_header_ok(header: str, expected: str) -> bool:
    """Whether an Authorization header value is `Bearer <expected>` (the API's and the fast reads' check)."""
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and _same(token.strip(), expected)


def bearer_token_ok() -> bool:
    return bearer_header_ok(request.headers.get("Authorization", ""), current_app.config["SETTINGS"].api_token)


def require_token(view):
    """Mutating routes: always need `Authorization: Bearer $API_TOKEN`."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not bearer_token_ok():
            raise Unauthorized("missing or wrong bearer token")
        return view(*args, **kwargs)

    wrapped.requires_token = True
    return wrapped


def require_read_token(view):
    """Read routes: need the token when API_READ_AUTH=on, or by default (`auto`) in production."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_app.config["SETTINGS"].read_auth_required and not bearer_token_ok():
            raise Unauthorized("missing or wrong bearer token")
        return view(*args, **kwargs)

    return wrapped


def dashboard_credentials_ok() -> bool:
    settings = current_app.config["SETTINGS"]
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = _same(auth.username or "", settings.dashboard_username)
    password_ok = _same(auth.password or "", settings.dashboard_password)
    return user_ok and password_ok

"""Who is asking, and what they may do: API bearer tokens and dashboard Basic auth, with roles.

A request's principal is a name and a role (`viewer` reads, `operator` also acts). It comes from
the named credentials (API_TOKENS with scopes `read` / `operate`, DASHBOARD_USERS with roles
`viewer` / `operator`, stored as hashes: `app.credentials`) or from the single credentials
that predate them (API_TOKEN, DASHBOARD_USERNAME/DASHBOARD_PASSWORD), which act as operators.
Every comparison is constant-time. The principal is kept on `flask.g` for the audit hooks.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from flask import current_app, g, request

from app.config import Settings
from app.credentials import Role, is_remembered, remember, timing_dummy, verify_secret
from app.errors import APIError, Unauthorized
from app.login_throttle import LoginThrottle, TooManyLoginAttempts

LEGACY_TOKEN_NAME = "api-token"  # how API_TOKEN appears in the audit log


class Forbidden(APIError):
    """Authenticated, but the role does not allow this."""

    status, code = 403, "forbidden"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    @property
    def can_operate(self) -> bool:
        return self.role is Role.OPERATOR


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def token_principal(settings: Settings, token: str, throttle: LoginThrottle | None = None) -> Principal | None:
    """The holder of `token`: a named API token, or API_TOKEN (an operator); None if neither.

    Tokens stored as sha256 (the generated ones) and tokens this process verified before answer
    at once. A PBKDF2-stored token is checked in full only with a `throttle` to spend a check of
    (raising TooManyLoginAttempts when it is spent): each check costs ~0.5 s of CPU, so without
    one (the read routes' fast path) the answer is None and the caller hands the request on."""
    found = None
    slow = []
    for credential in settings.api_token_credentials:  # every one checked: the time does not tell which
        if credential.hash.startswith("pbkdf2") and not is_remembered(token, credential.hash):
            slow.append(credential)
        elif verify_secret(token, credential.hash) and found is None:
            found = Principal(credential.name, credential.role)
    if found is None and _same(token, settings.api_token):
        found = Principal(LEGACY_TOKEN_NAME, Role.OPERATOR)
    if found is not None or not slow or throttle is None:
        return found
    throttle.take()
    for credential in slow:
        if verify_secret(token, credential.hash) and found is None:
            found = Principal(credential.name, credential.role)
    return found


def header_principal(settings: Settings, header: str, throttle: LoginThrottle | None = None) -> Principal | None:
    """The holder of the token in an Authorization header value `Bearer <token>`; None if none.

    The API's views and the read routes' fast path (`app.api.fast_reads`) both ask this."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token_principal(settings, token, throttle) if scheme.lower() == "bearer" and token else None


def api_principal() -> Principal | None:
    """The bearer token's holder for this request (looked up once per request).

    None when there is none or it is wrong; also None, with `g.login_retry_after` set, when this
    process's budget of slow (PBKDF2) token checks is spent: `_require_principal` answers 429."""
    if "api_principal" not in g:
        principal = None
        try:
            principal = header_principal(
                _settings(), request.headers.get("Authorization", ""), current_app.extensions.get("login_throttle")
            )
        except TooManyLoginAttempts as exc:
            g.login_retry_after = exc.retry_after
        g.api_principal = principal
    return g.api_principal


class TooManyRequests(APIError):
    """The process's budget of slow credential checks is spent (`app.login_throttle`)."""

    status, code = 429, "too_many_login_attempts"


def _require_principal() -> Principal:
    principal = api_principal()
    if principal is None:
        if "login_retry_after" in g:
            seconds = g.login_retry_after
            raise TooManyRequests(f"Too many token checks on this server; retry in {seconds} s.", retry_after_s=seconds)
        raise Unauthorized("missing or wrong bearer token")
    return principal


def check_operate() -> None:
    """Raise unless the bearer token may act (401 without a valid token, 403 with a read one)."""
    principal = _require_principal()
    if not principal.can_operate:
        raise Forbidden("this token has the read scope; the action needs a token with the operate scope")


def require_token(view):
    """Mutating routes: need a bearer token with the `operate` scope (or API_TOKEN)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        check_operate()
        return view(*args, **kwargs)

    wrapped.requires_token = True
    return wrapped


def require_read_token(view):
    """Read routes: need a token (any scope) when API_READ_AUTH=on, or by default (`auto`) in production."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if _settings().read_auth_required:
            _require_principal()
        return view(*args, **kwargs)

    return wrapped


def require_any_token(view):
    """Routes that always need a token of any scope, whatever API_READ_AUTH says (the audit log)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        _require_principal()
        return view(*args, **kwargs)

    return wrapped


def login_principal(
    settings: Settings, username: str, password: str, throttle: LoginThrottle | None = None
) -> Principal | None:
    """The dashboard user with these credentials: a named user, or the single login (an operator).

    Credentials this process verified before answer at once; any other attempt first spends one
    check of `throttle` (raising TooManyLoginAttempts when it is spent), then is checked in full:
    an unknown name against a dummy hash as slow as the real ones, so the time tells nothing."""
    named = next((c for c in settings.dashboard_user_credentials if _same(username, c.name)), None)
    single = _single_login_key(settings) if named is None and _same(username, settings.dashboard_username) else ""
    if named is not None and is_remembered(password, named.hash):
        return Principal(named.name, named.role)
    if single and is_remembered(password, single):
        return Principal(settings.dashboard_username, Role.OPERATOR)
    if throttle is not None:
        throttle.take()
    if named is not None:
        return Principal(named.name, named.role) if verify_secret(password, named.hash) else None
    verify_secret(password, timing_dummy([c.hash for c in settings.dashboard_user_credentials]))
    if _same(username, settings.dashboard_username) & _same(password, settings.dashboard_password):
        remember(password, single)
        return Principal(settings.dashboard_username, Role.OPERATOR)
    return None


def _single_login_key(settings: Settings) -> str:
    """What a verified DASHBOARD_USERNAME/PASSWORD login is remembered under: changes with them."""
    login = f"{settings.dashboard_username}\0{settings.dashboard_password}".encode("utf-8", "surrogatepass")
    return f"single-login${hashlib.sha256(login).hexdigest()}"


def dashboard_principal() -> Principal | None:
    """The dashboard user of this request's Basic credentials (looked up once per request).

    None when there are none or they are wrong; also None, with `g.login_retry_after` set, when
    this process's budget of password checks is spent (the dashboard answers 429)."""
    if "dashboard_principal" not in g:
        auth = request.authorization
        principal = None
        if auth is not None and auth.type == "basic":
            try:
                principal = login_principal(
                    _settings(), auth.username or "", auth.password or "", current_app.extensions.get("login_throttle")
                )
            except TooManyLoginAttempts as exc:
                g.login_retry_after = exc.retry_after
        g.dashboard_principal = principal
    return g.dashboard_principal

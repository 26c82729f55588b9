"""Named credentials with roles: their configured form, and the hashes they are stored as.

DASHBOARD_USERS and API_TOKENS list `name:role:hash` / `name:scope:hash` entries, so the
environment never holds a plaintext password or token; `flask hash-secret` prints a hash. Two
hash forms are accepted:

- `pbkdf2_sha256$<iterations>$<salt>$<base64 digest>`: for passwords people choose (slow on
  purpose; a verified secret is remembered per process, so a dashboard polling every few seconds
  pays the cost once);
- `sha256$<hex digest>`: for generated API tokens (high entropy, so a fast hash is enough, and
  a wrong token costs every request the same few microseconds).

Comparisons are constant-time (`hmac.compare_digest`). Pure standard library: `app.config`
validates the settings with it, `app.auth` checks requests with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from threading import Lock

PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_SHA256 = re.compile(r"sha256\$([0-9a-f]{64})")
_PBKDF2 = re.compile(r"pbkdf2_sha256\$([1-9][0-9]{0,7})\$([A-Za-z0-9./+=_-]{1,128})\$([A-Za-z0-9+/=_-]{43,88})")
_REMEMBERED = 1024  # verified (hash, secret) pairs kept per process


class Role(str, Enum):
    """What a dashboard user (or token) may do: `viewer` reads, `operator` also acts."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class Scope(str, Enum):
    """What an API token may do: `read` the read routes, `operate` also the mutating ones."""

    READ = "read"
    OPERATE = "operate"

    @property
    def role(self) -> Role:
        return Role.OPERATOR if self is Scope.OPERATE else Role.VIEWER


class CredentialError(ValueError):
    """A DASHBOARD_USERS or API_TOKENS entry is malformed (the message never quotes a hash)."""


@dataclass(frozen=True)
class Credential:
    name: str
    role: Role
    hash: str


def parse_credentials(text: str, setting: str, grants: type[Role] | type[Scope]) -> tuple[Credential, ...]:
    """`name:grant:hash,...` into credentials; raises CredentialError naming the entry by position."""
    found: dict[str, Credential] = {}
    for position, raw in enumerate((e.strip() for e in text.split(",") if e.strip()), start=1):
        name, _, rest = raw.partition(":")
        grant, _, stored = rest.partition(":")
        where = f"{setting} entry {position}"
        if not NAME.fullmatch(name):
            raise CredentialError(f"{where}: the name must be 1-64 letters, digits or _.@+-")
        allowed = [g.value for g in grants]
        if grant not in allowed:
            raise CredentialError(
                f"{where} ({name}): the {grants.__name__.lower()} must be one of {', '.join(allowed)}"
            )
        if not is_hash(stored):
            raise CredentialError(
                f"{where} ({name}): not a hash from `flask hash-secret` (sha256$<hex> or pbkdf2_sha256$...)"
            )
        if name in found:
            raise CredentialError(f"{where}: the name {name} is given twice")
        role = grants(grant).role if grants is Scope else Role(grant)
        found[name] = Credential(name=name, role=role, hash=stored)
    return tuple(found.values())


def is_hash(stored: str) -> bool:
    return bool(_SHA256.fullmatch(stored) or _PBKDF2.fullmatch(stored))


def hash_secret(secret: str, *, algorithm: str = "pbkdf2_sha256", iterations: int = PBKDF2_ITERATIONS) -> str:
    """The stored form of `secret` (a fresh random salt for PBKDF2)."""
    if algorithm == "sha256":
        return "sha256$" + hashlib.sha256(_utf8(secret)).hexdigest()
    if algorithm != "pbkdf2_sha256":
        raise ValueError(f"unknown algorithm {algorithm!r}")
    salt = secrets.token_urlsafe(16)
    digest = hashlib.pbkdf2_hmac("sha256", _utf8(secret), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


# Verified secrets, remembered as (stored hash, keyed digest of the secret): never the secret.
_PROCESS_KEY = os.urandom(32)
_verified: OrderedDict[tuple[str, bytes], None] = OrderedDict()
_verified_lock = Lock()


def _remembered_key(secret: str, stored: str) -> tuple[str, bytes]:
    return stored, hmac.new(_PROCESS_KEY, _utf8(secret), hashlib.sha256).digest()


def is_remembered(secret: str, stored: str) -> bool:
    """Whether this process has already verified `secret` against `stored` (no hashing)."""
    key = _remembered_key(secret, stored)
    with _verified_lock:
        if key in _verified:
            _verified.move_to_end(key)
            return True
    return False


def remember(secret: str, stored: str) -> None:
    """Note that `secret` matched `stored` (the oldest of `_REMEMBERED` pairs is forgotten)."""
    key = _remembered_key(secret, stored)
    with _verified_lock:
        _verified[key] = None
        while len(_verified) > _REMEMBERED:
            _verified.popitem(last=False)


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` hashes to `stored`, in constant time for a given hash."""
    if is_remembered(secret, stored):
        return True
    ok = _check(secret, stored)
    if ok:
        remember(secret, stored)
    return ok


def timing_dummy(stored_hashes: list[str]) -> str:
    """A hash no secret matches that costs as much to check as the slowest of `stored_hashes`.

    Checked for an unknown user name, so the answer's time does not tell which names exist."""
    rounds = [int(m.group(1)) for h in stored_hashes if (m := _PBKDF2.fullmatch(h))]
    if not rounds:
        return "sha256$" + "0" * 64
    return f"pbkdf2_sha256${max(rounds)}$timing-dummy${base64.b64encode(bytes(32)).decode()}"


def _check(secret: str, stored: str) -> bool:
    if match := _SHA256.fullmatch(stored):
        return hmac.compare_digest(hashlib.sha256(_utf8(secret)).hexdigest(), match.group(1))
    if match := _PBKDF2.fullmatch(stored):
        iterations, salt, expected = int(match.group(1)), match.group(2), match.group(3)
        digest = hashlib.pbkdf2_hmac("sha256", _utf8(secret), salt.encode(), iterations)
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    return False


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a header may decode to lone surrogates: never raise


def generate_token() -> str:
    return secrets.token_urlsafe(32)

"""Request validation (pydantic): bad input becomes a 400 JSON error before Redis or SQL sees it.

The boundary normalises or refuses what the databases and Python cannot hold: times that
leave the datetime range once converted to UTC, NUL characters anywhere in a URL, JSON
bodies nested past the interpreter's recursion limit or with numbers Python will not
convert. Cursors are checked in `app.core.pagination` (integer ids in 64 bits, storable text).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.core.jobs import RUN_ID_PATTERN  # noqa: F401 - the OpenAPI document names it
from app.core.pagination import unsafe_text
from app.errors import BadRequest

RunStatusName = Literal["queued", "scheduled", "started", "finished", "failed", "canceled", "stopped", "skipped"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=200)


class AlertActionBody(Strict):
    comment: str | None = Field(None, max_length=2000, description="why, for the next person (kept with the alert)")


class TriggerBody(Strict):
    force: bool = Field(False, description="queue behind the active run instead of answering 409")


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=200)


class HistoryQuery(PageQuery):
    status: RunStatusName | None = None
    trigger: Literal["scheduled", "manual", "retry"] | None = None


class AlertQuery(PageQuery):
    source: str | None = Field(None, max_length=40, pattern=r"^[a-z_]+$")
    severity: Literal["high", "medium", "low"] | None = None
    type: str | None = Field(None, max_length=40, pattern=r"^[a-z_]+$")
    state: Literal["open", "acknowledged", "resolved"] | None = None
    since: datetime | None = None

    @field_validator("since")
    @classmethod
    def _as_naive_utc(cls, value: datetime | None) -> datetime | None:
        return as_naive_utc(value)


def as_naive_utc(value: datetime | None) -> datetime | None:
    """A time as naive UTC (how the database stores times); ValueError when UTC has no such time."""
    if value is not None and value.tzinfo is not None:
        try:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-12:00 is in the year 10000 in UTC
            raise ValueError("out of range once converted to UTC (0001-01-01 to 9999-12-31 UTC)") from None
    return value


MAX_MESSAGE_NAME = 50  # characters of a client-chosen field name quoted back in an error


def quoted(name: object) -> str:
    """A client-chosen name as an error message may show it: shortened, and every character that
    is not printable (controls, NUL, bidi overrides, lone surrogates) written as its escape."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(name)[:MAX_MESSAGE_NAME]
    )


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(quoted(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def reject_unsafe_url() -> None:
    """before_request, every route: a NUL (or lone surrogate) in the path or query string is a 400.

    No route accepts one, PostgreSQL cannot store one, and refusing it here means no view,
    Redis key or SQL parameter ever sees it.
    """
    texts = [request.path]
    for key, values in request.args.lists():
        texts.append(key)
        texts.extend(values)
    for text in texts:
        reason = unsafe_text(text)
        if reason is not None:
            raise BadRequest(f"the URL {reason}")


def parse_query(model: type[BaseModel], args) -> BaseModel:
    data = {}
    for key in args:
        values = args.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"{quoted(key)}: given more than once")
        data[key] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_message(exc)) from None


def parse_json_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """An empty body means defaults; anything else must be a JSON object of the model's fields."""
    if not raw.strip():
        return model()
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BadRequest(_message(exc)) from None

"""Request validation (pydantic): bad input becomes a 400 JSON error before Redis or SQL sees it."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import BadRequest

RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
RunStatusName = Literal["queued", "scheduled", "started", "finished", "failed", "canceled", "stopped", "skipped"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=200)


class TriggerBody(Strict):
    force: bool = Field(False, description="queue behind the active run instead of answering 409")


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=200)


class HistoryQuery(PageQuery):
    status: RunStatusName | None = None
    trigger: Literal["scheduled", "manual"] | None = None


class AlertQuery(PageQuery):
    source: str | None = Field(None, max_length=40, pattern=r"^[a-z_]+$")
    severity: Literal["high", "medium", "low"] | None = None
    type: str | None = Field(None, max_length=40, pattern=r"^[a-z_]+$")
    since: datetime | None = None

    @field_validator("since")
    @classmethod
    def _as_naive_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value


def _message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_query(model: type[BaseModel], args) -> BaseModel:
    data = {}
    for key in args:
        values = args.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"{key}: given more than once")
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
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BadRequest(_message(exc)) from None

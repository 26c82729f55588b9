"""The audit log: who did what, to what, when, from where, and whether it was allowed.

Written once here for every adapter: the API and the dashboards record each mutating request
from one hook per adapter (`app.request_audit`), the CLI from one wrapper around its commands
(`app.cli`), so an action added later is audited without anyone remembering to. Entries are
read newest first with keyset paging (`list_entries`), and the weekly cleanup deletes those
older than AUDIT_RETENTION_DAYS (`delete_before`).

Nothing secret is ever recorded: no header, password or token, only names and error messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from app.connections import database, db_session
from app.core.errors import ValueOutOfRange
from app.core.pagination import decode_cursor, encode_cursor, unsafe_text
from app.models import AuditEntry, iso, utcnow

log = logging.getLogger(__name__)

MAX_PAGE = 500


class Outcome(str, Enum):
    OK = "ok"
    REFUSED = "refused"  # 4xx: not authenticated, not allowed, bad input, conflicting state
    FAILED = "failed"  # the action was allowed but broke (5xx, Redis or database down)


class Source(str, Enum):
    API = "api"
    DASHBOARD = "dashboard"
    RQ_DASHBOARD = "rq-dashboard"
    CLI = "cli"
    SCHEDULER = "scheduler"


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    source: Source | None = None
    since: datetime | None = None  # inclusive, naive UTC
    until: datetime | None = None  # exclusive, naive UTC


def _fit(value: str | None, limit: int) -> str:
    """Text as a column can hold it: cut to its length, without characters a database refuses."""
    text = "" if value is None else str(value)
    if unsafe_text(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8", "replace").replace("\x00", "\\x00")
    return text[:limit]


def record(
    *,
    actor: str,
    action: str,
    source: Source,
    outcome: Outcome = Outcome.OK,
    role: str = "",
    target: str = "",
    reason: str = "",
    remote_addr: str = "",
    request_id: str = "",
    at: datetime | None = None,
) -> AuditEntry:
    """Store one entry (in its own unit of work) and log it; the caller decides what a failure means."""
    fields = {
        "actor": _fit(actor, 100) or "anonymous",
        "role": _fit(role, 20),
        "action": _fit(action, 100),
        "target": _fit(target, 300),
        "outcome": Outcome(outcome).value,
        "reason": _fit(reason, 300),
        "source": Source(source).value,
        "remote_addr": _fit(remote_addr, 64),
        "request_id": _fit(request_id, 64),
        "at": at or utcnow(),
    }
    with db_session(), database.atomic():
        entry = AuditEntry.create(**fields)
    log.info(
        "audit: %s (%s) %s %s via %s: %s%s",
        fields["actor"],
        fields["role"] or "-",
        fields["action"],
        fields["target"] or "-",
        fields["source"],
        fields["outcome"],
        f" ({fields['reason']})" if fields["reason"] else "",
    )
    return entry


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": entry.actor,
        "role": entry.role or None,
        "action": entry.action,
        "target": entry.target or None,
        "outcome": entry.outcome,
        "reason": entry.reason or None,
        "source": entry.source,
        "remote_addr": entry.remote_addr or None,
        "request_id": entry.request_id or None,
    }


def list_entries(filters: AuditFilters, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Entries matching every filter, newest first: {"entries": [...], "next_cursor": str | None}.

    `cursor` is the previous page's `next_cursor` (InvalidCursor if it is not one we issued).
    """
    limit = max(1, min(limit, MAX_PAGE))
    query = AuditEntry.select()
    for column in ("actor", "action"):
        value = getattr(filters, column)
        if value is not None and (len(value) > 100 or unsafe_text(value)):
            raise ValueOutOfRange()
        if value is not None:
            query = query.where(getattr(AuditEntry, column) == value)
    if filters.source is not None:
        query = query.where(AuditEntry.source == Source(filters.source).value)
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.at < filters.until)
    if cursor:
        at, row_id = decode_cursor(cursor, int)
        query = query.where((AuditEntry.at <= at) & ((AuditEntry.at < at) | (AuditEntry.id < row_id)))
    with db_session():
        rows = list(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].at, rows[-1].id)
    return {"entries": [entry_json(e) for e in rows], "next_cursor": next_cursor}


def delete_before(cutoff: datetime, batch_size: int) -> int:
    """Delete entries older than `cutoff`, a batch per transaction (writers never wait long)."""
    deleted = 0
    key = AuditEntry.id
    while True:
        with database.atomic():
            batch = (
                AuditEntry.delete()
                .where(key.in_(AuditEntry.select(key).where(AuditEntry.at < cutoff).limit(batch_size)))
                .execute()
            )
        if not batch:
            return deleted
        deleted += batch

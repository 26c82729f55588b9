"""Use cases on alerts an operator works with: look one up with its sightings, acknowledge, resolve.

Written once for the API, the dashboard and the CLI. An alert is `open`, `acknowledged` (someone
is on it: still open, still refreshed by new sightings, not notified again) or `resolved` (closed:
the next sighting of its condition opens a new alert, which is notified like any new one). Each
change is one conditional UPDATE, so two operators resolving at once get one success and one
`AlertResolved`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from app.connections import db_session
from app.core.errors import AlertMissing, AlertResolved, InvalidInput
from app.models import Alert, AlertOccurrence, iso, utcnow

MAX_COMMENT = 2000
MAX_ACTOR = 120
MAX_ID = 2**63 - 1
OCCURRENCES_SHOWN = 200


class AlertState(str, enum.Enum):
    """Stored in `alerts.state` (with `resolved`, which the one-open-alert-per-condition index reads)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def alert_id(value: object) -> int:
    """A storable alert id from a path segment or argument, or `AlertMissing` (no such alert can exist)."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise AlertMissing(text)
    return int(text)


def _text(value: str | None, limit: int, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise InvalidInput(f"{what} contains a NUL or an unpaired surrogate")
    return value.strip() or None


def _load(alert: int) -> Alert:
    found = Alert.get_or_none(Alert.id == alert)
    if found is None:
        raise AlertMissing(alert)
    return found


def acknowledge(alert: object, actor: str, comment: str | None = None) -> Alert:
    """Mark an open alert as being worked on (again: the latest acknowledgement and comment win)."""
    return _change_open_alert(
        alert,
        actor,
        comment,
        lambda name: {
            Alert.state: AlertState.ACKNOWLEDGED.value,
            Alert.acknowledged_at: utcnow(),
            Alert.acknowledged_by: name,
        },
    )


def resolve(alert: object, actor: str, comment: str | None = None) -> Alert:
    """Close an alert; its condition seen again later opens a new alert."""
    return _change_open_alert(
        alert,
        actor,
        comment,
        lambda name: {
            Alert.state: AlertState.RESOLVED.value,
            Alert.resolved: True,
            Alert.resolved_at: utcnow(),
            Alert.resolved_by: name,
        },
    )


def _change_open_alert(
    alert: object, actor: str, comment: str | None, changes_by: Callable[[str], dict[Any, Any]]
) -> Alert:
    """One conditional UPDATE of an unresolved alert (input checked first); `AlertResolved` if it is not."""
    number = alert_id(alert)
    actor_name = _text(actor, MAX_ACTOR, "actor") or "unknown"
    text = _text(comment, MAX_COMMENT, "comment")
    with db_session():
        changes = changes_by(actor_name)
        if text is not None:
            changes[Alert.comment] = text
        updated = Alert.update(changes).where((Alert.id == number) & (Alert.resolved == False)).execute()  # noqa: E712
        if not updated:
            raise AlertResolved(number, _load(number).resolved_by)
        return _load(number)


def occurrences(alert: int, limit: int = OCCURRENCES_SHOWN) -> list[dict[str, Any]]:
    """The alert's sightings, newest first: when, which run, how severe."""
    query: Any = (
        AlertOccurrence.select(AlertOccurrence.seen_at, AlertOccurrence.job_id, AlertOccurrence.severity)
        .where(AlertOccurrence.alert == alert)
        .order_by(AlertOccurrence.seen_at.desc(), AlertOccurrence.id.desc())
        .limit(limit)
        .tuples()
    )
    return [{"seen_at": iso(seen), "job_id": job, "severity": severity} for seen, job, severity in query]


def get_alert(alert: object) -> tuple[Alert, list[dict[str, Any]]]:
    """One alert and its latest sightings, or `AlertMissing`."""
    number = alert_id(alert)
    with db_session():
        return _load(number), occurrences(number)

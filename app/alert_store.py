"""Store a pipeline's alert candidates: new conditions are inserted, open ones updated.

A candidate's fingerprint (type, subject, window) identifies its condition; an unresolved
alert with that fingerprint gets its last-seen time, count, severity and figures refreshed
instead of a duplicate row. The database holds one open alert per fingerprint (a partial
unique index, migration 0003): when a concurrent store inserted the same condition first,
the insert fails in its savepoint and the row the other store inserted is refreshed instead.
Every sighting is also kept (`alert_occurrences`: which run saw it, when, how severe) and the
alert points to the latest run that saw it. A resolved alert is closed: the next sighting of its
condition opens a new alert (and notifies, like any new one), and so does the sighting of an
alert resolved or deleted by the cleanup after this store read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import peewee

from app.connections import database
from app.models import Alert, AlertOccurrence, utcnow

log = logging.getLogger(__name__)

SEVERITIES = ("high", "medium", "low")
REQUIRED_KEYS = {"type", "severity", "title", "message", "subject", "fingerprint"}


class InvalidAlert(ValueError):
    """A pipeline returned a candidate the store cannot accept."""


@dataclass
class StoreOutcome:
    new: int = 0
    updated: int = 0
    by_severity: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    created: list[Alert] = field(default_factory=list)  # new rows, for notifications after commit


def _check(candidate: dict) -> None:
    missing = REQUIRED_KEYS - candidate.keys()
    if missing:
        raise InvalidAlert(f"alert candidate lacks {sorted(missing)}")
    if candidate["severity"] not in SEVERITIES:
        raise InvalidAlert(f"unknown severity {candidate['severity']!r}")


def store_alerts(candidates: list[dict], job_id: str | None, source: str = "scheduled_job") -> StoreOutcome:
    """Insert or refresh alerts; the caller holds the transaction."""
    outcome = StoreOutcome()
    for candidate in candidates:
        _check(candidate)
    fingerprints = [c["fingerprint"] for c in candidates]
    open_alerts = {}
    for start in range(0, len(fingerprints), 500):
        chunk = fingerprints[start : start + 500]
        for alert in Alert.select().where(Alert.fingerprint.in_(chunk), Alert.resolved == False):  # noqa: E712
            open_alerts[alert.fingerprint] = alert
    now = utcnow()
    sightings: list[tuple[int, str]] = []

    def refresh(alert: Alert, candidate: dict) -> bool:
        """Refresh an open alert; False when it closed since it was read (resolved, or expired by the cleanup)."""
        refreshed: int = (
            Alert.update(
                last_seen_at=now,
                last_job_id=job_id,
                occurrences=Alert.occurrences + 1,
                severity=candidate["severity"],
                title=candidate["title"],
                message=candidate["message"],
                figures=candidate.get("figures", {}),
            )
            .where((Alert.id == alert.id) & (Alert.resolved == False))  # noqa: E712
            .execute()
        )
        if refreshed:
            sightings.append((alert.id, candidate["severity"]))
            outcome.updated += 1
            log.info("alert updated: %s %s - %s", candidate["type"], candidate["severity"], candidate["subject"])
        return bool(refreshed)

    for candidate in candidates:
        outcome.by_severity[candidate["severity"]] += 1
        existing = open_alerts.get(candidate["fingerprint"])
        if existing is not None and refresh(existing, candidate):
            continue
        try:
            with database.atomic():  # a savepoint: only this insert is undone on a conflict
                alert = Alert.create(
                    type=candidate["type"],
                    severity=candidate["severity"],
                    title=candidate["title"],
                    message=candidate["message"],
                    source=source,
                    job_id=job_id,
                    subject=candidate["subject"],
                    figures=candidate.get("figures", {}),
                    fingerprint=candidate["fingerprint"],
                    created_at=now,
                    last_seen_at=now,
                    last_job_id=job_id,
                )
        except peewee.IntegrityError:  # another store inserted this open alert meanwhile
            existing = Alert.get_or_none(
                (Alert.fingerprint == candidate["fingerprint"]) & (Alert.resolved == False)  # noqa: E712
            )
            if existing is None or not refresh(existing, candidate):
                raise
            open_alerts[existing.fingerprint] = existing
            continue
        open_alerts[alert.fingerprint] = alert
        sightings.append((alert.id, candidate["severity"]))
        outcome.new += 1
        outcome.created.append(alert)
        log.info("alert created: %s %s - %s", candidate["type"], candidate["severity"], candidate["subject"])
    rows = [
        {"alert": alert_id, "job_id": job_id, "seen_at": now, "severity": severity} for alert_id, severity in sightings
    ]
    for start in range(0, len(rows), 500):
        AlertOccurrence.insert_many(rows[start : start + 500]).execute()
    return outcome

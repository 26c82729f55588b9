"""An index on alerts.last_seen_at: the weekly cleanup's alert retention counts from it.

Cleanup deleted alerts by `created_at`, so an alert first raised long ago and seen again by
a recent forecast was deleted, then raised and notified again as new. It now deletes alerts
not seen for ALERT_RETENTION_DAYS, in batches of CLEANUP_BATCH_SIZE; without this index each
batch would scan the table (on PostgreSQL past every row the previous batches left dead).
"""

from __future__ import annotations

TABLE = "alerts"
COLUMNS = ("last_seen_at",)


def upgrade(ctx) -> None:
    if not ctx.has_index(TABLE, "_".join((TABLE, *COLUMNS))):
        ctx.run(ctx.migrator.add_index(TABLE, COLUMNS, False))

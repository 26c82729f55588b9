"""One open alert per fingerprint, enforced by the database (a partial unique index).

`store_alerts` refreshes the open alert of a fingerprint instead of inserting another, but two
stores running at once (two attempts of a run, or overlapping runs) each read "no open alert"
and both inserted one. The index makes the second insert fail; the store then refreshes the
row the first inserted. Open duplicates made before this step are resolved (all but the oldest
of each fingerprint), never deleted. Raw SQL, so the step does not depend on app/models.py.
"""

from __future__ import annotations

TABLE = "alerts"
INDEX = "alerts_open_fingerprint"


def upgrade(ctx) -> None:
    ctx.db.execute_sql(
        f'UPDATE "{TABLE}" SET "resolved" = true WHERE "resolved" = false AND "id" NOT IN '
        f'(SELECT MIN("id") FROM "{TABLE}" WHERE "resolved" = false GROUP BY "fingerprint")'
    )
    if not ctx.has_index(TABLE, INDEX):
        ctx.db.execute_sql(f'CREATE UNIQUE INDEX "{INDEX}" ON "{TABLE}" ("fingerprint") WHERE "resolved" = false')

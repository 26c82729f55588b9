"""audit_log: every operator action from the API, the dashboards and the CLI, and every refusal.

Who (user or token name, "cli:<os user>"), with which role, what action on which target, the
outcome, from which source and address, under which request id (app/core/audit.py). A frozen
copy of the model as this step made it, created with `safe=True`, so the step is idempotent and
independent of later models.
"""

from __future__ import annotations

import peewee


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


class AuditEntry(_Base):
    at = peewee.DateTimeField()
    actor = peewee.CharField(max_length=100)
    role = peewee.CharField(max_length=20)
    action = peewee.CharField(max_length=100)
    target = peewee.CharField(max_length=300)
    outcome = peewee.CharField(max_length=10)
    reason = peewee.CharField(max_length=300)
    source = peewee.CharField(max_length=20)
    remote_addr = peewee.CharField(max_length=64)
    request_id = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_log"
        indexes = (
            (("at", "id"), False),
            (("actor", "at", "id"), False),
            (("action", "at", "id"), False),
            (("source", "at", "id"), False),
        )


MODELS = [AuditEntry]


def upgrade(ctx) -> None:
    with ctx.db.bind_ctx(MODELS):
        ctx.db.create_tables(MODELS, safe=True)

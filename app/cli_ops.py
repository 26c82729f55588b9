"""Operator commands (`flask --app app <command>`): runs, schedules, alerts, reports, migrations.

They call the same use cases as the API (the service layer, `app.core`) and validate options
with the API's query models (`app.api.schemas`), so a command accepts and refuses exactly what
the matching route does. Errors print one clear line and exit non-zero: 2 for bad input, 1 for
everything else; domain errors are mapped by this module's one table (`DOMAIN_ERRORS`).
Commands that change something are audited by `app.cli_audit.audit_commands`; those that only read
are marked `@reads_only`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import click
import peewee
import redis.exceptions
from flask import Flask, current_app
from flask.cli import with_appcontext
from werkzeug.datastructures import MultiDict

from app.api.schemas import AlertQuery, HistoryQuery, parse_query
from app.api.serializers import alert_json, report_json, run_attempts_json, run_json
from app.cli_audit import created_run, reads_only
from app.config import get_settings
from app.connections import database, db_session
from app.core import alerts as core_alerts
from app.core import jobs, reports, schedules
from app.core.errors import InvalidInput, ReportMissing, RunActive, RunEnded, ServiceError, UnknownJobName
from app.core.listings import alerts_page, history_page
from app.errors import APIError, BadRequest
from app.migrations import MigrationError, migrate, status

log = logging.getLogger(__name__)


def _details(exc: ServiceError) -> str:
    return "".join(f"; {k.replace('_', ' ')}: {v}" for k, v in exc.details.items())


def _run_active(exc: RunActive) -> click.ClickException:
    if click.get_current_context().command.name in ("trigger", "retry"):
        return click.ClickException(f"{exc.message} (use --force to queue behind it)")
    return click.ClickException(exc.message + _details(exc))


# The CLI's one table: domain error -> click exception (UsageError exits 2, the others 1).
# The most specific class wins.
DOMAIN_ERRORS: dict[type[ServiceError], Callable[..., click.ClickException]] = {
    UnknownJobName: lambda exc: click.UsageError(exc.message),
    InvalidInput: lambda exc: click.UsageError(exc.message),
    RunEnded: lambda exc: click.ClickException(f"{exc.message} ({exc.status})"),
    RunActive: _run_active,
    ReportMissing: lambda exc: click.ClickException(
        f"no daily report for {exc.day}" if exc.day else "no daily report yet"
    ),
    ServiceError: lambda exc: click.ClickException(exc.message + _details(exc)),
}


def cli_error(exc: ServiceError) -> click.ClickException:
    return next(DOMAIN_ERRORS[cls](exc) for cls in type(exc).__mro__ if cls in DOMAIN_ERRORS)


def _settings():
    return current_app.config["SETTINGS"]


def _redis():
    return current_app.extensions["redis"]


def _where(url: str) -> str:
    """host:port of a URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or ''}".rstrip(":")


def operator_errors(command):
    """Run in the app's context; turn the API's errors and unreachable servers into one-line messages."""

    @functools.wraps(command)
    def wrapped(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ServiceError as exc:
            raise cli_error(exc) from None
        except BadRequest as exc:
            raise click.UsageError(exc.message) from None
        except APIError as exc:
            details = "".join(f"; {k.replace('_', ' ')}: {v}" for k, v in exc.details.items())
            raise click.ClickException(exc.message + details) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise click.ClickException(
                f"Redis at {_where(_settings().redis_url)} is unavailable ({type(exc).__name__}); is it running?"
            ) from None
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(
                f"the database at {_where(_settings().database_url)} is unavailable: {first_line}"
            ) from None
        except MigrationError as exc:
            raise click.ClickException(str(exc)) from None

    return with_appcontext(wrapped)


def _query(model, **options):
    """Validate CLI options with the API's query model (unset options are left out)."""
    return parse_query(model, MultiDict({k: str(v) for k, v in options.items() if v is not None}))


def _emit(payload, as_json: bool, lines) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


def _table(rows: list[list], headers: list[str]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers), *(fmt.format(*["" if x is None else str(x) for x in row]) for row in rows)]


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")


# -- migrations ----------------------------------------------------------------------------
def apply_migrations(target: str | None = None) -> list[str]:
    """Apply pending migrations under the migration lock (init-db, migrate, seed-demo)."""
    with db_session():
        return migrate(database, target=target, lock_timeout=get_settings().migration_lock_timeout)


@click.command("migrate")
@click.option("--list", "list_only", is_flag=True, help="show applied and pending migrations; change nothing")
@click.option("--target", default=None, metavar="VERSION", help="stop after this version (e.g. 0001)")
@operator_errors
def migrate_command(list_only: bool, target: str | None):
    """Apply pending schema migrations (idempotent; safe from several machines at once)."""
    if list_only:
        with db_session():
            for step, applied_at in status(database):
                click.echo(
                    f"{step.name:<40} {'applied ' + applied_at.isoformat(timespec='seconds') if applied_at else 'pending'}"
                )
        return
    names = apply_migrations(target)
    for name in names:
        click.echo(f"applied {name}")
    click.echo("database schema up to date" if names or target is None else "nothing to apply")


# -- runs ----------------------------------------------------------------------------------
@click.command("trigger")
@click.argument("job")
@click.option("--force", is_flag=True, help="queue behind the active run instead of refusing")
@json_option
@operator_errors
def trigger_command(job: str, force: bool, as_json: bool):
    """Trigger a run of JOB (forecast, daily-summary, cleanup), as POST /api/jobs/JOB/trigger."""
    name = jobs.job_name(job)
    outcome = jobs.trigger(_redis(), _settings(), name, force=force)
    created_run(outcome.run_id)
    payload = {
        "job_id": outcome.run_id,
        "job_name": name,
        "status": outcome.status.value,
        "waits_for": outcome.waits_for,
    }
    after = f"; it starts when {outcome.waits_for} ends" if outcome.waits_for else ""
    _emit(payload, as_json, [f"{name} run {outcome.run_id} {outcome.status.value}{after}"])


@reads_only
@click.command("status")
@click.argument("job")
@click.argument("run_id")
@json_option
@operator_errors
def status_command(job: str, run_id: str, as_json: bool):
    """Show one run of JOB: status, attempts, times, result or error."""
    body = run_json(jobs.get_run(job, run_id))
    lines = [f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in body.items()]
    _emit(body, as_json, lines)


@click.command("cancel")
@click.argument("job")
@click.argument("run_id")
@operator_errors
def cancel_command(job: str, run_id: str):
    """Cancel a queued run of JOB or stop a running one."""
    outcome = jobs.cancel(_redis(), job, run_id)
    click.echo(f"run {run_id} " + ("stop requested" if outcome == jobs.CancelOutcome.STOPPING else "canceled"))


@reads_only
@click.command("attempts")
@click.argument("job")
@click.argument("run_id")
@json_option
@operator_errors
def attempts_command(job: str, run_id: str, as_json: bool):
    """Every attempt of one run of JOB (worker, times, how it ended, error, traceback) and its retry links."""
    history = jobs.run_history(job, run_id)
    body = run_attempts_json(history.run, history.attempts, history.retried_by)
    lines = [f"run {body['job_id']} ({body['job_name']}): {body['status']}, {body['attempts']} attempt(s)"]
    if body["retry_of"]:
        lines.append(f"retries run {body['retry_of']}")
    if body["retried_by"]:
        lines.append(f"retried by: {', '.join(body['retried_by'])}")
    for attempt in body["attempts_detail"]:
        retry = f", retried at {attempt['next_retry_at']}" if attempt["next_retry_at"] else ""
        lines.append(
            f"attempt {attempt['number']}: {attempt['status']} on {attempt['worker'] or '?'}, "
            f"{attempt['started_at']} - {attempt['ended_at'] or '…'}{retry}"
        )
        if attempt["error"]:
            lines.append(f"  error: {attempt['error']}")
        if attempt["traceback"]:
            lines.extend("  | " + line for line in attempt["traceback"].rstrip().splitlines())
    _emit(body, as_json, lines)


@click.command("retry")
@click.argument("job")
@click.argument("run_id", required=False)
@click.option("--failed-since", default=None, metavar="TIME", help="retry the newest failed run since TIME (ISO 8601)")
@click.option("--force", is_flag=True, help="queue behind the active run instead of refusing")
@json_option
@operator_errors
def retry_command(job: str, run_id: str | None, failed_since: str | None, force: bool, as_json: bool):
    """Retry an ended, unsuccessful run of JOB as a new run linked to it (the failed run keeps its record).

    With --failed-since, retry the newest failed run since that time: one new run answers for
    every failure since then (as POST /api/jobs/JOB/retry-failed).
    """
    from app.api.jobs import RetryFailedQuery

    if (run_id is None) == (failed_since is None):
        raise click.UsageError("give either RUN_ID or --failed-since TIME")
    name = jobs.job_name(job)
    if run_id is not None:
        outcome = jobs.retry(_redis(), _settings(), name, run_id, force=force, actor="cli")
        created_run(outcome.run_id)
    else:
        since = _query(RetryFailedQuery, since=failed_since).since
        outcome = jobs.retry_failed(_redis(), _settings(), name, since, force=force, actor="cli")
    payload = {
        "job_id": outcome.run_id,
        "job_name": name,
        "retry_of": outcome.retry_of,
        "status": outcome.status.value if outcome.status else None,
        "covers": outcome.covers,
        "created": outcome.created,
        "waits_for": outcome.waits_for,
        "retries": outcome.retries,
    }
    if outcome.run_id is None:
        line = f"no failed {name} run since {failed_since}"
    elif not outcome.created:
        line = f"run {outcome.retry_of} was retried already: run {outcome.run_id} ({payload['status']})"
    else:
        after = f"; it starts when {outcome.waits_for} ends" if outcome.waits_for else ""
        line = f"{name} run {outcome.retry_of} retried as run {outcome.run_id} {payload['status']}{after}"
    lines = [line]
    if len(outcome.retries) > 1:
        lines.append(f"each failed slot retried: {', '.join(outcome.retries)} (one after another)")
    if len(outcome.covers) > 1:
        lines.append(f"covers {len(outcome.covers)} failed runs: {', '.join(outcome.covers)}")
    _emit(payload, as_json, lines)


@reads_only
@click.command("runs")
@click.argument("job")
@click.option("--status", default=None, help="queued, scheduled, started, finished, failed, canceled, stopped, skipped")
@click.option("--trigger", default=None, help="scheduled, manual or retry")
@click.option("--limit", default=None, type=str, help="rows per page (1-500, default 50)")
@click.option("--cursor", default=None, help="the next_cursor of the previous page")
@json_option
@operator_errors
def runs_command(
    job: str, status: str | None, trigger: str | None, limit: str | None, cursor: str | None, as_json: bool
):
    """List runs of JOB, newest first (as GET /api/jobs/JOB/history)."""
    name = jobs.job_name(job)
    query = _query(HistoryQuery, status=status, trigger=trigger, limit=limit, cursor=cursor)
    with db_session():
        body = history_page(name, query)
    lines = _table(
        [
            [r["job_id"], r["status"], r["trigger"], r["attempts"], r["enqueued_at"], r["ended_at"]]
            for r in body["runs"]
        ],
        ["job_id", "status", "trigger", "attempts", "enqueued_at", "ended_at"],
    )
    if body["next_cursor"]:
        lines.append(f"more: --cursor {body['next_cursor']}")
    _emit(body, as_json, lines)


# -- schedules -----------------------------------------------------------------------------
@click.group("schedules", invoke_without_command=True)
@click.pass_context
def schedules_group(ctx: click.Context):
    """List the cron schedules; pause, resume or run one (as /api/schedules)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_schedules_command)


@reads_only
@schedules_group.command("list")
@json_option
@operator_errors
def list_schedules_command(as_json: bool = False):
    """The schedules: cron (UTC), paused, next run, last run and its status."""
    with db_session():
        body = schedules.list_schedules(_redis(), _settings())
    lines = _table(
        [
            [
                s["name"],
                s["cron"],
                s["queue"],
                "yes" if s["paused"] else "no",
                s["next_run"],
                s["last_run"],
                s["last_status"],
            ]
            for s in body
        ],
        ["name", "cron (UTC)", "queue", "paused", "next_run", "last_run", "last_status"],
    )
    _emit({"schedules": body}, as_json, lines)


def _set_paused(name: str, paused: bool) -> None:
    name = schedules.schedule_name(name)
    changed = schedules.set_paused(_redis(), name, paused)
    verb = "paused" if paused else "resumed"
    click.echo(f"schedule {name} {verb}" if changed else f"schedule {name} was already {verb}")


@schedules_group.command("pause")
@click.argument("name")
@operator_errors
def pause_command(name: str):
    """Pause a schedule: its slots are skipped until it is resumed (survives restarts)."""
    _set_paused(name, True)


@schedules_group.command("resume")
@click.argument("name")
@operator_errors
def resume_command(name: str):
    """Resume a paused schedule."""
    _set_paused(name, False)


@schedules_group.command("run")
@click.argument("name")
@operator_errors
def run_schedule_command(name: str):
    """Run a schedule's job now, as a manual trigger."""
    outcome = schedules.run_now(_redis(), _settings(), name)
    created_run(outcome.run_id)
    click.echo(f"{name} run {outcome.run_id} {outcome.status.value}")


# -- alerts and reports --------------------------------------------------------------------
@reads_only
@click.command("alerts")
@click.option("--source", default=None)
@click.option("--severity", default=None, help="high, medium or low")
@click.option("--type", "type_", default=None, help="e.g. capacity_warning, demand_spike")
@click.option("--state", default=None, help="open, acknowledged or resolved")
@click.option("--since", default=None, help="ISO 8601 time, e.g. 2024-05-01T00:00:00Z")
@click.option("--limit", default=None, type=str, help="rows per page (1-500, default 50)")
@click.option("--cursor", default=None, help="the next_cursor of the previous page")
@json_option
@operator_errors
def alerts_command(source, severity, type_, state, since, limit, cursor, as_json: bool):
    """List alerts, newest first (as GET /api/alerts); `alert show|ack|resolve ID` works on one."""
    query = _query(
        AlertQuery, source=source, severity=severity, type=type_, state=state, since=since, limit=limit, cursor=cursor
    )
    with db_session():
        body = alerts_page(query)
    lines = _table(
        [
            [
                a["id"],
                a["state"],
                a["severity"],
                a["type"],
                a["subject"],
                a["occurrences"],
                a["created_at"],
                a["last_job_id"],
            ]
            for a in body["alerts"]
        ],
        ["id", "state", "severity", "type", "subject", "seen", "created_at", "last_run"],
    )
    if body["next_cursor"]:
        lines.append(f"more: --cursor {body['next_cursor']}")
    _emit(body, as_json, lines)


def _cli_actor() -> str:
    from app.cli_audit import os_user

    return f"cli:{os_user()}"


def _alert_lines(body: dict) -> list[str]:
    lines = [
        f"alert {body['id']} ({body['state']}): {body['severity']} {body['type']} - {body['subject']}",
        f"  {body['title']}",
        f"  first {body['created_at']} (run {body['job_id']}), last {body['last_seen_at']} (run {body['last_job_id']}), "
        f"seen {body['occurrences']} times",
    ]
    if body["acknowledged_at"]:
        lines.append(f"  acknowledged {body['acknowledged_at']} by {body['acknowledged_by']}")
    if body["resolved_at"]:
        lines.append(f"  resolved {body['resolved_at']} by {body['resolved_by']}")
    if body["comment"]:
        lines.append(f"  comment: {body['comment']}")
    return lines


@click.group("alert")
def alert_group():
    """Show, acknowledge or resolve one alert (as /api/alerts/ID)."""


@reads_only
@alert_group.command("show")
@click.argument("alert_id")
@json_option
@operator_errors
def show_alert_command(alert_id: str, as_json: bool):
    """One alert with the runs that saw it, newest first."""
    alert, sightings = core_alerts.get_alert(alert_id)
    body = {**alert_json(alert), "sightings": sightings}
    lines = (
        _alert_lines(body)
        + ["  sightings:"]
        + [f"    {s['seen_at']}  {s['severity']:<6}  run {s['job_id']}" for s in sightings]
    )
    _emit(body, as_json, lines)


@alert_group.command("ack")
@click.argument("alert_id")
@click.option("--comment", default=None, help="what you are doing about it")
@json_option
@operator_errors
def acknowledge_alert_command(alert_id: str, comment: str | None, as_json: bool):
    """Acknowledge an open alert: someone is on it (it stays open and is not notified again)."""
    body = alert_json(core_alerts.acknowledge(alert_id, _cli_actor(), comment))
    _emit(body, as_json, _alert_lines(body))


@alert_group.command("resolve")
@click.argument("alert_id")
@click.option("--comment", default=None, help="how it was resolved")
@json_option
@operator_errors
def resolve_alert_command(alert_id: str, comment: str | None, as_json: bool):
    """Resolve an alert: closed; its condition seen again opens (and notifies) a new alert."""
    body = alert_json(core_alerts.resolve(alert_id, _cli_actor(), comment))
    _emit(body, as_json, _alert_lines(body))


@reads_only
@click.command("report")
@click.option("--date", "day", default=None, help="UTC day YYYY-MM-DD (default: the latest report)")
@json_option
@operator_errors
def report_command(day: str | None, as_json: bool):
    """Show a stored daily report (as GET /api/reports/daily)."""
    from datetime import date

    from app.api.reports import DailyReportQuery

    query = _query(DailyReportQuery, date=day)
    with db_session():
        body = report_json(reports.daily_report(date.fromisoformat(query.date) if query.date else None))
    report = body["report"]
    alerts = report.get("alerts", {})
    lines = [
        f"daily report {body['date']} (UTC), run {body['job_id']}, stored {body['created_at']}",
        f"alerts: {alerts.get('total', 0)}",
    ]
    for key in ("by_severity", "by_type", "by_source"):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(alerts.get(key, {}).items())) or "none"
        lines.append(f"  {key.replace('_', ' ')}: {counts}")
    lines.append("runs:")
    for job, statuses in sorted(report.get("runs", {}).items()):
        lines.append(f"  {job}: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    _emit(body, as_json, lines)


COMMANDS = [
    migrate_command,
    trigger_command,
    status_command,
    cancel_command,
    retry_command,
    attempts_command,
    runs_command,
    schedules_group,
    alerts_command,
    alert_group,
    report_command,
]


def register(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)

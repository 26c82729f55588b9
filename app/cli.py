"""Operator commands: `flask --app app <command>`; every command that changes something is audited.

`register` ends by wrapping every registered command (`app.cli_audit.audit_commands`), so a
command added later is recorded in the audit log unless it is marked `@reads_only`.
"""

from __future__ import annotations

import contextlib
import sys

import click
from flask import Flask

from app.cli_audit import audit_commands, reads_only
from app.connections import db_session
from app.models import DemandHistory


@click.command("init-db")
def init_db_command():
    """Create or migrate the tables: apply pending migrations (idempotent; same as `migrate`)."""
    from app.cli_ops import apply_migrations, operator_errors

    for name in operator_errors(apply_migrations)():
        click.echo(f"applied {name}")
    click.echo("database ready")


@click.command("seed-demo")
@click.option("--items", default=12, show_default=True, help="number of item series")
@click.option("--days", default=180, show_default=True, help="days of history per series")
@click.option("--seed", default=7, show_default=True, help="random seed (same seed, same data)")
@click.option("--if-empty", is_flag=True, help="do nothing when demand history exists")
def seed_demo_command(items: int, days: int, seed: int, if_empty: bool):
    """Create demo production lines and demand history with labelled anomalies."""
    from app.cli_ops import apply_migrations
    from app.forecast.demo import seed_demo

    apply_migrations()
    with db_session():
        if if_empty and DemandHistory.select().exists():
            click.echo("demand history present; demo data not seeded")
            return
        summary = seed_demo(items=items, days=days, seed=seed)
    click.echo(f"seeded {summary['lines']} lines, {summary['items']} items, {summary['rows']} demand rows")


class InvalidImport(click.ClickException):
    exit_code = 2  # bad input, as for the other operator commands


@click.command("import-demand")
@click.argument("demand_csv", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--capacity",
    "capacity_csv",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV of line,name,daily_capacity (else daily_capacity columns in DEMAND_CSV, or lines in the database)",
)
@click.option(
    "--replace",
    is_flag=True,
    help="overwrite stored rows of the same date, item and line (an empty quantity removes the stored one)",
)
@click.option(
    "--zero-fill",
    "zero_fill",
    is_flag=True,
    help="the file lists only days with demand: every day from a series' first row to the file's last "
    "date without a row is imported as 0 (never overwriting a stored row)",
)
def import_demand_command(demand_csv: str, capacity_csv: str | None, replace: bool, zero_fill: bool):
    """Import demand history from DEMAND_CSV (date,item,line,quantity): all rows or none.

    \b
    Missing is not zero:
      quantity 0       an explicit zero
      empty quantity   the day is declared missing (nothing stored)
      no row           the day is missing (the forecast does not read it as 0),
                       unless --zero-fill declares the file zero-filled
    """
    from app.cli_ops import apply_migrations, operator_errors
    from app.forecast.importer import ImportFailed, import_demand

    def migrate_and_import():
        apply_migrations()
        return import_demand(demand_csv, capacity_csv, replace=replace, zero_fill=zero_fill)

    try:
        summary = operator_errors(migrate_and_import)()
    except ImportFailed as exc:
        raise InvalidImport(str(exc)) from None
    lines = f"; lines created: {', '.join(summary.lines_created)}" if summary.lines_created else ""
    lines += f"; lines updated: {', '.join(summary.lines_updated)}" if summary.lines_updated else ""
    notes = [f"{summary.replaced_rows} replaced"] if summary.replaced_rows else []
    notes += [f"{summary.zero_filled} zero-filled"] if summary.zero_filled else []
    notes += [f"{summary.declared_missing} declared missing"] if summary.declared_missing else []
    notes += [f"{summary.cleared_rows} stored value(s) removed"] if summary.cleared_rows else []
    replaced = f" ({', '.join(notes)})" if notes else ""
    click.echo(
        f"imported {summary.rows} demand rows{replaced} of {summary.items} series, "
        f"{summary.start}..{summary.end}{lines}"
    )


@reads_only
@click.command("hash-secret")
@click.option(
    "--algorithm",
    type=click.Choice(["pbkdf2_sha256", "sha256"]),
    default=None,
    help="default: pbkdf2_sha256 for a password, sha256 for --generate (a random token)",
)
@click.option("--generate", is_flag=True, help="make a random API token, print it and its hash")
@click.option("--iterations", default=None, type=click.IntRange(100_000, 10_000_000), help="PBKDF2 rounds")
def hash_secret_command(algorithm: str | None, generate: bool, iterations: int | None):
    """Print the hash of a password or token for DASHBOARD_USERS / API_TOKENS (the secret is read
    from a prompt or stdin, never from the command line, and never stored)."""
    from app.credentials import PBKDF2_ITERATIONS, generate_token, hash_secret

    if generate:
        secret = generate_token()
        click.echo(f"token: {secret}", err=True)
    elif sys.stdin.isatty():
        secret = click.prompt("secret", hide_input=True, confirmation_prompt=True)
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise click.UsageError("an empty secret cannot be hashed")
    chosen = algorithm or ("sha256" if generate else "pbkdf2_sha256")
    click.echo(hash_secret(secret, algorithm=chosen, iterations=iterations or PBKDF2_ITERATIONS))


@reads_only
@click.command("backtest")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--horizon", default=14, show_default=True, type=click.IntRange(1, 366), help="days forecast ahead")
@click.option(
    "--origins",
    default=6,
    show_default=True,
    type=click.IntRange(1, 520),
    help="rolling forecast origins, a week apart, the last one a horizon before the file's end",
)
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON instead of a table")
def backtest_command(file: str, horizon: int, origins: int, as_json: bool):
    """Backtest the forecast engine on FILE, a long CSV (dataset,series,line,date,value; gzip or plain).

    \b
    For each data set, per method next to seasonal naive: MASE, MASE relative to seasonal naive,
    sMAPE, P10-P90 coverage, seconds per series, and the capacity warnings' recall, precision and
    Brier score (capacity: the 95th percentile of each line's daily load over the trailing 365
    days; an overload: the load above it on some day of the horizon). A missing day (no row or an
    empty value) is missing, not zero. Nothing is written to the database.
    """
    import json

    from app.forecast.backtest import BacktestError, run_backtest

    with contextlib.ExitStack() as stack:
        bar: list = []

        def progress(done: int, total: int) -> None:
            if not bar:
                bar.append(stack.enter_context(click.progressbar(length=total, label="backtest", file=sys.stderr)))
            bar[0].update(done - bar[0].pos)

        try:
            result = run_backtest(file, horizon, origins, progress=progress)
        except BacktestError as exc:
            raise InvalidImport(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        click.echo(str(result).lstrip("\n"))


def register(app: Flask) -> None:
    app.cli.add_command(init_db_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(import_demand_command)
    app.cli.add_command(backtest_command)
    app.cli.add_command(hash_secret_command)

    from app import cli_ops

    cli_ops.register(app)
    audit_commands(app.cli)  # last: every command registered above, whoever added it

"""Operator commands: `flask --app app <command>`."""
from __future__ import annotations

import click
from flask import Flask

from app.connections import db_session
from app.models import DemandHistory, create_tables


@click.command("init-db")
def init_db_command():
    """Create missing tables and indexes (idempotent; the Procfile's release step)."""
    with db_session():
        create_tables()
    click.echo("database ready")


@click.command("seed-demo")
@click.option("--items", default=12, show_default=True, help="number of item series")
@click.option("--days", default=180, show_default=True, help="days of history per series")
@click.option("--seed", default=7, show_default=True, help="random seed (same seed, same data)")
@click.option("--if-empty", is_flag=True, help="do nothing when demand history exists")
def seed_demo_command(items: int, days: int, seed: int, if_empty: bool):
    """Create demo production lines and demand history with labelled anomalies."""
    from app.forecast.demo import seed_demo

    with db_session():
        create_tables()
        if if_empty and DemandHistory.select().exists():
            click.echo("demand history present; demo data not seeded")
            return
        summary = seed_demo(items=items, days=days, seed=seed)
    click.echo(f"seeded {summary['lines']} lines, {summary['items']} items, {summary['rows']} demand rows")


def register(app: Flask) -> None:
    app.cli.add_command(init_db_command)
    app.cli.add_command(seed_demo_command)

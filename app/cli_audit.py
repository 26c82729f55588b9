"""The CLI's audit hook: each command that changes something leaves an audit entry with its outcome.

`audit_commands` wraps every leaf command of the app's CLI once registration is done
(`app.cli.register`), so a command added later is audited without anyone remembering to
(actor `cli:<os user>`, role operator, source `cli`, the command's arguments as the target,
`ok` / `refused` with the error message / `failed`). A command that only reads is marked
`@reads_only`; an unmarked read costs a row, never a missed action.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os

import click
from flask.cli import with_appcontext

log = logging.getLogger(__name__)

# Command path -> action: the same action has the same name from the API, the dashboard and the CLI.
CLI_ACTIONS = {
    "trigger": "run.trigger",
    "cancel": "run.cancel",
    "retry": "run.retry",
    "schedules pause": "schedule.pause",
    "schedules resume": "schedule.resume",
    "schedules run": "schedule.run",
    "alert ack": "alert.acknowledge",
    "alert resolve": "alert.resolve",
    "init-db": "db.migrate",
    "migrate": "db.migrate",
    "seed-demo": "db.seed_demo",
    "import-demand": "demand.import",
}
# Argument name -> the kind of thing it names in an audit target.
CLI_TARGET_KINDS = {"job": "job", "run_id": "run", "name": "schedule", "alert_id": "alert"}


def reads_only(command: click.Command) -> click.Command:
    """Mark a command that changes nothing: it is not audited."""
    command.audit_read_only = True  # type: ignore[attr-defined]
    return command


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        return f"uid{os.getuid()}"


CREATED_RUN = "audit_created_run"  # click context meta key: the run a command created


def created_run(run_id: str | None) -> None:
    """Name the run the current command created: its audit target ends with it, as the API's does,
    so the run page can say who triggered it (`app.core.run_history.triggered_by`)."""
    if run_id:
        click.get_current_context().meta[CREATED_RUN] = run_id


def _target(command: click.Command, params: dict) -> str:
    parts = []
    for param in command.params:
        if isinstance(param, click.Argument) and param.name and params.get(param.name) is not None:
            kind = CLI_TARGET_KINDS.get(param.name, param.name)
            parts.append(f"{kind}:{params[param.name]}")
    created = click.get_current_context().meta.get(CREATED_RUN)
    if created:
        parts.append(f"run:{created}")
    return " ".join(parts)


def _record(path: str, command: click.Command, params: dict, outcome: str, reason: str = "") -> None:
    from app.core import audit  # the database layer, loaded when a command runs

    try:
        audit.record(
            actor=f"cli:{os_user()}",
            role="operator",
            action=CLI_ACTIONS.get(path, "cli." + path.replace(" ", ".")),
            target=_target(command, params),
            outcome=audit.Outcome(outcome),
            reason=reason,
            source=audit.Source.CLI,
        )
    except Exception as exc:  # the command's own outcome stands; say why it is not in the log
        log.warning("could not record the audit entry of `%s`: %s", path, type(exc).__name__)


def audited(command: click.Command, path: str) -> click.Command:
    """Wrap `command`'s callback so each invocation leaves an audit entry with its outcome."""
    if getattr(command, "audit_read_only", False) or getattr(command, "audit_wrapped", False):
        return command
    callback = command.callback
    if callback is None:
        return command

    @functools.wraps(callback)
    def wrapped(*args, **kwargs):
        params = dict(click.get_current_context().params)
        try:
            result = callback(*args, **kwargs)
        except click.exceptions.Exit as exc:
            _record(path, command, params, "ok" if exc.exit_code == 0 else "failed", f"exit {exc.exit_code}")
            raise
        except click.ClickException as exc:
            _record(path, command, params, "refused", exc.format_message())
            raise
        except (click.Abort, KeyboardInterrupt):
            _record(path, command, params, "failed", "aborted")
            raise
        except Exception as exc:
            _record(path, command, params, "failed", type(exc).__name__)
            raise
        _record(path, command, params, "ok")
        return result

    command.callback = with_appcontext(wrapped)
    command.audit_wrapped = True  # type: ignore[attr-defined]
    return command


def audit_commands(group: click.Group, prefix: str = "") -> None:
    """Audit every leaf command of `group` (groups' own callbacks only dispatch)."""
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            audit_commands(command, path)
        else:
            audited(command, path)

"""``flask jobs call|result|purge|revoke``: sending tasks, reading and stopping them."""

from __future__ import annotations

import json

import click
from flask import current_app

from ..control import Control
from ..exceptions import TimeoutError as ResultTimeout
from .group import jobs_cli


@jobs_cli.command("purge", short_help="Discard every task waiting in the queues.")
@click.option("-Q", "--queues", help="Comma-separated queues (default: every queue).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queues: str | None, force: bool) -> None:
    """Discard every task waiting in the queues (as 'celery purge'); they become REVOKED.

    Delayed and running tasks are not touched. There is no undo.
    """
    state = current_app.extensions["jobs"]
    names = ([q.strip() for q in queues.split(",") if q.strip()] if queues is not None
             else state.broker.queue_names())
    if not names:
        raise click.UsageError("-Q names no queue")
    if not force:
        click.confirm(f"Discard every waiting task of {', '.join(names)}? There is no undo",
                      abort=True)
    waiting = sum(state.broker.queue_length(q) for q in names)
    if waiting > 5000:  # (long enough to want to see it move)
        with click.progressbar(length=waiting, label="Purging", show_pos=True) as bar:
            n = Control(state.jobs).purge(names, bar.update)
    else:
        n = Control(state.jobs).purge(names)
    click.echo(f"Purged {n} task(s) from {len(names)} queue(s).")


@jobs_cli.command("revoke")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True, help="Also stop the task if it is running.")
@click.option("--signal", "signal_name", type=click.Choice(["SIGTERM", "SIGKILL"]),
              default="SIGTERM", show_default=True, help="How --terminate stops it.")
def revoke_command(task_ids: tuple[str, ...], terminate: bool, signal_name: str) -> None:
    """Revoke tasks by id (as 'celery control revoke')."""
    state = current_app.extensions["jobs"]
    before = state.broker.task_states(task_ids)
    unknown = [t for t, now in zip(task_ids, before, strict=True) if now is None]
    if unknown:
        raise click.ClickException(f"unknown task id(s): {', '.join(unknown)}; nothing was "
                                   "revoked")
    Control(state.jobs).revoke(list(task_ids), terminate=terminate, signal=signal_name)
    for task_id, now in zip(task_ids, state.broker.task_states(task_ids), strict=True):
        if now == "REVOKED":
            click.echo(f"revoked {task_id}")
        elif now in ("SUCCESS", "FAILURE"):
            click.echo(f"{task_id} had already finished: {now}")
        else:
            click.echo(f"{task_id} is running ({now}): " + (
                "asked to stop" if terminate else "it goes on; --terminate stops it"))


def _json_option(value: str | None, what: str, kind: type) -> object:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc}); e.g. --{what} "
                                 + ("'[2, 2]'" if kind is list else "'{\"x\": 1}'"),
                                 param_hint=f"--{what}") from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}, not {value}",
                                 param_hint=f"--{what}")
    return parsed


@jobs_cli.command("call")
@click.argument("name")
@click.option("-a", "--args", "args_json", help="Positional arguments, a JSON list: '[2, 2]'.")
@click.option("-k", "--kwargs", "kwargs_json", help="Keyword arguments, a JSON object.")
@click.option("--countdown", type=float, help="Seconds to wait before running it.")
@click.option("--eta", help="When to run it: an ISO 8601 time.")
@click.option("--expires", help="Seconds (or an ISO 8601 time) after which it is discarded.")
@click.option("-Q", "--queue", help="Queue to send it to (default: its route).")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9.")
@click.option("--serializer", help="json (default), or another accepted content type.")
def call_command(name: str, args_json: str | None, kwargs_json: str | None,
                 countdown: float | None, eta: str | None, expires: str | None,
                 queue: str | None, priority: int | None, serializer: str | None) -> None:
    """Send task NAME and print its id, as 'celery call'. The task need not be defined in
    this app: it is sent by name."""
    options = {key: value for key, value in (
        ("countdown", countdown), ("eta", eta), ("queue", queue), ("priority", priority),
        ("serializer", serializer)) if value is not None}
    if expires is not None:
        try:
            options["expires"] = float(expires)
        except ValueError:
            options["expires"] = expires
    jobs = current_app.extensions["jobs"].jobs
    try:
        result = jobs.send_task(name, _json_option(args_json, "args", list),
                                _json_option(kwargs_json, "kwargs", dict), **options)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.id)


@jobs_cli.command("result", short_help="Print the result of a task, as 'celery result'.")
@click.argument("task_id")
@click.option("--traceback", "show_traceback", is_flag=True,
              help="Print the failure's traceback instead of the result.")
@click.option("--timeout", type=float, help="Seconds to wait for it to finish (default: as long "
              "as it takes).")
def result_command(task_id: str, show_traceback: bool, timeout: float | None) -> None:
    """Print the result of task TASK_ID, waiting for it to finish, as 'celery result'."""
    jobs = current_app.extensions["jobs"].jobs
    result = jobs.AsyncResult(task_id)
    if not result.exists():
        raise click.ClickException(f"Unknown task id {task_id} (never sent, or its result "
                                   "expired).")
    if show_traceback:
        result.get(timeout=timeout, propagate=False)
        click.echo(result.traceback or "(no traceback: the task did not fail)")
        return
    try:
        value = result.get(timeout=timeout, propagate=False)
    except ResultTimeout:
        raise click.ClickException(f"Task {task_id} is still {result.state} after "
                                   f"{timeout:g}s.") from None
    if result.state != "SUCCESS":
        raise click.ClickException(f"Task {task_id} ended {result.state}: {value!r}")
    click.echo(json.dumps(value, default=repr))

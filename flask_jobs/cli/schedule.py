"""``flask jobs schedule ...``: the periodic tasks at run time."""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app

from .group import jobs_cli


@jobs_cli.group("schedule", short_help="List and change the periodic tasks.")
def schedule_group() -> None:
    """List and change the periodic tasks (every beat sees changes at once)."""


def _schedule_call(method: str, name: str) -> object:
    try:
        return getattr(current_app.extensions["jobs"].jobs.schedule, method)(name)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None


@schedule_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry and line.")
def schedule_list(as_json: bool) -> None:
    """Show each periodic task with its schedule, next and last run."""
    control = current_app.extensions["jobs"].jobs.schedule
    entries = control.list()
    for e in entries:
        if as_json:
            click.echo(json.dumps({
                "name": e.name, "task": e.task, "schedule": repr(e.schedule),
                "paused": e.paused, "source": e.source, "total_run_count": e.total_run_count,
                "missed": e.missed or current_app.config["JOBS_BEAT_MISSED"],
                "next_run_at": e.next_run_at and e.next_run_at.isoformat(),
                "last_run_at": e.last_run_at and e.last_run_at.isoformat(),
                "last_task_id": e.last_task_id}))
            continue
        nxt = "paused" if e.paused else (e.next_run_at.isoformat(" ", "seconds")
                                          if e.next_run_at else "-")
        last = e.last_run_at.isoformat(" ", "seconds") if e.last_run_at else "never"
        missed = e.missed or current_app.config["JOBS_BEAT_MISSED"]
        click.echo(f"{e.name}  {e.task}  {e.schedule!r}\n    next: {nxt}  last: {last}  "
                   f"runs: {e.total_run_count}  missed: {missed}  ({e.source})")
    if not as_json:
        leader = control.leader()
        click.echo(f"{len(entries)} periodic task(s); "
                   + (f"beat leader: {leader}" if leader else "no beat is running"))


@schedule_group.command("pause")
@click.argument("name")
def schedule_pause(name: str) -> None:
    """Stop sending NAME's runs until resumed."""
    _schedule_call("pause", name)
    click.echo(f"paused {name}")


@schedule_group.command("resume")
@click.argument("name")
def schedule_resume(name: str) -> None:
    """Send NAME's runs again, from its next due time."""
    entry: Any = _schedule_call("resume", name)
    click.echo(f"resumed {name}: next run {entry.next_run_at.isoformat(' ', 'seconds')}")


@schedule_group.command("run")
@click.argument("name")
def schedule_run(name: str) -> None:
    """Send one run of NAME now (its schedule is unchanged)."""
    result = _schedule_call("run_now", name)
    click.echo(f"sent {name}: task {result.id}")  # type: ignore[attr-defined]


@schedule_group.command("remove", short_help="Delete the periodic task NAME.")
@click.argument("name")
def schedule_remove(name: str) -> None:
    """Delete NAME (an entry of the configuration comes back when a beat starts)."""
    if not current_app.extensions["jobs"].jobs.schedule.remove(name):
        raise click.ClickException(f"No periodic task named {name!r}")
    click.echo(f"removed {name}")

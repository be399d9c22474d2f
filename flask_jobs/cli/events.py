"""``flask jobs events``: tail the events stream, as ``celery events --dump``."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import time

import click
from flask import current_app

from ..events import Event, EventStream
from .group import jobs_cli


def _line(event: Event) -> str:
    when = dt.datetime.fromtimestamp(event.timestamp).isoformat(" ", "milliseconds")
    if not event.uuid:
        return f"{when}  {event.type:<18} {event.hostname}"
    info = (f"runtime={event.runtime:.6g}s" if event.runtime is not None
            else event.info and f"info={event.info}")
    return f"{when}  {event.type:<18} {event.name}[{event.uuid}]  {event.hostname}  {info}"


@jobs_cli.command("events")
@click.option("--dump", is_flag=True, help="Celery's flag, accepted: events are printed as "
              "lines (there is no curses view).")
@click.option("-t", "--task", "task_glob", help="Only events of task names matching this "
              "glob, e.g. 'tasks.*'.")
@click.option("--type", "types", multiple=True, help="Only these event types (repeat it; globs "
              "work: 'task-fail*').")
@click.option("--since-start", is_flag=True, help="Begin with the oldest events kept, not now.")
@click.option("-n", "--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds without a matching event.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
def events_command(dump: bool, task_glob: str | None, types: tuple[str, ...],
                   since_start: bool, count: int | None, timeout: float | None,
                   as_json: bool) -> None:
    """Print task and worker events as they happen (Ctrl-C stops)."""
    state = current_app.extensions["jobs"]
    if not state.settings.events:
        click.echo("JOBS_EVENTS is off in this app; workers started with it on still add "
                   "events.", err=True)
    stream = EventStream(state.make_client(blocking=True), state.keys)
    after = "0-0" if since_start else "$"
    shown, quiet_since = 0, time.monotonic()
    while count is None or shown < count:
        wait = 1.0 if timeout is None else max(0.01, min(1.0, timeout))
        after, events = stream.read(after, block=wait)
        for event in events:
            if task_glob and not (event.name and fnmatch.fnmatchcase(event.name, task_glob)):
                continue
            if types and not any(fnmatch.fnmatchcase(event.type, t) for t in types):
                continue
            click.echo(json.dumps(event.as_dict()) if as_json else _line(event))
            shown += 1
            quiet_since = time.monotonic()
            if count is not None and shown >= count:
                return
        if timeout is not None and time.monotonic() - quiet_since > timeout:
            return

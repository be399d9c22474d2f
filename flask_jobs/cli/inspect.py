"""``flask jobs queues|status|ping|inspect``: what the queues and the workers are doing."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click
from flask import current_app

from ..control import Control
from .group import jobs_cli

if TYPE_CHECKING:
    from ..inspection import Inspect

#: What ``flask jobs inspect`` can show (methods of :class:`~flask_jobs.inspection.Inspect`).
INSPECT_METHODS = ("active", "reserved", "registered", "stats", "ping")


@jobs_cli.command("queues")
def queues_command() -> None:
    """Show queue lengths, workers and counters."""
    state = current_app.extensions["jobs"]
    broker = state.broker
    client = state.client
    for name in broker.queue_names():
        click.echo(f"queue {name}: {broker.queue_length(name)} ready")
    click.echo(f"delayed: {client.zcard(state.keys.delayed)}")
    click.echo(f"workers: {client.scard(state.keys.workers)}")
    click.echo(f"dead letters: {client.llen(state.keys.dead_letters)}")
    for key, value in sorted(broker.stats().items()):
        click.echo(f"{key}: {value}")


@jobs_cli.command("status", short_help="List the live workers, as 'celery status'.")
def status_command() -> None:
    """List the live workers, as 'celery status'; exit 1 when none is online."""
    stats = _inspector(None).stats()
    if not stats:
        raise click.ClickException("No worker is online.")
    for name, s in stats.items():
        queues = ", ".join(s.get("queues") or [])
        click.echo(f"{name}: OK  (pid {s.get('pid')}, {s.get('pool')} -c {s.get('concurrency')}, "
                   f"queues {queues}, {s['active']} held)")
    click.echo(f"\n{len(stats)} node{'' if len(stats) == 1 else 's'} online.")


@jobs_cli.command("ping", short_help="Check that workers answer (for health probes).")
@click.option("-d", "--destination", help="Comma-separated worker names (default: any worker).")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Seconds to wait for the answers.")
def ping_command(destination: str | None, timeout: float) -> None:
    """Ask workers to answer; exit 0 once one answers (or each worker of --destination), 1 if
    none does within the timeout. For container liveness and readiness probes."""
    names = [d.strip() for d in destination.split(",") if d.strip()] if destination else None
    control = Control(current_app.extensions["jobs"].jobs)
    replies = control.ping(names, timeout=timeout, limit=len(names) if names else 1)
    answered = {name for reply in replies for name in reply}
    for name in sorted(answered):
        click.echo(f"-> {name}: OK pong")
    missing = sorted(set(names or ()) - answered)
    if missing:
        raise click.ClickException(f"{', '.join(missing)} did not answer within {timeout:g}s.")
    if not answered:
        raise click.ClickException(f"No worker answered within {timeout:g}s.")


@jobs_cli.command("inspect", short_help="Show what the live workers run, hold or can do.")
@click.argument("method", type=click.Choice(INSPECT_METHODS))
@click.option("-d", "--destination", help="Comma-separated worker names (default: every live "
              "worker).")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as one JSON object.")
def inspect_command(method: str, destination: str | None, as_json: bool) -> None:
    """Show what the live workers run, hold or can do, as 'celery inspect'.

    METHOD is 'active' (running now), 'reserved' (prefetched, not started), 'registered'
    (task names), 'stats' (settings and how many tasks each holds) or 'ping'. Exits 1 when
    no worker (of '--destination') is online.
    """
    names = [d.strip() for d in destination.split(",") if d.strip()] if destination else None
    reply = getattr(_inspector(names), method)()
    if not reply:
        raise click.ClickException("No worker is online." if names is None else
                                   f"No worker is online named {', '.join(names)}.")
    if as_json:
        click.echo(json.dumps(reply, indent=2, default=str))
        return
    for name, value in reply.items():
        click.echo(f"-> {name}: OK")
        if method in ("active", "reserved"):
            for t in value:
                args = json.dumps(t["args"], default=str)
                kwargs = json.dumps(t["kwargs"], default=str)
                since = "" if t["time_start"] is None else " since " + time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(t["time_start"]))
                click.echo(f"    * {t['id']} {t['name']}(args={args}, kwargs={kwargs}) "
                           f"{t['state']}{since}")
            if not value:
                click.echo("    - empty -")
        elif method == "registered":
            for task_name in value:
                click.echo(f"    * {task_name}")
        elif method == "stats":
            for line in json.dumps(value, indent=2, default=str).splitlines():
                click.echo(f"    {line}")
        else:
            click.echo("    pong")


def _inspector(destination: list[str] | None) -> Inspect:
    return Control(current_app.extensions["jobs"].jobs).inspect(destination=destination)

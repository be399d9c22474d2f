"""``flask jobs ...``: the worker and the operations commands."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click
import redis
from flask import current_app
from flask.cli import AppGroup, ScriptInfo, pass_script_info

from .control import Control
from .dead_letters import DeadLetters
from .exceptions import BrokerUnavailable, ImproperlyConfigured
from .worker.main import POOLS

if TYPE_CHECKING:
    from .inspection import Inspect

jobs_cli = AppGroup("jobs", help="Run flask-jobs workers and inspect queues.")

#: What ``flask jobs inspect`` can show (methods of :class:`~flask_jobs.inspection.Inspect`).
INSPECT_METHODS = ("active", "reserved", "registered", "stats", "ping")


@jobs_cli.command("worker", with_appcontext=False)
@click.option("-c", "--concurrency", type=click.IntRange(min=1),
              help="Child processes, threads or greenlets (default: CPUs / 8 / 100).")
@click.option("-P", "--pool", type=click.Choice(POOLS), default="prefork", show_default=True,
              help="How tasks run: solo (in this process), threads, gevent, prefork.")
@click.option("-Q", "--queues", help="Comma-separated queues to consume, highest first.")
@click.option("-n", "--hostname", help="Node name (default worker@<host>).")
@click.option("-l", "--loglevel", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                case_sensitive=False))
@click.option("--prefetch", type=click.IntRange(min=1),
              help="Tasks a consumer claims at a time while every other one is busy "
                   "(default JOBS_WORKER_PREFETCH).")
@click.option("-O", "optimization", type=click.Choice(["fair", "default"]),
              help="Celery's scheduling option, accepted for its command lines: dispatch is "
                   "always fair here.")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1),
              help="Replace a prefork child after this many tasks.")
@click.option("--shutdown-timeout", type=float,
              help="Seconds a warm shutdown waits for running tasks (default 25).")
@click.option("-B", "--beat", is_flag=True,
              help="Also run a beat (the periodic task scheduler) in this worker.")
@pass_script_info
def worker_command(info: ScriptInfo, concurrency: int | None, pool: str, queues: str | None,
                   hostname: str | None, loglevel: str, prefetch: int | None,
                   optimization: str | None, max_tasks_per_child: int | None,
                   shutdown_timeout: float | None, beat: bool) -> None:
    """Start a worker: ``flask --app APP jobs worker -c 4``."""
    if pool == "gevent":
        try:
            from gevent import monkey
        except ImportError:
            raise click.UsageError("The gevent pool needs gevent: pip install 'flask-jobs-redis[gevent]'")
        monkey.patch_all()  # before the app is imported, so its sockets are cooperative
    from .worker.main import Worker, configure_logging

    app = info.load_app()
    configure_logging(loglevel)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    with app.app_context():
        worker = Worker(app, pool=pool, concurrency=concurrency, queues=queue_list,
                        hostname=hostname, prefetch=prefetch,
                        max_tasks_per_child=max_tasks_per_child,
                        shutdown_timeout=shutdown_timeout, beat=beat)
        click.echo(worker.banner())
    try:
        code = worker.start()
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        raise click.ClickException(str(exc)) from None  # the reason, without a traceback
    sys.exit(code)


@jobs_cli.command("beat", with_appcontext=False)
@click.option("-l", "--loglevel", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                case_sensitive=False))
@click.option("--max-interval", type=click.FloatRange(min=0, min_open=True),
              help="Longest sleep between two looks at the schedule, in seconds (default "
                   "JOBS_BEAT_MAX_LOOP_INTERVAL).")
@click.option("-n", "--hostname", help="Node name in the beat's id (default beat@<host>).")
@click.option("-s", "--schedule", "schedule_file", metavar="FILE",
              help="Celery's schedule file, accepted for its command lines: the state of the "
                   "schedule lives in Redis here, so no file is written.")
@pass_script_info
def beat_command(info: ScriptInfo, loglevel: str, max_interval: float | None,
                 hostname: str | None, schedule_file: str | None) -> None:
    """Send periodic tasks when they are due (as ``celery beat``). Run as many as you like:
    one leads, each due run is sent once, and another takes over when the leader dies."""
    import signal

    from .beat import Beat
    from .worker.main import configure_logging

    app = info.load_app()
    configure_logging(loglevel)
    with app.app_context():
        beat = Beat(app, max_interval=max_interval, hostname=hostname)
        try:
            beat.setup()
        except (BrokerUnavailable, ImproperlyConfigured) as exc:
            raise click.ClickException(str(exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(f"Cannot reach Redis at {beat.state.broker_url_safe}: "
                                       f"{exc}") from None
        click.echo(beat.banner())
    if schedule_file:
        click.echo(f"(-s {schedule_file}: not needed, the schedule's state is in Redis)")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: beat.stop())
    beat.run()


@jobs_cli.group("schedule")
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


@schedule_group.command("remove")
@click.argument("name")
def schedule_remove(name: str) -> None:
    """Delete NAME (an entry of the configuration comes back when a beat starts)."""
    if not current_app.extensions["jobs"].jobs.schedule.remove(name):
        raise click.ClickException(f"No periodic task named {name!r}")
    click.echo(f"removed {name}")


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


@jobs_cli.command("status")
def status_command() -> None:
    """List the live workers, as ``celery status``; exit 1 when none is online."""
    stats = _inspector(None).stats()
    if not stats:
        raise click.ClickException("No worker is online.")
    for name, s in stats.items():
        queues = ", ".join(s.get("queues") or [])
        click.echo(f"{name}: OK  (pid {s.get('pid')}, {s.get('pool')} -c {s.get('concurrency')}, "
                   f"queues {queues}, {s['active']} held)")
    click.echo(f"\n{len(stats)} node{'' if len(stats) == 1 else 's'} online.")


@jobs_cli.command("inspect")
@click.argument("method", type=click.Choice(INSPECT_METHODS))
@click.option("-d", "--destination", help="Comma-separated worker names (default: every live "
              "worker).")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as one JSON object.")
def inspect_command(method: str, destination: str | None, as_json: bool) -> None:
    """Show what the live workers run, hold or can do, as ``celery inspect``.

    METHOD is ``active`` (running now), ``reserved`` (prefetched, not started), ``registered``
    (task names), ``stats`` (settings and how many tasks each holds) or ``ping``. Exits 1 when
    no worker (of ``--destination``) is online.
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


@jobs_cli.command("purge")
@click.option("-Q", "--queues", help="Comma-separated queues (default: every queue).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queues: str | None, force: bool) -> None:
    """Discard every task waiting in the queues (as ``celery purge``); they become REVOKED.

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
    n = Control(state.jobs).purge(names)
    click.echo(f"Purged {n} task(s) from {len(names)} queue(s).")


@jobs_cli.command("revoke")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True, help="Also stop the task if it is running.")
@click.option("--signal", "signal_name", type=click.Choice(["SIGTERM", "SIGKILL"]),
              default="SIGTERM", show_default=True, help="How --terminate stops it.")
def revoke_command(task_ids: tuple[str, ...], terminate: bool, signal_name: str) -> None:
    """Revoke tasks by id (as ``celery control revoke``)."""
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


@jobs_cli.group("dlq")
def dlq_group() -> None:
    """List, requeue or purge dead-lettered tasks."""


@dlq_group.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(limit: int, as_json: bool) -> None:
    """Show the newest dead letters with their reason."""
    for entry in DeadLetters(current_app.extensions["jobs"].broker).list(limit):
        if as_json:
            click.echo(json.dumps(entry))
        else:
            click.echo(f"{entry['id']}  {entry.get('name') or '?'}  {entry['reason']}")


@dlq_group.command("requeue")
@click.argument("task_ids", nargs=-1, required=True)
def dlq_requeue(task_ids: tuple[str, ...]) -> None:
    """Queue dead-lettered tasks again (their messages are kept with their records)."""
    broker = current_app.extensions["jobs"].broker
    failed = [t for t in task_ids if not DeadLetters(broker).requeue(t)]
    for t in task_ids:
        if t not in failed:
            click.echo(f"requeued {t}")
    if failed:
        raise click.ClickException(f"no message kept for: {', '.join(failed)} (expired?)")


@dlq_group.command("purge")
@click.confirmation_option(prompt="Delete every dead letter?")
def dlq_purge() -> None:
    """Delete every dead letter."""
    n = DeadLetters(current_app.extensions["jobs"].broker).purge()
    click.echo(f"purged {n} dead letter(s)")

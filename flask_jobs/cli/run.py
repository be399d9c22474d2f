"""``flask jobs worker`` and ``flask jobs beat``: the long-running processes."""

from __future__ import annotations

import sys

import click
import redis
from flask.cli import ScriptInfo, pass_script_info

from ..exceptions import BrokerUnavailable, ImproperlyConfigured
from ..logs import LOG_FORMATS
from ..worker.main import POOLS
from .group import jobs_cli


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
@click.option("--health-file", type=click.Path(dir_okay=False),
              help="Touch this file after every heartbeat (a probe checks its age).")
@click.option("-f", "--logfile", type=click.Path(dir_okay=False),
              help="Write the log to this file instead of stderr.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="text: Celery's lines; json: one JSON object per line.")
@pass_script_info
def worker_command(info: ScriptInfo, concurrency: int | None, pool: str, queues: str | None,
                   hostname: str | None, loglevel: str, prefetch: int | None,
                   optimization: str | None, max_tasks_per_child: int | None,
                   shutdown_timeout: float | None, beat: bool, health_file: str | None,
                   logfile: str | None, log_format: str) -> None:
    """Start a worker: 'flask --app APP jobs worker -c 4'."""
    if pool == "gevent":
        try:
            from gevent import monkey
        except ImportError:
            raise click.UsageError("The gevent pool needs gevent: pip install 'flask-jobs-redis[gevent]'")
        monkey.patch_all()  # before the app is imported, so its sockets are cooperative
    from ..worker.main import Worker, configure_logging

    app = info.load_app()
    configure_logging(loglevel, logfile, log_format)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    with app.app_context():
        worker = Worker(app, pool=pool, concurrency=concurrency, queues=queue_list,
                        hostname=hostname, prefetch=prefetch,
                        max_tasks_per_child=max_tasks_per_child,
                        shutdown_timeout=shutdown_timeout, beat=beat,
                        health_file=health_file)
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
@click.option("-f", "--logfile", type=click.Path(dir_okay=False),
              help="Write the log to this file instead of stderr.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="text: Celery's lines; json: one JSON object per line.")
@pass_script_info
def beat_command(info: ScriptInfo, loglevel: str, max_interval: float | None,
                 hostname: str | None, schedule_file: str | None, logfile: str | None,
                 log_format: str) -> None:
    """Send periodic tasks when they are due (as 'celery beat'). Run as many as you like:
    one leads, each due run is sent once, and another takes over when the leader dies."""
    import signal

    from ..beat import Beat
    from ..worker.main import configure_logging

    app = info.load_app()
    configure_logging(loglevel, logfile, log_format)
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

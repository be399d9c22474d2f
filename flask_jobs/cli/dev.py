"""``flask jobs dev``: the app, a worker and a beat in one command, for development."""

from __future__ import annotations

import signal
from typing import Any

import click
from flask.cli import ScriptInfo, pass_script_info
from werkzeug.serving import run_simple

from ..processes import JobsProcess, flask_argv
from .group import jobs_cli


@jobs_cli.command("dev", with_appcontext=False,
                  short_help="Run the app, a worker and a beat together (development).")
@click.option("-h", "--host", default="127.0.0.1", show_default=True)
@click.option("-p", "--port", type=int, default=5000, show_default=True)
@click.option("-P", "--pool", default="threads", show_default=True,
              type=click.Choice(["threads", "solo", "prefork", "gevent"]))
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--no-beat", is_flag=True, help="Do not run the periodic tasks.")
@pass_script_info
def dev_command(info: ScriptInfo, host: str, port: int, pool: str, concurrency: int,
                no_beat: bool) -> None:
    """Run the app's development server with a worker (and its beat, -B) beside it; Ctrl-C
    stops all three. Without JOBS_BROKER_URL, a private Redis (embedded://) starts in the
    instance folder, shared by the three."""
    app = info.load_app()
    app.debug = True  # (development: the embedded Redis when no JOBS_BROKER_URL is set)
    state = app.extensions["jobs"]
    try:
        with app.app_context():
            state.client.ping()  # starts (or joins) the embedded Redis before the worker
    except Exception as exc:  # noqa: BLE001 - any reason is shown as one line
        where = state.settings.broker_url or "embedded://"
        raise click.ClickException(f"Cannot use Redis ({where}): {exc}") from None
    command = ["worker", "-P", pool, "-c", str(concurrency)] + ([] if no_beat else ["-B"])
    worker = JobsProcess(flask_argv(info.app_import_path, command), prefix="[worker] ",
                         env={"FLASK_DEBUG": "1"})
    click.echo(f"dev: Redis at {state.broker_url_safe}; worker pid {worker.pid}"
               + ("" if no_beat else " (with its beat)"))

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if not worker.wait_ready(60):
            raise click.ClickException("The worker did not start; see its output above.")
        # (werkzeug's server directly: app.run() refuses to block inside a flask command)
        run_simple(host, port, app, use_debugger=True, use_reloader=False, threaded=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a second Ctrl-C must not cut this short)
        click.echo("dev: stopping the worker")
        worker.stop(timeout=30)

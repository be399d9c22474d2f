"""``flask jobs multi start|stop|restart|show``: background workers, as ``celery multi``."""

from __future__ import annotations

import socket
from pathlib import Path

import click
from flask.cli import ScriptInfo, pass_script_info

from ..processes import JobsProcess, alive, flask_argv, stop_pid
from .group import jobs_cli

ACTIONS = ("start", "stop", "restart", "show", "kill")


def _nodes(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Node names (a count N means worker1..workerN, as Celery's celery1..N) and the worker
    options that follow them."""
    names: list[str] = []
    rest = list(args)
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    if len(names) == 1 and names[0].isdigit():
        names = [f"worker{i}" for i in range(1, int(names[0]) + 1)]
    if not names:
        raise click.UsageError("Name the nodes (w1 w2 ...) or give their number (3).")
    return names, rest


def _path(template: str, node: str, hostname: str) -> Path:
    return Path(template.replace("%n", node).replace("%h", hostname)).resolve()


@jobs_cli.command("multi", context_settings={"ignore_unknown_options": True},
                  with_appcontext=False, short_help="Start or stop background workers.")
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--pidfile", default="%n.pid", show_default=True,
              help="Pid file of each node; %n is the node name, %h its hostname.")
@click.option("--logfile", default="%n.log", show_default=True, help="Log file of each node.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds start waits for a node to be ready, and stop for its warm "
                   "shutdown (then it is killed).")
@pass_script_info
def multi_command(info: ScriptInfo, action: str, args: tuple[str, ...], pidfile: str,
                  logfile: str, timeout: float) -> None:
    """Start, stop, restart or show background worker nodes, as 'celery multi'.

    flask jobs multi start 3 -c 2 starts worker1..worker3, each with "-c 2", its pid in
    worker1.pid and its log in worker1.log; flask jobs multi stop 3 stops them and waits for
    their warm shutdown. Nodes can be named: flask jobs multi start w1 w2 -P threads.
    """
    names, options = _nodes(args)
    host = socket.gethostname()
    failed = []
    for node in names:
        hostname = f"{node}@{host}"
        pid_path, log_path = _path(pidfile, node, hostname), _path(logfile, node, hostname)
        argv = flask_argv(info.app_import_path, ["worker", "-n", hostname, *options])
        if action == "show":
            click.echo(" ".join(argv) + f" >> {log_path}")
            continue
        pid = int(pid_path.read_text()) if pid_path.exists() else None
        if action in ("stop", "restart", "kill") and pid is not None:
            if alive(pid):
                click.echo(f"> {hostname}: {'killing' if action == 'kill' else 'stopping'} "
                           f"(pid {pid})")
                stop_pid(pid, 0.0 if action == "kill" else timeout)
            pid_path.unlink(missing_ok=True)
            pid = None
        elif action in ("stop", "kill"):
            click.echo(f"> {hostname}: not running")
        if action in ("start", "restart"):
            if pid is not None and alive(pid):
                click.echo(f"> {hostname}: already running (pid {pid})")
                continue
            child = JobsProcess(argv, logfile=log_path)
            pid_path.parent.mkdir(parents=True, exist_ok=True)
            pid_path.write_text(f"{child.pid}\n")
            if child.wait_ready(timeout):
                click.echo(f"> {hostname}: OK (pid {child.pid}, log {log_path})")
            else:
                failed.append(hostname)
                click.echo(f"> {hostname}: FAILED; the end of {log_path}:\n"
                           + "\n".join(child.output().splitlines()[-15:]), err=True)
    if failed:
        raise click.ClickException(f"{', '.join(failed)} did not start.")

"""The watchdog: the process that stops an embedded server once nobody uses it any more.

It is started detached next to the server, as ``python -m flask_jobs.embedded watch SOCKET
...`` (see :func:`spawn_watchdog`), and looks at the pid files of the users
(:mod:`~flask_jobs.embedded.users`) about once a second. Once no registered process has been
alive for :data:`WATCHDOG_GRACE` seconds, it takes the lock, checks again, sends ``SHUTDOWN
NOSAVE`` and exits. It also exits when its server is gone or was replaced by another one.

Because joining or starting (:func:`~flask_jobs.embedded.ensure_embedded`) and stopping both
happen under the same lock, a process that joins at the moment the watchdog decides to stop
either keeps the server alive or starts a fresh one; it never gets the URL of a server about to
die. A separate process rather than a thread of one user, because every user may exit (the
reloader of ``flask run`` restarts its only one) and the server must not outlive them all.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types

from . import resp
from .errors import RedisServerError
from .layout import Layout, file_lock, try_lock
from .process import reap_in_background, shutdown_server, spawn_detached
from .server import log_size, log_tail
from .users import live_users

#: How often (seconds) the watchdog checks its users and its server.
WATCHDOG_INTERVAL = 1.0
#: How long (seconds) no user may be alive before the watchdog stops the server.
WATCHDOG_GRACE = 2.0
#: The module the watchdog is started with (``python -m``): this package, whose ``__main__`` is
#: the command line. Spelled out: it is also a documented command (``... stop INSTANCE_PATH``).
MODULE_NAME = "flask_jobs.embedded"


def _package_root() -> str:
    """The folder that holds this copy of the ``flask_jobs`` package."""
    # This file is flask_jobs/embedded/watchdog.py.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn_watchdog(layout: Layout, run_id: str, timeout: float = 15.0) -> None:
    """Start the watchdog of the server ``run_id`` and wait until it holds its lock.

    :param layout: The embedded server's files.
    :param run_id: The server's ``run_id``: the watchdog exits if another server replaces it.
    :param timeout: Seconds to wait for the watchdog to take its lock.
    :raises RedisServerError: if the watchdog exits or doesn't take its lock in time (it is
        killed then); the message ends with its log.
    """
    env = dict(os.environ)
    # The watchdog must import this same copy of the package, even when it's only
    # importable thanks to the caller's working directory or sys.path tweaks.
    package_root = _package_root()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", MODULE_NAME, "watch", layout.socket,
            "--state-dir", layout.state_dir, "--run-id", run_id]
    offset = log_size(layout.watchdog_log)
    proc = spawn_detached(argv, layout.watchdog_log, layout.state_dir, env)
    deadline = time.monotonic() + timeout
    # A server without a watchdog would never stop, so a watchdog that can't start
    # (say, flask_jobs not importable by sys.executable) must be noticed now.
    while watchdog_status(layout) != (True, proc.pid):
        code = proc.poll()
        if code is not None or time.monotonic() >= deadline:
            if code is None:
                proc.kill()
                proc.wait()
            raise RedisServerError(
                f"The embedded Redis watchdog ({' '.join(argv[1:4])}) did not start."
                f" Its log:\n{log_tail(layout.watchdog_log, offset)}"
            )
        time.sleep(0.02)
    reap_in_background(proc)


def watchdog_status(layout: Layout) -> tuple[bool, int | None]:
    """Return whether a watchdog runs (holds its lock), and the pid it wrote into the lock file.

    The pid is ``None`` if there is no watchdog or it hasn't written its pid yet.

    :param layout: The embedded server's files.
    """
    fd = os.open(layout.watchdog_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if try_lock(fd):
            return False, None
        content = os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        # Also releases the lock if we just took it.
        os.close(fd)
    return True, int(content) if content.isdigit() else None


def stop_watchdog(layout: Layout, timeout: float = 5.0) -> None:
    """Stop the watchdog, if any, and wait until it has let go of its lock.

    It gets SIGTERM, and SIGKILL if it still holds its lock ``timeout`` seconds later.

    :param layout: The embedded server's files.
    :param timeout: Seconds to wait before the SIGKILL.
    """
    deadline = time.monotonic() + timeout
    signalled: set[int] = set()
    while True:
        running, pid = watchdog_status(layout)
        if not running:
            return
        # The pid was read while its writer held the lock, so it is the watchdog's (a
        # watchdog clears the file on exit, and overwrites it before it's read again).
        if pid is not None and pid not in signalled:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            signalled.add(pid)
        if time.monotonic() >= deadline:
            for pid in signalled:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(0.02)


def watch(
    socket_path: str,
    state_dir: str,
    run_id: str,
    interval: float = WATCHDOG_INTERVAL,
    grace: float = WATCHDOG_GRACE,
) -> int:
    """Run the watchdog in this process: the body of ``python -m flask_jobs.embedded watch``.

    Returns once the server is stopped, gone or replaced, or another watchdog holds the lock;
    exits on SIGTERM (from :func:`stop_watchdog`). It logs to stderr, which
    :func:`spawn_watchdog` sends to ``watchdog.log``.

    :param socket_path: The server's unix socket.
    :param state_dir: The folder with the locks and the users (:attr:`Layout.state_dir`).
    :param run_id: The server's ``run_id``, to notice it was replaced.
    :param interval: Seconds between two checks.
    :param grace: Seconds without any live user before the server is stopped.
    :return: The exit status, ``0``.
    """
    instance_path = os.path.dirname(state_dir)
    layout = Layout(instance_path, socket_path, state_dir)

    def log(message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} watchdog {os.getpid()}: {message}", file=sys.stderr, flush=True)

    def server_state() -> str:
        if not resp.accepting(socket_path):
            return "gone"
        try:
            current = resp.info(socket_path).get("run_id")
        except (OSError, resp.ReplyError):
            # Busy or momentarily unhappy, but listening: still ours to watch.
            return "up"
        return "up" if current == run_id else "replaced"

    def server_lost() -> bool:
        return server_state() != "up"

    fd = os.open(layout.watchdog_lock, os.O_RDWR | os.O_CREAT, 0o600)
    # The previous watchdog of a crashed server may still hold the lock for up to one
    # interval before it notices; wait for it rather than leave this server unwatched.
    deadline = time.monotonic() + max(10 * interval, 10.0)
    while not try_lock(fd):
        if server_lost():
            log(f"server {run_id} is gone before the watchdog started")
            return 0
        if time.monotonic() >= deadline:
            log("another watchdog holds the lock; exiting")
            return 0
        time.sleep(0.05)
    # Overwrite, then cut: readers never see an empty file or a mix of two pids.
    pid_bytes = str(os.getpid()).encode()
    os.pwrite(fd, pid_bytes, 0)
    os.ftruncate(fd, len(pid_bytes))
    resigned = False

    def resign() -> None:
        nonlocal resigned
        if not resigned:
            resigned = True
            # Clear the pid so nobody later signals whatever process reuses it.
            os.ftruncate(fd, 0)
            os.close(fd)

    def on_sigterm(signum: int, frame: types.FrameType | None) -> None:
        # stop_embedded() ends the watchdog this way.
        log("terminated by SIGTERM")
        resign()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    log(f"watching server {run_id} on {socket_path}")
    last_alive = time.monotonic()
    users = live_users(layout)
    while True:
        state = server_state()
        if state != "up":
            log(f"server {run_id} is {state}; exiting")
            resign()
            return 0
        alive = live_users(layout, log)
        if alive != users:
            log(f"users alive: {alive}")
            users = alive
        if alive:
            last_alive = time.monotonic()
        elif time.monotonic() - last_alive >= grace:
            with file_lock(layout.lock, timeout=3600, abort=server_lost) as locked:
                if not locked:
                    continue
                # Someone may have registered while we waited for the lock.
                if live_users(layout, log):
                    last_alive = time.monotonic()
                    continue
                if server_lost():
                    continue
                log(f"no users for {grace} s; shutting down server {run_id}")
                shutdown_server(socket_path)
                # Give up the watchdog role while still holding the main lock, so the
                # watchdog of a server started right after this can take it at once.
                resign()
                layout.remove_short_socket_dir()
                log("server stopped; exiting")
                return 0
        time.sleep(interval)

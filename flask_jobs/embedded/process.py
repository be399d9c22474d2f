"""Processes that outlive the process that started them, and are never waited for as children.

Embedded mode's server and watchdog run detached, in a session of their own, so that they
survive whoever started them and a Ctrl-C in that terminal. Nobody can ``wait()`` for them but
their starter, and it may be gone; so whether one still runs is asked of the OS by pid. Pids
are reused, though, and an exited child of a live parent lingers as a zombie, so a pid
that answers is checked further against ``/proc``: its state and its start time. The same
check tells whether the processes using embedded mode (:mod:`~flask_jobs.embedded.users`)
are alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from . import resp


def spawn_detached(
    argv: list[str], log: str, cwd: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process that outlives its starter, its output appended to ``log``.

    It gets a new session, so it survives its starter and a Ctrl-C in that terminal. Once it is
    known to run, hand it to :func:`reap_in_background`.

    :param argv: The command line.
    :param log: File that receives its stdout and stderr.
    :param cwd: Its working directory.
    :param env: Its environment. Default: this process's.
    """
    with open(log, "ab") as log_file:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)


def reap_in_background(proc: subprocess.Popen[bytes]) -> None:
    """Reap ``proc`` from a daemon thread when it exits, without waiting for it here.

    A detached server or watchdog must outlive this process, so nobody waits for it. If it
    exits first, though, it would stay a zombie (and keep looking alive) until reaped. Call
    this only once done with ``proc.poll()``: while the thread waits, ``poll()`` can't see the
    exit.

    :param proc: A process from :func:`spawn_detached`.
    """
    threading.Thread(target=proc.wait, name=f"flask-jobs-reap-{proc.pid}", daemon=True).start()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` from ``/proc/<pid>/stat``, or ``None`` without ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; skip past its end.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    # Field 3 is the state, field 22 the start time in clock ticks since boot.
    return fields[0].decode(), fields[19].decode()


def pid_alive(pid: int, start_time: str = "") -> bool:
    """Whether the process ``pid`` is alive: it exists and is not a zombie.

    :param pid: The process id.
    :param start_time: Its :func:`start_time` when it was known to be alive. If given and the
        process with this pid started at another time, the pid was reused: the process that
        had it is dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists; it just belongs to someone else.
        return True
    info = _proc_stat(pid)
    if info is None:
        return True
    state, started = info
    # A zombie has exited; its parent just hasn't reaped it yet.
    if state in ("Z", "X"):
        return False
    # Same pid, different start time: that process exited and the pid was reused.
    return not (start_time and started != start_time)


def start_time(pid: int) -> str:
    """Return when the process ``pid`` started, in clock ticks since boot, as a string.

    That is an opaque token for :func:`pid_alive`; ``""`` where there is no ``/proc``.

    :param pid: The process id.
    """
    info = _proc_stat(pid)
    return "" if info is None else info[1]


def shutdown_server(socket_path: str, timeout: float = 10.0) -> None:
    """``SHUTDOWN NOSAVE`` the detached server on ``socket_path`` and wait until it is gone.

    Gone means its socket refuses connections and its process has exited. It is killed with
    SIGKILL if that takes longer than ``timeout``; this returns at the latest ``timeout`` after
    that.

    :param socket_path: The server's unix socket.
    :param timeout: Seconds to wait, before and after the SIGKILL.
    """
    server_pid = resp.server_pid(socket_path)
    resp.send_shutdown(socket_path)

    def gone() -> bool:
        return not resp.accepting(socket_path) and (server_pid is None or not pid_alive(server_pid))

    deadline = time.monotonic() + timeout
    while not gone():
        if time.monotonic() >= deadline:
            if server_pid is not None:
                try:
                    os.kill(server_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while not gone() and time.monotonic() < deadline:
                time.sleep(0.02)
            return
        time.sleep(0.02)

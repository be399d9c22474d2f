"""The processes using an embedded server ("users"), one pid file each.

Each process that calls :func:`~flask_jobs.embedded.ensure_embedded` writes
``flask-jobs-redis/users/<pid>``, holding its start time, and removes it at normal interpreter
exit. The watchdog stops the server once none of them is alive.

Users are pid files, not something inside Redis, because a ``FLUSHALL`` or ``FLUSHDB`` (test
fixtures do that) must not make the server forget its users and shut down under them. The start
time is there so that a recycled pid is not mistaken for a live user; zombies count as dead.
Files of processes that were killed (no interpreter exit, so no cleanup) are pruned by
:func:`live_users`.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable

from . import process
from .layout import Layout

# pids registered from this process, as (pid, users dir). The pid is part of the key
# because a forked child inherits this set but is a different process.
_registered: set[tuple[int, str]] = set()


def register_user(layout: Layout) -> None:
    """Register this process as a user of the server of ``layout`` until it exits.

    Writing the file again is harmless, so this may be called on every join; the removal at exit
    is set up once per process and folder.

    :param layout: The embedded server's files.
    """
    pid = os.getpid()
    path = os.path.join(layout.users_dir, str(pid))
    with open(path, "w") as f:
        f.write(process.start_time(pid))
    if (pid, layout.users_dir) not in _registered:
        _registered.add((pid, layout.users_dir))
        atexit.register(_unregister_user, pid, path)


def _unregister_user(pid: int, path: str) -> None:
    # atexit handlers are inherited by forked children; only the registrant removes it.
    if os.getpid() != pid:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def live_users(layout: Layout, log: Callable[[str], None] | None = None) -> list[int]:
    """Return the registered pids that are alive, in order; delete the files of dead ones.

    :param layout: The embedded server's files.
    :param log: Called with a message for each dead user whose file was deleted.
    """
    alive: list[int] = []
    try:
        names = os.listdir(layout.users_dir)
    except FileNotFoundError:
        return alive
    for name in names:
        if not name.isdigit():
            continue
        path = os.path.join(layout.users_dir, name)
        try:
            with open(path) as f:
                start_time = f.read().strip()
        except FileNotFoundError:
            # Removed by its process at exit.
            continue
        if process.pid_alive(int(name), start_time):
            alive.append(int(name))
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if log is not None:
            log(f"user {name} exited")
    return sorted(alive)

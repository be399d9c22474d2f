"""Embedded mode: one ``redis-server`` per Flask instance folder, shared by the app's processes.

Every process of the app on this machine (web process, workers, CLI) uses the same server, which
stops shortly after the last of them exits. It is what ``JOBS_BROKER_URL = "embedded://"`` (and
the debug default) means: no Redis to install or start while developing.

:func:`ensure_embedded` starts the server or joins the one running, on a unix socket in the
instance folder (:mod:`~flask_jobs.embedded.layout`), and registers the calling process as a
user (:mod:`~flask_jobs.embedded.users`); the watchdog (:mod:`~flask_jobs.embedded.watchdog`)
stops the server once no user is left. :func:`stop_embedded` stops it at once. How the pieces
fit together is told in :mod:`flask_jobs.embedded`.
"""

from __future__ import annotations

import os
import warnings

from . import resp
from .binary import find_redis_server
from .errors import RedisServerError
from .layout import Layout, file_lock, instance_layout
from .process import reap_in_background, shutdown_server, spawn_detached
from .server import server_argv, wait_until_ready
from .users import register_user
from .watchdog import spawn_watchdog, stop_watchdog, watchdog_status


def _start_server(layout: Layout, timeout: float = 10.0) -> str:
    """Start a detached server on the layout's socket; return its run id."""
    argv = server_argv(find_redis_server(), port=0, unix_socket=layout.socket,
                       directory=layout.state_dir, logfile=layout.server_log, extra_args=())
    # Keep the previous run's log: it tells why that server went away.
    for log in (layout.server_log, layout.watchdog_log):
        if os.path.exists(log):
            os.replace(log, log + ".1")
    proc = spawn_detached(argv, layout.server_log, layout.state_dir)
    wait_until_ready(proc, layout.socket, layout.server_log, 0, timeout)
    # Only now: while the reaper thread waits, proc.poll() can't see the exit.
    reap_in_background(proc)
    return resp.info(layout.socket)["run_id"]


def ensure_embedded(instance_path: str) -> str:
    """Start or join the embedded Redis of a Flask instance folder; return its URL.

    The first process to call this starts a ``redis-server`` on the unix socket
    ``<instance_path>/flask-jobs-redis.sock`` (creating the folder if needed); later
    callers, in any process on this machine, join the same server. Each calling
    process is registered as a user, and a watchdog stops the server about two seconds
    after the last user exited. The server is detached: it keeps running when the
    process that started it exits while other users remain.

    Safe to call any number of times and from several processes at once. See
    :mod:`flask_jobs.embedded` for the files involved and for long instance paths.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    :return: ``unix:///abs/path/flask-jobs-redis.sock?db=0``.
    :raises RedisServerNotFound: if a server must be started and there is no binary.
    :raises RedisServerError: if the server or its watchdog fails to start, or a
        running server doesn't answer.
    """
    layout = instance_layout(instance_path)
    with file_lock(layout.lock):
        # Register first: from here on a watchdog deciding to stop sees this user.
        register_user(layout)
        if resp.accepting(layout.socket):
            try:
                run_id = resp.info(layout.socket)["run_id"]
            except (OSError, resp.ReplyError, KeyError) as e:
                raise RedisServerError(
                    f"The embedded redis-server on {layout.socket} accepts connections but"
                    f" does not answer INFO ({e!r}). Stop it with"
                    f" stop_embedded({layout.instance_path!r})."
                ) from e
            if not watchdog_status(layout)[0]:
                # It was killed; without one the server would never stop.
                try:
                    spawn_watchdog(layout, run_id)
                except RedisServerError as e:
                    warnings.warn(str(e), RuntimeWarning, stacklevel=2)
            return layout.url
        run_id = _start_server(layout)
        try:
            spawn_watchdog(layout, run_id)
        except BaseException:
            shutdown_server(layout.socket)
            raise
    return layout.url


def embedded_url(instance_path: str) -> str:
    """Return the URL of the embedded Redis for ``instance_path``, starting or joining it.

    The same as :func:`ensure_embedded`, which says so in its name.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    """
    return ensure_embedded(instance_path)


def stop_embedded(instance_path: str) -> bool:
    """Stop the embedded Redis of an instance folder now, whoever is using it.

    Its watchdog is stopped too. Data is not saved.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    :return: Whether a server was running.
    """
    layout = instance_layout(instance_path, create=False)
    if not os.path.isdir(layout.state_dir):
        return False
    with file_lock(layout.lock):
        was_running = resp.accepting(layout.socket)
        if was_running:
            shutdown_server(layout.socket)
        stop_watchdog(layout)
        layout.remove_short_socket_dir()
    return was_running

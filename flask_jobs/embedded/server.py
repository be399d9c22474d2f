"""A private ``redis-server``: a child process owned by a Python object, and its process helpers.

:class:`RedisServer` is what tests, benchmarks and the demo use: a server that lives exactly as
long as the object that started it, nothing persisted, never on the default port. Embedded mode
(:mod:`~flask_jobs.embedded.mode`) starts its shared server with the same command line
(:func:`server_argv`) and waits for it the same way (:func:`wait_until_ready`), but detached
(:mod:`~flask_jobs.embedded.process`), since that one must outlive the process that started it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import weakref
from collections.abc import Sequence
from typing import Any

import redis

from . import resp
from .binary import find_redis_server
from .errors import RedisServerError

#: File name of a server's log in its directory.
SERVER_LOG = "redis-server.log"
#: Longest unix socket path the OS allows, in bytes: ``sun_path`` is 108 bytes on Linux and 104
#: on macOS/BSD, both including the trailing NUL.
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103

# Never auto-pick the default Redis port: a real Redis may be (or later be) listening there.
_DEFAULT_REDIS_PORT = 6379


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now, never 6379.

    Someone else may take it before it is used; callers that can, try again on another.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != _DEFAULT_REDIS_PORT:
            return port


def _check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(
            f"Unix socket path is {len(os.fsencode(path))} bytes, more than the"
            f" {MAX_SOCKET_PATH} the OS allows: {path}"
        )


def server_argv(
    executable: str,
    *,
    port: int,
    unix_socket: str | None,
    directory: str,
    logfile: str,
    extra_args: Sequence[str],
) -> list[str]:
    """Return the command line of a private server: nothing persisted, no eviction, local only.

    :param executable: The ``redis-server`` binary.
    :param port: TCP port on 127.0.0.1; ``0`` for none.
    :param unix_socket: Also (or only) listen on this unix socket, for this user only.
    :param directory: The server's working directory.
    :param logfile: Where the server logs.
    :param extra_args: More ``--option value`` arguments. ``--save``, ``--appendonly``,
        ``--protected-mode`` and ``--maxmemory-policy`` given here replace the defaults.
    """
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
    defaults = {"save": "", "appendonly": "no", "protected-mode": "no", "maxmemory-policy": "noeviction"}
    for name, value in defaults.items():
        if name not in given:
            argv += [f"--{name}", value]
    argv += extra_args
    return argv


def log_size(path: str) -> int:
    """Return the size of the log file at ``path``, ``0`` if there is none.

    Taken before a start, it is the offset :func:`log_tail` reads from, so that an error message
    shows only that start's part of the log.
    """
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_tail(path: str, offset: int = 0, max_chars: int = 3000) -> str:
    """Return the end of the log file at ``path``, for an error message.

    :param path: The log file.
    :param offset: Ignore what the file held before this byte offset (see :func:`log_size`).
    :param max_chars: Return at most this many of the last characters.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    text = text.strip()
    return text[-max_chars:] if text else "(log is empty)"


def wait_until_ready(
    proc: subprocess.Popen[bytes],
    address: resp.Address,
    logfile: str,
    log_offset: int,
    timeout: float,
    password: str | None = None,
) -> None:
    """Poll until the server started as ``proc`` answers ``PING`` at ``address``.

    :param proc: The server's process.
    :param address: Where it listens.
    :param logfile: Its log, quoted in the error.
    :param log_offset: Quote the log from this offset on (see :func:`log_size`).
    :param timeout: Seconds to wait.
    :param password: For a server started with ``--requirepass``.
    :raises RedisServerError: if it exits (with its log), or doesn't answer in time (it is
        killed then).
    """
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise RedisServerError(
                f"redis-server exited with status {code} while starting. Its log:\n"
                + log_tail(logfile, log_offset)
            )
        # Check the pid too: on TCP, a port picked with bind(0) may have been taken by
        # another Redis, which would answer while ours fails with "Address in use".
        if resp.ping(address, password) and resp.server_pid(address, password) == proc.pid:
            return
        if time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            raise RedisServerError(
                f"redis-server did not answer PING within {timeout} s. Its log:\n"
                + log_tail(logfile, log_offset)
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
        return None if directory is None else os.path.join(directory, SERVER_LOG)

    @property
    def _address(self) -> resp.Address:
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
                self.port = free_port()
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
        argv = server_argv(executable, port=self.port or 0, unix_socket=self.unix_socket,
                           directory=directory, logfile=logfile, extra_args=self.extra_args)
        # Only this start's part of the log goes into error messages.
        offset = log_size(logfile)
        # Startup errors (bad config) go to stderr before the logfile is opened.
        with open(logfile, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=directory)
        self._proc = proc
        self._set_finalizer()
        wait_until_ready(proc, self._address, logfile, offset, timeout, self._password)

    def _set_finalizer(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        assert self._proc is not None
        self._finalizer = weakref.finalize(self, _cleanup_server, self._proc, self._tmpdir)

    @property
    def url(self) -> str:
        """The URL of the server: ``redis://127.0.0.1:PORT/0``, or ``unix:///path/to.sock?db=0``.

        The unix socket is preferred when the server listens on both. The password of a server
        started with ``--requirepass`` is part of it.
        """
        secret = urllib.parse.quote(self._password or "", safe="")
        if self.unix_socket is not None:
            auth = f"&password={secret}" if secret else ""
            return f"unix://{urllib.parse.quote(self.unix_socket)}?db=0{auth}"
        if self.port is None:
            raise RuntimeError("The server has no URL until it is started.")
        return f"redis://{f':{secret}@' if secret else ''}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
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
        """Stop the server: ``SHUTDOWN NOSAVE``, then SIGTERM and SIGKILL if that is slow.

        SIGTERM follows if it is still running five seconds later, SIGKILL two seconds after
        that. Removes the temporary directory if this object made it. Does nothing if the
        server isn't running.
        """
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                resp.send_shutdown(self._address, self._password)
                _end_process(proc)
            self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would.

        Its directory is kept, so :meth:`start` can bring it back on the same address.
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


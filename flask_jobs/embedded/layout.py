"""Where embedded mode keeps its files for one instance folder, and the locks on them.

Everything lives in the instance folder (``app.instance_path``; the files are listed in
:mod:`flask_jobs.embedded`), so that every process of one app finds the same server without
any configuration, and two apps never share one. :class:`Layout` names the files;
:func:`instance_layout` makes it for a folder.

Unix socket paths are limited to 107 bytes (103 on macOS/BSD). When
``<instance_path>/flask-jobs-redis.sock`` is longer, the socket goes to a private (mode 0700)
directory ``/tmp/flask-jobs-<uid>-<hash of instance path>/`` instead; the other files stay in
the instance folder.

The locks are ``fcntl`` locks, which the OS releases when their holder dies, so a crashed
process never leaves one behind. They are why embedded mode is not available on Windows, and
why the instance folder must be on a local filesystem.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import types
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import RedisServerError
from .server import MAX_SOCKET_PATH, SERVER_LOG

fcntl: types.ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; only embedded mode needs it
    fcntl = None

#: File name of the embedded server's socket inside the instance folder.
EMBEDDED_SOCKET_NAME = "flask-jobs-redis.sock"
#: Directory inside the instance folder with the embedded server's lock, logs and users.
EMBEDDED_STATE_DIR = "flask-jobs-redis"

_WATCHDOG_LOG = "watchdog.log"


@dataclass(frozen=True)
class Layout:
    """Where the files of one instance folder's embedded server live.

    Made by :func:`instance_layout`; the watchdog makes its own from the paths it was given.

    :param instance_path: The instance folder, resolved (see :func:`instance_layout`).
    :param socket: The server's unix socket.
    :param state_dir: The folder with the lock files, the logs and the users.
    """

    instance_path: str
    socket: str
    state_dir: str

    @property
    def lock(self) -> str:
        """The lock held while checking for the server and starting or stopping it."""
        return os.path.join(self.state_dir, "lock")

    @property
    def watchdog_lock(self) -> str:
        """The lock the watchdog holds while it runs; the file holds its pid."""
        return os.path.join(self.state_dir, "watchdog.lock")

    @property
    def users_dir(self) -> str:
        """The folder with one pid file per user (:mod:`~flask_jobs.embedded.users`)."""
        return os.path.join(self.state_dir, "users")

    @property
    def server_log(self) -> str:
        """The server's log file."""
        return os.path.join(self.state_dir, SERVER_LOG)

    @property
    def watchdog_log(self) -> str:
        """The watchdog's log file."""
        return os.path.join(self.state_dir, _WATCHDOG_LOG)

    @property
    def url(self) -> str:
        """The server's URL: ``unix:///path/to/flask-jobs-redis.sock?db=0``."""
        return f"unix://{urllib.parse.quote(self.socket)}?db=0"

    def remove_short_socket_dir(self) -> None:
        """Remove the ``/tmp`` folder of the socket of a long instance path, once it is empty."""
        # Only the /tmp fallback dir is ours to remove, and only once it's empty.
        parent = os.path.dirname(self.socket)
        if parent != self.instance_path:
            try:
                os.rmdir(parent)
            except OSError:
                pass


def instance_layout(instance_path: str, create: bool = True) -> Layout:
    """Return the :class:`Layout` of the embedded server of ``instance_path``.

    :param instance_path: The app's instance folder, ``app.instance_path``.
    :param create: Create the folders (and for a long instance path, the private socket
        folder under ``/tmp``). Without it nothing is created or checked, for callers that only
        look.
    :raises RedisServerError: if the socket folder under ``/tmp`` exists but isn't private.
    """
    if create:
        os.makedirs(instance_path, exist_ok=True)
    # realpath: two processes naming the folder through different symlinks must agree.
    instance_path = os.path.realpath(instance_path)
    sock = os.path.join(instance_path, EMBEDDED_SOCKET_NAME)
    if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
        sock = os.path.join(_short_socket_dir(instance_path, create), "redis.sock")
    layout = Layout(instance_path, sock, os.path.join(instance_path, EMBEDDED_STATE_DIR))
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


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` if nobody holds one; whether it did.

    The lock goes when ``fd`` is closed (or its process dies).

    :param fd: A file descriptor open for reading and writing.
    :raises RedisServerError: on Windows, which has no ``fcntl``.
    """
    locks = _require_fcntl()
    try:
        locks.flock(fd, locks.LOCK_EX | locks.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def file_lock(
    path: str,
    timeout: float = 60.0,
    abort: Callable[[], bool] | None = None,
) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``path`` (created if needed) for the ``with`` block.

    Yields ``True`` with the lock, or ``False`` without it if ``abort()`` became true while
    waiting.

    :param path: The lock file.
    :param timeout: Seconds to wait for the lock.
    :param abort: Called about twice a second while waiting: give up when it returns true.
    :raises RedisServerError: if the lock isn't free within ``timeout``.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        next_abort_check = time.monotonic()
        while not try_lock(fd):
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

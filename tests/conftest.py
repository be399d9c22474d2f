"""Shared fixtures: the app, real worker processes, and waiting on conditions with deadlines.

The private Redis comes from our own pytest plugin (``jobs_redis_url``), so the suite dogfoods it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.apps import basic
from tests.proxy import LossyProxy

if TYPE_CHECKING:
    from flask_jobs.worker.main import BackgroundWorker

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
    """Return the first truthy value of ``condition()``, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(0.005)  # the retry interval of a deadline wait, not a timing assumption


@pytest.fixture
def app(jobs_redis_url: str, jobs_redis: Any) -> Any:
    """The test app on the test Redis, with short timeouts so recovery tests are quick."""
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_ORPHAN_TIMEOUT": 1.0})
    with app.app_context():
        yield app


class LoggedProcess:
    """A subprocess in its own session with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "w+")
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the main process."""
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker's prefork children too)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


class WorkerProcess(LoggedProcess):
    """A real ``flask jobs worker`` process on the test app."""

    def __init__(self, redis_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "JOBS_BROKER_URL": redis_url, "JOBS_ORPHAN_TIMEOUT": "1.0",
                    "PYTHONPATH": str(ROOT), **(env or {})}
        argv = [sys.executable, "-m", "flask", "--app", "tests.apps.basic:create_app",
                "jobs", "worker", *args]
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"worker-{time.time_ns()}.log"
        super().__init__(argv, full_env, log_path)

    def wait_ready(self, timeout: float = 20.0) -> WorkerProcess:
        """Wait for the 'ready.' log line."""
        wait_for(lambda: "ready." in self.output() or self.proc.poll() is not None, timeout,
                 "worker ready")
        assert self.proc.poll() is None, self.output()
        return self


@pytest.fixture
def worker_process(jobs_redis_url: str, jobs_redis: Any) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes: ``worker_process("-P", "solo")``; all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> WorkerProcess:
        w = WorkerProcess(jobs_redis_url, *args, env=env)
        started.append(w)
        return w.wait_ready() if ready else w

    yield start
    for w in started:
        w.kill() if w.proc.poll() is None else None
        w.log.close()


@pytest.fixture
def proxy(jobs_redis_url: str) -> Iterator[LossyProxy]:
    """A :class:`~tests.proxy.LossyProxy` in front of the test Redis."""
    p = LossyProxy(jobs_redis_url)
    yield p
    p.close()


@pytest.fixture
def proxied_worker(app: Any, proxy: LossyProxy) -> Iterator[Callable[..., BackgroundWorker]]:
    """Start a real worker (threads of this process) whose every connection goes through
    ``proxy``; tests send tasks and read Redis directly (``app``, ``jobs_redis``). ``config``
    adds to the worker app's configuration."""
    from flask_jobs.worker.main import BackgroundWorker

    started: list[BackgroundWorker] = []

    def start(config: dict[str, Any] | None = None, **kwargs: Any) -> BackgroundWorker:
        wapp = basic.create_app({"JOBS_BROKER_URL": proxy.url, "JOBS_ORPHAN_TIMEOUT": 60.0,
                                 **(config or {})})
        w = BackgroundWorker(wapp, **kwargs).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()

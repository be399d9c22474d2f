"""The app our engine tests run: tasks covering every feature, config from the environment.

Workers started as real processes load it with ``flask --app tests.apps.basic:create_app``;
every ``JOBS_*`` environment variable becomes a config value (JSON-decoded when it parses).
Tasks that must be observed from the test process (hooks, effects) write to Redis lists.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import redis
from flask import Flask, current_app

from flask_jobs import Jobs, Task, get_task_logger
from flask_jobs.exceptions import SoftTimeLimitExceeded
from tests.apps.env import app_from_env

jobs = Jobs()


def effects() -> redis.Redis:
    """A client of the app's Redis, for tasks to record what happened."""
    # (the app's own kind of client: the broker URL may name Sentinels, not a server)
    return current_app.extensions["jobs"].make_client(blocking=True)


class CustomError(Exception):
    """An application exception, to check that failures keep their type name and message."""


class RecordingTask(Task):
    """A base class whose hooks record each call in the Redis list ``hooks``."""

    def _record(self, *fields: object) -> None:
        effects().rpush("hooks", json.dumps([str(f) for f in fields]))

    def on_success(self, retval, task_id, args, kwargs):
        self._record("on_success", retval, task_id)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self._record("on_failure", type(exc).__name__, task_id, "Traceback" in str(einfo))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        self._record("on_retry", type(exc).__name__, task_id)

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self._record("after_return", status, task_id)


@jobs.task
def add(x, y):
    return x + y


@jobs.task
def mul(x, y):
    return x * y


@jobs.task
def xsum(numbers):
    return sum(numbers)


@jobs.task(name="custom.name")
def named():
    return "named"


@jobs.task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@jobs.task
def config_value(key):
    return current_app.config.get(key)


@jobs.task(bind=True)
def whoami(self):
    r = self.request
    return {"id": r.id, "retries": r.retries, "hostname": r.hostname, "args": r.args,
            "delivery_attempt": r.delivery_attempt, "attempt": r.attempt,
            "headers": r.headers, "name": self.name}


@jobs.task
def fail(message="boom"):
    raise CustomError(message)


@jobs.task
def fail_builtin():
    raise KeyError("missing")


@jobs.task
def unencodable_result():
    return object()


@jobs.task(bind=True)
def progress_task(self, n, pause=0.0):
    for i in range(n):
        self.update_state(state="PROGRESS", meta={"current": i, "total": n, "status": "working"})
        if pause:
            time.sleep(pause)
    return {"current": n, "total": n, "status": "done", "result": 42}


@jobs.task(bind=True)
def progress_shortcut(self, n):
    for i in range(n):
        self.progress(i + 1, n, status=f"step {i + 1}")
    return n


@jobs.task(bind=True)
def custom_state(self):
    self.update_state(state="CRUNCHING", meta={"phase": 1})
    return "ok"


@jobs.task(bind=True, max_retries=3, default_retry_delay=0.05, base=RecordingTask)
def retry_then_succeed(self, succeed_on):
    if self.request.retries < succeed_on:
        raise self.retry(exc=ValueError(f"try {self.request.retries}"), countdown=0.05)
    return self.request.retries


@jobs.task(bind=True, max_retries=2)
def retry_forever(self):
    try:
        raise CustomError("always")
    except CustomError as exc:
        self.retry(exc=exc, countdown=0.01)


@jobs.task(bind=True, max_retries=1)
def retry_without_exc(self):
    self.retry(countdown=0.01)


@jobs.task(autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 3},
           retry_backoff=0.01, retry_jitter=False, bind=True)
def autoretry(self, succeed_on):
    effects().rpush("autoretry", self.request.retries)
    if self.request.retries < succeed_on:
        raise ConnectionError("flaky network")
    return "ok"


@jobs.task(base=RecordingTask)
def hooked(x):
    if x < 0:
        raise CustomError("negative")
    return x * 2


@jobs.task
def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


@jobs.task(bind=True)
def sleep_and_record(self, seconds, key="effects"):
    """Record start (with attempt) and end in Redis: the test reads duplicates from them."""
    r = effects()
    r.rpush(f"{key}:start", json.dumps([self.request.id, self.request.attempt, os.getpid()]))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    r.rpush(f"{key}:end", self.request.id)
    return os.getpid()


@jobs.task(bind=True)
def hold_until_released(self, gate, key="effects"):
    """Record its start, then block until the test pushes to the list ``gate`` (30 s at most)."""
    r = effects()
    r.rpush(f"{key}:start", json.dumps([self.request.id, self.request.attempt, os.getpid()]))
    released = r.blpop([gate], 30)
    r.rpush(f"{key}:end", self.request.id)
    return released is not None


@jobs.task
def cpu_burn(seconds):
    """Hold the GIL-heavy loop for a while (the heartbeat must not starve)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@jobs.task(soft_time_limit=0.2)
def soft_limited():
    try:
        time.sleep(5)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "not interrupted"


@jobs.task(time_limit=0.3)
def hard_limited():
    time.sleep(5)
    return "finished"


@jobs.task(time_limit=0.3)
def hard_limited_busy():
    while True:  # a loop that swallows ordinary exceptions
        try:
            time.sleep(0.01)
        except Exception:
            pass


@jobs.task
def kill_self():
    """A poison pill: kills the process running it."""
    os.kill(os.getpid(), 9)


@jobs.task(queue="other")
def routed():
    return "other"


@jobs.task(ignore_result=True)
def no_result():
    return "ignored"


@jobs.task
def types_roundtrip(value):
    return value


@jobs.task
def now():
    return dt.datetime.now(dt.UTC)


def create_app(config: dict | None = None) -> Flask:
    """Build the test app; config from ``JOBS_*`` environment variables, then ``config``."""
    app = app_from_env(__name__, config)
    jobs.init_app(app)
    return app


# -- tasks for the API tests (test_task, test_calling, test_result, test_progress, ...) ----------


@jobs.task
def record(value, key="records"):
    """Append ``value`` to the Redis list ``key``: the test reads what ran, and in which order."""
    effects().rpush(key, json.dumps(value))
    return value


@jobs.task
def wait_gate(gate, timeout=10.0):
    """Block until the test pushes to the Redis list ``gate`` (or ``timeout``); returns it."""
    item = effects().blpop([gate], timeout=timeout)
    return item[1].decode() if item else None


@jobs.task(bind=True)
def request_info(self, *args, **kwargs):
    """Everything a bound task can read from its request."""
    r = self.request
    return {"id": r.id, "task": r.task, "args": list(r.args), "kwargs": dict(r.kwargs),
            "retries": r.retries, "hostname": r.hostname, "delivery_attempt": r.delivery_attempt,
            "attempt": r.attempt, "headers": r.headers, "called_directly": r.called_directly,
            "is_eager": r.is_eager, "name": self.name}


#: The request fields a worker sets (``request_fields`` returns them).
REQUEST_FIELDS = ("id", "task", "args", "kwargs", "retries", "hostname", "delivery_attempt",
                  "attempt", "eta", "headers", "group", "parent_id", "root_id", "owner",
                  "time_limit", "soft_time_limit", "link", "link_error", "ignore_result",
                  "called_directly", "is_eager", "expires", "delivery_info")


@jobs.task(bind=True)
def request_fields(self):
    """Every request field, and the names set on the request itself; then scribbles on the
    headers (which must not leak into the next run's request)."""
    r = self.request
    fields = {name: getattr(r, name) for name in REQUEST_FIELDS}
    fields["headers"] = dict(r.headers)
    fields["own"] = sorted(vars(r))
    r.headers["scribbled"] = True
    return fields


@jobs.task(bind=True)
def state_then_gate(self, gate, state="PROGRESS", timeout=10.0):
    """Report ``state`` with a meta, then wait on ``gate`` so readers can see it."""
    if state == "PROGRESS":
        self.progress(3, 10, status="three of ten")
    else:
        self.update_state(state=state, meta={"phase": 1})
    item = effects().blpop([gate], timeout=timeout)
    return "released" if item else "timed out"


# -- tasks for the worker/reliability tests (test_time_limits, test_dead_letters, ...) -----------


@jobs.task(soft_time_limit=0.3)
def soft_limited_steps(seconds=10.0):
    """Sleeps in short steps (so a thread pool's asynchronous exception lands at once)."""
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "not interrupted"


@jobs.task(time_limit=0.3)
def hard_limited_stuck(seconds=30.0):
    """Ignores its time limit (SIGALRM blocked, as in a stuck C call): only a kill stops it."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGUSR1})
    time.sleep(seconds)
    return "finished"


if os.environ.get("JOBS_TEST_LATE_DEPLOY"):
    # Registered only on workers started with this variable: a task "deployed later", for the
    # dead-letter requeue test (an old worker dead-letters it, a new one runs it).
    @jobs.task(name="tests.late_deployed")
    def late_deployed(x):
        return x * 10


@jobs.task(bind=True, max_retries=3)
def retry_with_unencodable_args(self):
    """Asks to be retried with an argument the serializer cannot encode."""
    if self.request.retries == 0:
        raise self.retry(args=[object()], countdown=0)
    return "retried"


@jobs.task(bind=True, max_retries=3)
def retry_with_new_args(self, *args, **kwargs):
    """Retries once with no positional arguments and new keyword arguments."""
    if self.request.retries == 0:
        raise self.retry(args=[], kwargs={"second": True}, countdown=0)
    return {"args": list(args), "kwargs": kwargs}


@jobs.task(rate_limit="10/s")
def rate_limited(i):
    """Record when it started, on Redis's clock (ms), in the list ``rate:starts``."""
    r = effects()
    seconds, micros = r.time()
    r.rpush("rate:starts", seconds * 1000 + micros // 1000)
    return i


# Tasks that count how many of them run at once in this worker process (test_dead_letters).
_running = [0]


@jobs.task(bind=True)
def counted_gate(self, gate, timeout=10.0):
    """Counted as running while it reports PROGRESS and waits on the Redis list ``gate``."""
    _running[0] += 1
    try:
        self.progress(1, 2)
        return bool(effects().blpop([gate], timeout=timeout))
    finally:
        _running[0] -= 1


@jobs.task
def counted_record(key):
    """Append to the Redis list ``key`` how many counted tasks run in this process, itself
    included."""
    _running[0] += 1
    try:
        effects().rpush(key, _running[0])
    finally:
        _running[0] -= 1


# Canvas (Celery's canvas guide names them so: tests/test_canvas_celery.py runs its examples).


@jobs.task
def tsum(numbers):
    """The sum of a list (a chord's body in Celery's guide)."""
    return sum(numbers)


@jobs.task
def raising_task():
    """Fails with a ValueError (the chord error example of Celery's guide)."""
    raise ValueError("something something")


@jobs.task
def log_error(request, exc, traceback):
    """A Celery-style errback taking (request, exc, traceback): called in the worker, not
    sent. Records ``[task id, exception repr, has a traceback]`` in the list ``errors``."""
    effects().rpush("errors", json.dumps([request.id, repr(exc), "Error" in str(traceback)]))


@jobs.task
def log_error_id(task_id):
    """An errback taking one argument: sent as a task with the failed task's id."""
    effects().rpush("error-ids", task_id)


@jobs.task(bind=True)
def log_error_bound(self, task_id):
    """A bound errback: sent as a task with the failed task's id (as Celery does)."""
    effects().rpush("error-ids-bound", task_id)


@jobs.task(bind=True)
def replaced(self, how, n=3):
    """Replaces itself (``self.replace``): with a signature, a chain or a group."""
    if how == "sig":
        return self.replace(add.s(n, n))
    if how == "chain":
        return self.replace(add.s(n, 1) | mul.s(10))
    if how == "group":
        return self.replace(jobs_group(add.s(i, i) for i in range(n)))
    return n


def jobs_group(sigs):
    from flask_jobs import group

    return group(sigs)


@jobs.task(bind=True)
def chord_member_record(self, i, key="chord-runs"):
    """Records every run of itself (``[i, delivery attempt]``) and returns ``i``."""
    effects().rpush(key, json.dumps([i, self.request.delivery_attempt]))
    return i


@jobs.task(bind=True)
def body_record(self, values, key="body-runs"):
    """A chord body that records each run (with the list it got) and returns the sum."""
    effects().rpush(key, json.dumps(values))
    return sum(values)


@jobs.task(bind=True)
def gated_member(self, i, gate, key="member-runs", timeout=20.0):
    """Records ``[i, attempt]`` (every delivery counts) when it starts, waits for a token on
    the list ``gate``, and returns ``i``."""
    r = effects()
    r.rpush(key, json.dumps([i, self.request.attempt]))
    r.blpop([gate], timeout=timeout)
    return i


# -- tasks for the worker log tests (test_logs) ---------------------------------------------------

task_logger = get_task_logger(__name__)


@jobs.task(throws=(CustomError,))
def expected_failure():
    """Fails with an exception it lists in ``throws``: logged as expected, no traceback."""
    raise CustomError("expected")


@jobs.task
def logs_a_line(message):
    """Logs ``message`` with a task logger (its record carries this task's name and id)."""
    task_logger.warning(message)
    return message

"""Results: :class:`AsyncResult`, :class:`GroupResult` and :class:`EagerResult` (Celery's API)."""

from __future__ import annotations

import builtins
import datetime as dt
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis
from flask import current_app

from . import exceptions as _exc
from . import states
from .connection import text
from .exceptions import TaskRevokedError, TimeoutError
from .state import AppState, Registry

if TYPE_CHECKING:
    from flask import Flask

_FIELDS = ("state", "rtype", "result", "tb", "done", "upd", "name", "worker", "owner", "group",
           "reason", "att", "dlv", "queue", "st")
_dynamic_exceptions: dict[tuple[str, str], type[Exception]] = {}
_READY_BYTES = frozenset(s.encode() for s in states.READY_STATES)


def rebuild_exception(info: dict[str, Any] | None) -> BaseException:
    """Turn a stored failure description back into an exception, never importing anything.

    Builtins and flask-jobs' own exceptions come back as themselves; so does a class whose
    module the reading process has already imported. Anything else becomes a stand-in subclass
    of :class:`Exception` with the same name and module, so ``except`` by name and ``str()``
    still work, and no stored text can make this process import or run code.
    """
    if not isinstance(info, dict):
        return Exception(str(info))
    name = str(info.get("exc_type") or "Exception")
    module = str(info.get("exc_module") or "builtins")
    message = str(info.get("exc_message", ""))
    cls: Any = None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module == _exc.__name__:
        cls = getattr(_exc, name, None)
    elif module in sys.modules:  # already imported by this process: no code runs here
        cls = getattr(sys.modules[module], name, None)
    if name == "DeadLetteredError" and cls is None:
        cls = _exc.DeadLetteredError
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:  # a constructor with other arguments: fall back to a stand-in
            pass
    key = (module, name)
    if key not in _dynamic_exceptions:
        _dynamic_exceptions[key] = type(name, (Exception,), {"__module__": module})
    return _dynamic_exceptions[key](message)


class Record:
    """One read of a task record (see :mod:`flask_jobs.keys`)."""

    __slots__ = _FIELDS
    state: bytes | None
    rtype: bytes | None
    result: bytes | None
    tb: bytes | None
    done: bytes | None
    upd: bytes | None
    name: bytes | None
    worker: bytes | None
    owner: bytes | None
    group: bytes | None
    reason: bytes | None
    att: bytes | None
    dlv: bytes | None
    queue: bytes | None
    st: bytes | None

    def __init__(self, values: Sequence[Any]) -> None:
        """:param values: the record's fields in the order of ``_FIELDS`` (an ``HMGET``)."""
        for field, value in zip(_FIELDS, values, strict=True):
            object.__setattr__(self, field, value)

    @property
    def exists(self) -> bool:
        """Whether the record was there."""
        return self.state is not None

    @property
    def state_name(self) -> str:
        """The state as text; PENDING for an unknown id (as Celery reports it)."""
        return self.state.decode() if self.state else states.PENDING


class _Waiter(threading.local):
    """A per-thread pub/sub connection reused by every ``get()`` in that thread."""

    pubsub: Any = None


class AsyncResult:
    """The result of a task that was sent: its state, its value, and ways to wait for it.

    :param id: the task id.
    :param jobs: the :class:`~flask_jobs.Jobs` it belongs to.
    :param app: the Flask app to use (default: the current or only app).
    """

    #: Per app state (weakly: the connection goes with the app), a per-thread pub/sub.
    _waiters: weakref.WeakKeyDictionary[AppState, _Waiter] = weakref.WeakKeyDictionary()

    def __init__(self, id: str, jobs: Registry | None = None, app: Flask | None = None,
                 task_name: str | None = None,
                 parent: AsyncResult | GroupResult | None = None) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError(f"A task id must be a non-empty string, not {id!r}")
        self.id = id
        self.jobs = jobs
        self._app = app
        self._task_name = task_name
        self._cache: Record | None = None
        #: The previous result in a chain, if any.
        self.parent = parent

    # -- plumbing ----------------------------------------------------------------------------

    def _jobs_state(self) -> AppState:
        if self.jobs is None:
            state: AppState = current_app.extensions["jobs"]
            return state
        return self.jobs.state(self._app)

    def _record(self) -> Record:
        if self._cache is not None:
            return self._cache
        st = self._jobs_state()
        record = Record(st.client.hmget(st.keys.task(self.id), _FIELDS))
        if record.state is not None and record.state in _READY_BYTES:
            self._cache = record  # final states never change
        return record

    def _decode(self, record: Record) -> Any:
        state = record.state_name
        if state == states.PENDING and record.result is None:
            return None
        if state == states.STARTED and record.result is None:
            # Celery's info for STARTED: who runs it (so ``info.get(...)`` works in views)
            return {"hostname": record.worker.decode() if record.worker else None}
        if state == states.REVOKED and record.result is None:
            reason = record.reason.decode() if record.reason else "revoked"
            return TaskRevokedError(reason)
        if record.result is None:
            return None
        st = self._jobs_state()
        value = st.codecs.loads_result(record.result, (record.rtype or b"json").decode())
        if state in states.EXCEPTION_STATES:
            return rebuild_exception(value)
        return value

    # -- Celery's API ------------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        """The task id (Celery's alias of :attr:`id`)."""
        return self.id

    @property
    def state(self) -> str:
        """The task's state: PENDING, STARTED, PROGRESS (or a custom one), RETRY, SUCCESS,
        FAILURE or REVOKED. An unknown id reads as PENDING, as in Celery (see :meth:`exists`)."""
        return self._record().state_name

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception for failures, or the meta of a custom state."""
        return self._decode(self._record())

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failure, as text."""
        tb = self._record().tb
        return tb.decode() if tb else None

    @property
    def date_done(self) -> dt.datetime | None:
        """When the task reached its final state (UTC)."""
        done = self._record().done
        return dt.datetime.fromtimestamp(int(done) / 1000, dt.UTC) if done else None

    @property
    def name(self) -> str | None:
        """The task's name."""
        rec = self._record()
        return rec.name.decode() if rec.name else self._task_name

    @property
    def worker(self) -> str | None:
        """The worker that ran (or runs) the task."""
        w = self._record().worker
        return w.decode() if w else None

    @property
    def owner(self) -> str | None:
        """The ``owner`` given to ``apply_async``, if any."""
        o = self._record().owner
        return o.decode() if o else None

    def exists(self) -> bool:
        """Whether this id is known: queued, running, or finished and not yet expired."""
        return self._record().exists

    def ready(self) -> bool:
        """Whether the task reached a final state (SUCCESS, FAILURE or REVOKED)."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """Whether the task succeeded."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """Whether the task failed."""
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5,
            **_ignored: Any) -> Any:
        """Wait for the task to finish and return its value.

        Waits on Redis pub/sub, not by polling: it wakes when the worker writes the result.

        :param timeout: seconds to wait at most; None waits for ever.
        :param propagate: re-raise the task's exception (with its type and message).
        :param interval: accepted for Celery compatibility; not used for polling.
        :raises TimeoutError: the task did not finish in time.
        :raises TaskRevokedError: the task was revoked (when ``propagate``).
        """
        record = self._wait(timeout)
        value = self._decode(record)
        if propagate and record.state_name in (states.FAILURE, states.REVOKED):
            raise value
        return value

    wait = get

    def _wait(self, timeout: float | None) -> Record:
        if self._cache is not None:
            return self._cache
        # No read before subscribing: the read after the confirmed subscribe is enough, and
        # skipping this one saves a round trip when the task is still running.
        st = self._jobs_state()
        waiter = self._waiters.setdefault(st, _Waiter())
        if waiter.pubsub is None:
            waiter.pubsub = st.make_client(blocking=True).pubsub()
        pubsub = waiter.pubsub
        channel = st.keys.events(self.id).encode()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for fresh in (False, True):
                if fresh:
                    # The cached connection broke since the last wait (Redis restarted): once
                    # more on a new one, so a get() after a Redis restart does not fail.
                    pubsub.close()
                    waiter.pubsub = pubsub = st.make_client(blocking=True).pubsub()
                try:
                    pubsub.subscribe(channel)
                    # Wait for Redis to confirm the subscription before reading the record: the
                    # read goes over another connection, and without this a change published
                    # between the two could be missed.
                    confirm_by = time.monotonic() + 5.0
                    while True:
                        message = pubsub.get_message(
                            timeout=max(0.0, confirm_by - time.monotonic()))
                        if message is None:
                            if time.monotonic() >= confirm_by:
                                break  # the slices below re-read the record anyway
                            continue
                        if message["type"] == "subscribe" and message["channel"] == channel:
                            break
                    break
                except (redis.ConnectionError, redis.TimeoutError):
                    if fresh:
                        raise
            while True:
                record = self._record()
                if record.state is not None and record.state in _READY_BYTES:
                    return record
                # Each slice ends with a re-read: a safety net if a message was lost to a
                # reconnect, not a polling loop (slices are seconds long).
                slice_end = time.monotonic() + 2.0
                if deadline is not None:
                    slice_end = min(slice_end, deadline)
                while True:
                    left = slice_end - time.monotonic()
                    if left <= 0:
                        break
                    message = pubsub.get_message(timeout=left)
                    if message is not None and message["type"] == "message" and (
                            message["channel"] == channel and message["data"] in _READY_BYTES):
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    record = self._record()
                    if record.state is not None and record.state in _READY_BYTES:
                        return record
                    raise TimeoutError(f"Task {self.id} did not finish within {timeout}s")
        except BaseException:
            # A broken or interrupted wait leaves the connection in an unknown state.
            pubsub.close()
            waiter.pubsub = None
            raise
        finally:
            if waiter.pubsub is not None:
                pubsub.unsubscribe(channel)

    def forget(self) -> None:
        """Delete the stored state and result."""
        st = self._jobs_state()
        st.client.delete(st.keys.task(self.id))
        self._cache = None

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM", **_ignored: Any) -> None:
        """Cancel the task.

        A queued or delayed task becomes REVOKED at once and never runs. A running task is
        stopped only with ``terminate=True`` (prefork, solo and threads pools), and then
        becomes REVOKED.

        :param terminate: also stop it if it is running.
        :param signal: ``SIGTERM`` (raise inside the task, then kill after a grace period) or
            ``SIGKILL`` (kill the process running it at once, prefork).
        """
        st = self._jobs_state()
        st.broker.revoke(self.id, terminate=terminate, signal=signal)
        self._cache = None

    def _store_state(self, state: str, meta: Any) -> None:
        """Write a state without fencing (``update_state`` with another task's id)."""
        st = self._jobs_state()
        st.broker.store_state(self.id, state, meta)
        self._cache = None

    def as_tuple(self) -> tuple[str, None]:
        """A serialisable reference to this result."""
        return (self.id, None)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"


class EagerResult(AsyncResult):
    """The result of a task run in this process by :meth:`Task.apply` or eager mode."""

    def __init__(self, id: str, state: str, value: Any, traceback: str = "",
                 jobs: Registry | None = None, propagate: bool = True, last_meta: Any = None,
                 task_name: str | None = None) -> None:
        super().__init__(id, jobs=jobs, task_name=task_name)
        self._state_name = state
        self._value = value
        self._traceback = traceback or None
        self._propagate = propagate
        #: The last meta reported with ``update_state``/``progress`` during the run.
        self.last_meta = last_meta

    @property
    def state(self) -> str:
        """The final state of the run."""
        return self._state_name

    status = state

    @property
    def result(self) -> Any:
        """The return value or the exception."""
        return self._value

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failure."""
        return self._traceback

    def exists(self) -> bool:
        """Always True: the run happened here."""
        return True

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5,
            **_ignored: Any) -> Any:
        """Return the value, or raise the exception (when ``propagate``)."""
        if propagate and self._propagate and self._state_name in (states.FAILURE,
                                                                   states.REVOKED):
            raise self._value
        return self._value

    wait = get

    def forget(self) -> None:
        """Nothing is stored for eager runs."""

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        """An eager run is over by the time it returns; nothing to cancel."""


class GroupResult:
    """The results of a :func:`~flask_jobs.group` of tasks.

    :param id: the group id.
    :param results: the member results, in order.
    """

    def __init__(self, id: str, results: Iterable[AsyncResult], jobs: Registry | None = None,
                 app: Flask | None = None) -> None:
        self.id = id
        self.results = list(results)
        #: The result before this group in a chain, if any.
        self.parent: AsyncResult | GroupResult | None = None
        self.jobs = jobs
        self._app = app

    @classmethod
    def restore(cls, group_id: str, jobs: Registry) -> GroupResult:
        """Rebuild a group's result from its id (the member list kept in Redis)."""
        st = jobs.state()
        ids = st.client.lrange(st.keys.group(group_id), 0, -1)
        return cls(group_id, [AsyncResult(text(i), jobs=jobs) for i in ids], jobs=jobs)

    @property
    def children(self) -> list[AsyncResult]:
        """The member results (Celery's name)."""
        return self.results

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def _states(self) -> list[str]:
        if not self.results:
            return []
        first = self.results[0]
        if isinstance(first, EagerResult) or self.jobs is None:
            return [r.state for r in self.results]
        found = first._jobs_state().broker.task_states([r.id for r in self.results])
        return [s or states.PENDING for s in found]

    def ready(self) -> bool:
        """Whether every member finished."""
        return all(s in states.READY_STATES for s in self._states())

    def successful(self) -> bool:
        """Whether every member succeeded."""
        return all(s == states.SUCCESS for s in self._states())

    def failed(self) -> bool:
        """Whether any member failed."""
        return any(s == states.FAILURE for s in self._states())

    def waiting(self) -> bool:
        """Whether any member is not finished."""
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(s == states.SUCCESS for s in self._states())

    def get(self, timeout: float | None = None, propagate: bool = True,
            **_ignored: Any) -> list[Any]:
        """Wait for every member and return their values in order.

        :raises TimeoutError: not all finished within ``timeout`` seconds in total.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(r.get(timeout=left, propagate=propagate))
        return values

    join = get

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke every member."""
        for r in self.results:
            r.revoke(terminate=terminate, signal=signal)

    def forget(self) -> None:
        """Forget every member."""
        for r in self.results:
            r.forget()

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"


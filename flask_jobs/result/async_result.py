"""Results of Celery's API: :class:`AsyncResult` (a task sent) and :class:`EagerResult` (a
task run in this process)."""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import current_app

from .. import states
from ..exceptions import IncompleteStream, TaskRevokedError
from ..state import AppState, Registry
from .records import FIELDS, READY_BYTES, Record, rebuild_exception
from .waiting import wait_on

if TYPE_CHECKING:
    from flask import Flask


class AsyncResult:
    """The result of a task that was sent: its state, its value, and ways to wait for it.

    :param id: the task id.
    :param jobs: the :class:`~flask_jobs.Jobs` it belongs to.
    :param app: the Flask app to use (default: the current or only app).
    """

    def __init__(self, id: str, jobs: Registry | None = None, app: Flask | None = None,
                 task_name: str | None = None,
                 parent: Any = None) -> None:  # (an AsyncResult or a GroupResult)
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
        record = Record(st.client.hmget(st.keys.task(self.id), FIELDS))
        if record.state is not None and record.state in READY_BYTES:
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

    def known_state(self) -> str | None:
        """The state if it is known without asking Redis (a final state read before: it
        never changes), else None."""
        return self._cache.state_name if self._cache is not None else None

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
        # skipping it saves a round trip when the task is still running.
        st = self._jobs_state()
        return wait_on(st, st.keys.events(self.id), self._final_record,
                       READY_BYTES.__contains__, timeout, f"Task {self.id}")

    def _final_record(self) -> Record | None:
        record = self._record()
        return record if record.state is not None and record.state in READY_BYTES else None

    @property
    def children(self) -> list[AsyncResult]:
        """The results of the callbacks (``link``) this task sent when it succeeded (empty
        until then). A chain's next step is not among them: it has this result as
        ``parent``."""
        st = self._jobs_state()
        raw = st.client.hget(st.keys.task(self.id), "children")
        ids = json.loads(raw) if raw else []
        return [AsyncResult(i, jobs=self.jobs, app=self._app) for i in ids]

    def iterdeps(self, intermediate: bool = False
                 ) -> Iterator[tuple[AsyncResult | None, AsyncResult]]:
        """``(parent, result)`` for this result and every callback below it, breadth first.

        :raises IncompleteStream: a result is not ready (unless ``intermediate``).
        """
        todo: deque[tuple[AsyncResult | None, AsyncResult]] = deque([(None, self)])
        while todo:
            parent, node = todo.popleft()
            yield parent, node
            if node.ready():
                todo.extend((node, child) for child in node.children)
            elif not intermediate:
                raise IncompleteStream(f"Task {node.id} is not ready yet")

    def collect(self, intermediate: bool = False, **get_options: Any
                ) -> Iterator[tuple[AsyncResult, Any]]:
        """``(result, value)`` for this result and the callbacks it sent, and theirs (as
        Celery's ``collect``).

        :param intermediate: also yield results not ready yet, instead of raising
            :class:`~flask_jobs.exceptions.IncompleteStream`.
        :param get_options: for each ``get()``.
        """
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**get_options)

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

""":class:`GroupResult`: the results of a group (or of a chord's header) as one."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import current_app

from .. import states
from ..connection import text
from ..state import AppState, Registry
from .async_result import AsyncResult, EagerResult
from .records import FIELDS, READY_BYTES, Record
from .waiting import wait_on

if TYPE_CHECKING:
    from flask import Flask

#: What the group's channel carries when its last member finishes (see ``settle`` in lib.lua).
_GROUP_DONE = frozenset((states.SUCCESS.encode(), states.FAILURE.encode()))


class GroupResult:
    """The results of a :func:`~flask_jobs.group` of tasks, as Celery's.

    :param id: the group id.
    :param results: the member results, in order.
    :param jobs: the :class:`~flask_jobs.Jobs` it belongs to (default: the current app's).
    :param app: the Flask app to use (default: the current one).

    A group sent by flask-jobs keeps counters in Redis (how many members finished, how many
    failed), updated by the script that writes each member's final state: :meth:`get` waits
    on them (one wake-up when the last member finishes) and then reads every result in one
    round trip, however many members there are.
    """

    def __init__(self, id: str, results: Iterable[AsyncResult | GroupResult],
                 jobs: Registry | None = None, app: Flask | None = None,
                 parent: AsyncResult | GroupResult | None = None) -> None:
        self.id = id
        self.results: list[Any] = list(results)
        #: The result before this group in a chain, if any.
        self.parent = parent
        self.jobs = jobs
        self._app = app

    def _jobs_state(self) -> AppState:
        if self.jobs is None:
            state: AppState = current_app.extensions["jobs"]
            return state
        return self.jobs.state(self._app)

    # -- saving ------------------------------------------------------------------------------

    @classmethod
    def restore(cls, group_id: str, jobs: Registry | None = None, app: Flask | None = None,
                **_ignored: Any) -> GroupResult | None:
        """The result of the group ``group_id`` (its member list is kept in Redis for as long
        as results are); None if it is not known. Without ``jobs``, the current app's."""
        st: AppState = jobs.state(app) if jobs is not None else \
            current_app.extensions["jobs"]
        ids = st.client.lrange(st.keys.group(group_id), 0, -1)
        if not ids:
            return None
        return cls(group_id, [AsyncResult(text(i), jobs=jobs, app=app) for i in ids],
                   jobs=jobs, app=app)

    def save(self) -> GroupResult:
        """Keep the member list under the group id (for :meth:`restore`), for as long as
        results are kept. A group sent by flask-jobs is saved already; this is for a
        GroupResult built by hand."""
        st = self._jobs_state()
        key = st.keys.group(self.id)
        pipe = st.client.pipeline()
        pipe.delete(key)
        if self.results:
            pipe.rpush(key, *[r.id for r in self.results])
            pipe.pexpire(key, st.settings.result_ttl_ms)
        pipe.execute()
        return self

    def delete(self) -> None:
        """Forget the saved member list (the members' results stay)."""
        st = self._jobs_state()
        st.client.delete(st.keys.group(self.id))

    # -- members -----------------------------------------------------------------------------

    @property
    def children(self) -> list[Any]:
        """The member results (Celery's name)."""
        return self.results

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def _simple(self) -> bool:
        """Whether every member is a task result read from Redis (not eager, not a group)."""
        return bool(self.results) and all(
            isinstance(r, AsyncResult) and not isinstance(r, EagerResult) for r in self.results)

    def _states(self) -> list[str]:
        if not self._simple():
            return [r.state if isinstance(r, AsyncResult) else _group_state(r)
                    for r in self.results]
        found = self._jobs_state().broker.task_states([r.id for r in self.results])
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

    # -- waiting -----------------------------------------------------------------------------

    def get(self, timeout: float | None = None, propagate: bool = True,
            **_ignored: Any) -> list[Any]:
        """Wait for every member and return their values in order.

        :param propagate: raise the error of the first member (in order) that failed.
        :raises TimeoutError: not all finished within ``timeout`` seconds in total.
        """
        if self._simple() and self._counted():
            return self._get_counted(timeout, propagate)
        return self._get_each(timeout, propagate)

    join = join_native = get

    def _counted(self) -> bool:
        """Whether the group has counters for exactly these members."""
        st = self._jobs_state()
        total = st.client.hget(st.keys.counters(self.id), "total")
        return total is not None and int(total) == len(self.results)

    def _get_counted(self, timeout: float | None, propagate: bool) -> list[Any]:
        st = self._jobs_state()
        key = st.keys.counters(self.id)

        def finished() -> bool | None:
            done, total = st.client.hmget(key, "done", "total")
            if total is None:  # expired (or deleted) meanwhile: the members still answer
                return True
            return True if int(done or 0) >= int(total) else None

        wait_on(st, st.keys.events(self.id), finished, _GROUP_DONE.__contains__, timeout,
                f"Group {self.id}")
        pipe = st.client.pipeline(transaction=False)
        for r in self.results:
            pipe.hmget(st.keys.task(r.id), FIELDS)
        for r, values in zip(self.results, pipe.execute(), strict=True):
            record = Record(values)
            if record.state is not None and record.state in READY_BYTES:
                r._cache = record
        if any(r._cache is None for r in self.results):  # (expired meanwhile)
            return self._get_each(timeout, propagate)
        return self._get_each(0, propagate)

    def _get_each(self, timeout: float | None, propagate: bool) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(r.get(timeout=left, propagate=propagate))
        return values

    def iterate(self, timeout: float | None = None, propagate: bool = True
                ) -> Iterator[Any]:
        """Each member's value, in order, as it becomes available."""
        for r in self.results:
            yield r.get(timeout=timeout, propagate=propagate)

    # -- acting on members -------------------------------------------------------------------

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM",
               **_ignored: Any) -> None:
        """Revoke every member."""
        for r in self.results:
            r.revoke(terminate=terminate, signal=signal)

    def forget(self) -> None:
        """Forget every member's result."""
        for r in self.results:
            r.forget()

    def as_tuple(self) -> tuple[str, list[Any]]:
        """A serialisable reference to this result."""
        return (self.id, [r.as_tuple() for r in self.results])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"


def _group_state(result: GroupResult) -> str:
    """A nested group's state, as one member's: SUCCESS when all succeeded, FAILURE when one
    failed, else PENDING."""
    found = result._states()
    if any(s == states.FAILURE for s in found):
        return states.FAILURE
    return states.SUCCESS if all(s == states.SUCCESS for s in found) else states.PENDING


class BoundGroupResult:
    """Celery's ``app.GroupResult``: :class:`GroupResult` for one :class:`~flask_jobs.Jobs`
    (``jobs.GroupResult.restore(id)``, ``jobs.GroupResult(id, results)``)."""

    def __init__(self, jobs: Registry) -> None:
        self.jobs = jobs

    def __call__(self, id: str, results: Iterable[Any] | None = None,
                 **kwargs: Any) -> GroupResult | None:
        """A GroupResult of these results; with an id alone, the saved group of that id
        (None if unknown), as :meth:`restore`."""
        if results is None:
            return GroupResult.restore(id, jobs=self.jobs)
        return GroupResult(id, results, jobs=self.jobs, **kwargs)

    def restore(self, group_id: str, **_ignored: Any) -> GroupResult | None:
        """The saved group ``group_id`` (None if unknown): :meth:`GroupResult.restore`."""
        return GroupResult.restore(group_id, jobs=self.jobs)

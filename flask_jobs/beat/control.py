"""``jobs.schedule``: the periodic tasks at run time, for every beat at once.

Celery's beat reads its schedule once, from the configuration (django-celery-beat and RedBeat
exist to change it while it runs). Here the schedule lives in Redis, so adding, removing,
pausing, resuming or running an entry now is one call from any process (a Flask view, a
shell, ``flask jobs schedule``), and the leading beat sees it at its next look (within
:data:`JOBS_BEAT_MAX_LOOP_INTERVAL`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..config import check_timezone
from ..message import build_message
from ..result import AsyncResult
from ..schedules import BaseSchedule
from ..state import AppState, Registry
from .entries import Entry, entry_from_spec
from .service import first_after, from_ms, next_after
from .store import FireResult, ScheduleStore


@dataclass(frozen=True)
class ScheduleEntry:
    """A periodic task and its run state, as Celery's ``ScheduleEntry`` (same attribute names
    where Celery has one); times are aware datetimes in :data:`JOBS_TIMEZONE`."""

    name: str
    #: The task's name.
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    #: ``once``, ``skip``, ``all``, or None (:data:`JOBS_BEAT_MISSED`).
    missed: str | None
    #: ``config`` (``JOBS_BEAT_SCHEDULE`` or ``add_periodic_task``) or ``api``
    #: (``jobs.schedule.add``).
    source: str
    paused: bool
    #: When the next run is due (None while paused).
    next_run_at: dt.datetime | None
    #: When the last run was sent.
    last_run_at: dt.datetime | None
    #: The due time the last run was sent for.
    last_due_at: dt.datetime | None
    total_run_count: int
    #: The id of the last run's task (its :class:`~flask_jobs.AsyncResult`).
    last_task_id: str | None


class ScheduleControl:
    """The periodic tasks of the current app (``jobs.schedule``).

    :param jobs: the :class:`~flask_jobs.Jobs` extension.
    """

    def __init__(self, jobs: Registry) -> None:
        self.jobs = jobs

    def _parts(self) -> tuple[AppState, ScheduleStore, dt.tzinfo]:
        state = self.jobs.state()
        return state, ScheduleStore(state.client, state.keys), check_timezone(
            state.settings.timezone)

    def add(self, name: str, task: Any, schedule: Any, args: Any = (),
            kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
            relative: bool = False, missed: str | None = None) -> ScheduleEntry:
        """Add (or replace) a periodic task; every beat sees it at once, and it stays until
        :meth:`remove` (a beat's restart does not drop it).

        :param task: a task name or a :class:`~flask_jobs.Task`.
        :param schedule: seconds, a timedelta, :class:`~flask_jobs.schedules.crontab` or
            :class:`~flask_jobs.solar_schedule.solar`.
        :param missed: ``once``, ``skip`` or ``all`` (default :data:`JOBS_BEAT_MISSED`).
        :raises ~flask_jobs.exceptions.ImproperlyConfigured: a bad entry (named), as at start.

        The other methods raise :class:`KeyError` for a name that is not a periodic task.
        """
        state, store, tz = self._parts()
        task_name = task if isinstance(task, str) else getattr(task, "name", task)
        spec = {"task": task_name, "schedule": schedule, "args": args, "kwargs": kwargs or {},
                "options": options or {}, "relative": relative, "missed": missed}
        entry = entry_from_spec(name, spec, state, f"jobs.schedule.add({name!r})")
        store.sync("api", [(entry.name, entry.definition(state),
                            next_after(entry.schedule, store.now_ms(), tz))])
        found = self.get(name)
        assert found is not None
        return found

    def remove(self, name: str) -> bool:
        """Delete a periodic task; returns whether there was one. An entry of the
        configuration comes back when a beat starts again; remove it there too."""
        return self._parts()[1].remove(name)

    def pause(self, name: str) -> ScheduleEntry:
        """Stop sending a periodic task's runs until :meth:`resume` (kept across restarts)."""
        self._parts()[1].pause(self._known(name))
        return self._get(name)

    def resume(self, name: str) -> ScheduleEntry:
        """Send a paused periodic task's runs again, from its next due time after now (the
        runs due while paused are not sent)."""
        state, store, tz = self._parts()
        stored = store.get(self._known(name))
        assert stored is not None
        entry = Entry.from_definition(name, stored.definition, state)
        now = store.now_ms()
        start = stored.next_ms if stored.next_ms is not None else now
        store.resume(name, first_after(entry.schedule, start, now, tz) if start <= now
                     else start)
        return self._get(name)

    def run_now(self, name: str) -> AsyncResult:
        """Send one run of a periodic task now, as the beat would (its next run is not moved);
        returns its result."""
        state, store, tz = self._parts()
        stored = store.get(self._known(name))
        assert stored is not None
        entry = Entry.from_definition(name, stored.definition, state)
        options = entry.message_options()
        options["headers"]["periodic_task_due"] = dt.datetime.now(tz).isoformat()
        message = build_message(state.settings, state.codecs, state.jobs.tasks.get(entry.task),
                                entry.task, entry.args, entry.kwargs, **options)
        code, _ = store.fire("run", "", name, None, None, None, message)
        if code != FireResult.SENT:
            raise KeyError(f"No periodic task named {name!r} (removed meanwhile)")
        return AsyncResult(message.id, jobs=self.jobs, app=state.app, task_name=entry.task)

    def get(self, name: str) -> ScheduleEntry | None:
        """One periodic task, or None if there is none of that name."""
        state, store, tz = self._parts()
        stored = store.get(name)
        if stored is None:
            return None
        entry = Entry.from_definition(name, stored.definition, state)

        def when(ms: int | None) -> dt.datetime | None:
            return None if ms is None else from_ms(ms, tz)

        return ScheduleEntry(name, entry.task, entry.schedule, entry.args, entry.kwargs,
                             entry.options, entry.missed, stored.source, stored.paused,
                             None if stored.paused else when(stored.next_ms),
                             when(stored.last_ms), when(stored.due_ms), stored.total,
                             stored.last_id)

    def list(self) -> list[ScheduleEntry]:
        """Every periodic task, by name."""
        found = (self.get(name) for name in self._parts()[1].names())
        return [e for e in found if e is not None]

    def leader(self) -> str | None:
        """The id of the beat sending the periodic tasks now (None: no beat runs)."""
        return self._parts()[1].leader()

    def _known(self, name: str) -> str:
        if self._parts()[1].get(name) is None:
            raise KeyError(f"No periodic task named {name!r}; `flask jobs schedule list` "
                           "shows them")
        return name

    def _get(self, name: str) -> ScheduleEntry:
        found = self.get(name)
        if found is None:
            raise KeyError(f"No periodic task named {name!r} (removed meanwhile)")
        return found

"""Periodic task entries: what ``JOBS_BEAT_SCHEDULE``, ``jobs.add_periodic_task`` and
``jobs.schedule.add`` describe, checked, and stored as one canonical JSON definition.

An entry is Celery's: ``{"task": name, "schedule": seconds | timedelta | crontab | solar,
"args": [...], "kwargs": {...}, "options": {apply_async options}, "relative": bool}``, plus
our ``"missed"``: what to do about runs missed while no beat ran (``JOBS_BEAT_MISSED``).
Everything that can be wrong with one is found when the beat starts (or when it is added), with
the entry's name in the message: a later run cannot fail for a reason known at start.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import MISSED_POLICIES
from ..exceptions import ImproperlyConfigured
from ..message import build_message
from ..schedules import BaseSchedule, maybe_schedule, schedule, schedule_from_dict
from ..state import AppState

#: The keys an entry may have: Celery's, and ``missed``.
ENTRY_KEYS = ("task", "schedule", "args", "kwargs", "options", "relative", "missed")
#: ``apply_async`` options a periodic task cannot take, and why.
REFUSED_OPTIONS = {
    "task_id": "every run needs an id of its own",
    "dedup_key": "each due run is sent once already; a dedup key would not be applied",
    "dedup_ttl": "each due run is sent once already; a dedup key would not be applied",
    "group_id": "a periodic task is not a member of a group",
    "chain": "schedule a task that starts the chain",
    "chord": "schedule a task that starts the chord",
}


@dataclass(frozen=True)
class Entry:
    """One periodic task, as configured.

    :param name: the entry's name (the key of ``JOBS_BEAT_SCHEDULE``).
    :param task: the name of the task it sends.
    :param schedule: when it is due.
    :param missed: ``once``, ``skip`` or ``all`` (None: :data:`JOBS_BEAT_MISSED`).
    """

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    missed: str | None = None

    def definition(self, state: AppState) -> str:
        """The entry as canonical JSON (Redis keeps it; equal entries give equal text, so a
        beat that starts can tell an unchanged entry from a changed one). The time zone is in
        it: a new :data:`JOBS_TIMEZONE` recomputes every next run."""
        codecs = state.codecs
        when = self.schedule.to_dict()
        cls = type(self.schedule)
        if BaseSchedule._types.get(when.get("type", "")) is not cls:
            # a subclass of the user's (Celery's "custom class, inheriting schedule"): rebuilt
            # by importing it, with the data of the class it extends
            when["class"] = f"{cls.__module__}:{cls.__qualname__}"
        data = {"task": self.task, "schedule": when, "tz": state.settings.timezone,
                "args": json.loads(codecs.dumps(list(self.args), "json")),
                "kwargs": json.loads(codecs.dumps(self.kwargs, "json")),
                "options": json.loads(codecs.dumps(self.options, "json")),
                "missed": self.missed}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_definition(cls, name: str, text: str | bytes, state: AppState) -> Entry:
        """The entry a stored definition describes (see :meth:`definition`)."""
        data = json.loads(text)
        loads = state.codecs.loads

        def decoded(value: Any) -> Any:  # (the tagged types: datetimes, bytes...)
            return loads(json.dumps(value).encode(), "json")

        return cls(name, data["task"], _schedule(data["schedule"]),
                   tuple(decoded(data.get("args") or [])), decoded(data.get("kwargs") or {}),
                   decoded(data.get("options") or {}), data.get("missed"))

    def message_options(self) -> dict[str, Any]:
        """The ``apply_async`` options of a run: the entry's, and Celery's
        ``periodic_task_name`` header."""
        options = dict(self.options)
        headers = dict(options.pop("headers", None) or {})
        headers["periodic_task_name"] = self.name
        options["headers"] = headers
        return options


def _schedule(data: dict[str, Any]) -> BaseSchedule:
    path = data.pop("class", None)
    if not path:
        return schedule_from_dict(data)
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    data.pop("type", None)
    return found(**data)  # type: ignore[no-any-return]


def entry_from_spec(name: Any, spec: Any, state: AppState, where: str) -> Entry:
    """Check one entry given as Celery's dict and return it.

    :param where: how the caller names the entry in errors, e.g. ``JOBS_BEAT_SCHEDULE['x']``.
    :raises ImproperlyConfigured: naming the entry, what is wrong and the fix.
    """
    def fail(problem: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{where}: {problem}")

    if not isinstance(name, str) or not name:
        raise fail("an entry name must be a non-empty string")
    if not isinstance(spec, Mapping):
        raise fail(f"must be a dict with 'task' and 'schedule', not {spec!r}")
    unknown = sorted(set(spec) - set(ENTRY_KEYS))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(map(repr, unknown))}; an entry takes "
                   f"{', '.join(ENTRY_KEYS)}")
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise fail(f"'task' must be a task name such as 'tasks.add', not {task!r}")
    if task not in state.jobs.tasks:
        known = ", ".join(sorted(n for n in state.jobs.tasks if not n.startswith("flask_jobs.")))
        raise fail(f"unknown task {task!r}. Registered tasks: {known or '(none)'}. Check the "
                   "name, and that the module defining the task is imported by the app")
    if "schedule" not in spec:
        raise fail("'schedule' is missing: give seconds, a timedelta, crontab(...) or solar(...)")
    try:
        when = maybe_schedule(spec["schedule"], bool(spec.get("relative", False)))
    except (TypeError, ValueError) as exc:
        raise fail(f"bad 'schedule': {exc}") from None
    if isinstance(when, schedule) and when.run_every <= dt.timedelta(0):
        raise fail("an interval schedule must be above 0 seconds")
    args = spec.get("args") or ()
    if not isinstance(args, (list, tuple)):
        raise fail(f"'args' must be a list or tuple, not {args!r}")
    kwargs = spec.get("kwargs") or {}
    options = spec.get("options") or {}
    for key, value in (("kwargs", kwargs), ("options", options)):
        if not isinstance(value, Mapping):
            raise fail(f"{key!r} must be a dict, not {value!r}")
    refused = sorted(set(options) & set(REFUSED_OPTIONS))
    if refused:
        raise fail(f"option {refused[0]!r} cannot be used here: {REFUSED_OPTIONS[refused[0]]}")
    missed = spec.get("missed")
    if missed is not None and missed not in MISSED_POLICIES:
        raise fail(f"'missed' must be one of {', '.join(MISSED_POLICIES)} (or left out for "
                   f"JOBS_BEAT_MISSED), not {missed!r}")
    entry = Entry(name, task, when, tuple(args), dict(kwargs), dict(options), missed)
    try:  # everything a real send checks: options, arguments, encoding, size
        build_message(state.settings, state.codecs, state.jobs.tasks.get(task), task,
                      entry.args, entry.kwargs, **entry.message_options())
        entry.definition(state)
    except Exception as exc:  # noqa: BLE001 - reported with the entry's name
        raise fail(f"its task cannot be sent as configured: {exc}") from None
    return entry


def configured_entries(state: AppState, extra: Mapping[str, Mapping[str, Any]]) -> list[Entry]:
    """The entries of :data:`JOBS_BEAT_SCHEDULE` and of ``jobs.add_periodic_task`` (``extra``),
    checked; the configuration wins a name both use."""
    configured = state.settings.beat_schedule
    specs = {**extra, **configured}
    return [entry_from_spec(name, spec, state, f"JOBS_BEAT_SCHEDULE[{name!r}]"
                            if name in configured else f"add_periodic_task(name={name!r})")
            for name, spec in specs.items()]

"""Celery's periodic-task schedules: :class:`schedule` (an interval) and :class:`crontab`.

Each answers the beat's one question, :meth:`BaseSchedule.next_after`: the first due instant
strictly after a given one. Celery's ``is_due`` and ``remaining_estimate`` are built on it, so code
written against ``celery.schedules`` works. ``solar`` is in :mod:`flask_jobs.solar_schedule` (needs ephem).

A crontab names wall-clock times in the scheduler's time zone ``tz`` (a PEP 495 ``tzinfo`` such
as :class:`zoneinfo.ZoneInfo`). Around a daylight saving change it runs as cron users expect:

* A job whose hour field is every hour (``'*'``) runs at every matching minute of real time, as
  Vixie cron's wildcard jobs do: in the hour repeated on the fall-back day it runs in both
  occurrences (an hourly job runs 25 times that day); in the hour skipped on the spring-forward
  day it has no runs (23 times that day).
* Any other job is a fixed-time job and runs once for each wall-clock time it names. A time that
  does not exist that day (02:30 on spring forward in America/New_York or Europe/Berlin) runs
  once, at the instant ``fold=0`` gives it: just after the gap (03:30). A time that happens
  twice (01:30 on fall back in America/New_York) runs once, at its first occurrence.
* Instants are compared, never wall-clock times: ``next_after`` returns an instant strictly after
  ``after``, so a run is never repeated by the second occurrence of its wall-clock time. (Exact
  for offset changes of up to three hours: every DST rule in use.)
"""

from __future__ import annotations

import importlib
import json
import math
from abc import ABC, abstractmethod
from bisect import bisect_left
from calendar import monthrange
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar, NamedTuple

from .cron_fields import MONTHS, WEEKDAYS, ParseException, crontab_parser

__all__ = ["BaseSchedule", "ParseException", "crontab", "crontab_parser", "maybe_schedule",
           "schedstate", "schedule", "schedule_from_dict"]

#: Each crontab field: how many values, the first value, the names it takes, and a hint.
_FIELDS: dict[str, tuple[int, int, Mapping[str, int], str]] = {
    "minute": (60, 0, {}, ""), "hour": (24, 0, {}, ""),
    "day_of_week": (7, 0, WEEKDAYS, " (Sunday is 0, not 7), or names like 'mon-fri'"),
    "day_of_month": (31, 1, {}, ""), "month_of_year": (12, 1, MONTHS, ", or names like 'jan,jul'"),
}
_ZERO, _MINUTE = timedelta(0), timedelta(minutes=1)
_WINDOW = timedelta(hours=3)  # the largest UTC offset change that crontab handles exactly
Cronspec = int | str | Iterable[int]


class schedstate(NamedTuple):
    """Celery's answer to ``is_due``: run now or not, and seconds until the next check."""

    is_due: bool
    next: float


def _aware(dt: datetime | None, where: str = "") -> datetime:
    """``dt`` (now if ``None``); naive, it is UTC as in Celery, or a ValueError if ``where`` is named."""
    dt = datetime.now(UTC) if dt is None else dt
    if dt.tzinfo is None or dt.utcoffset() is None:
        if where:
            raise ValueError(f"{where}: {dt!r} is naive; pass an aware datetime, e.g. dt.replace(tzinfo=UTC)")
        dt = dt.replace(tzinfo=UTC)
    return dt


def _offset(tz: tzinfo, utc: datetime) -> timedelta:
    """The UTC offset of ``tz`` at the naive UTC time ``utc``."""
    return utc.replace(tzinfo=UTC).astimezone(tz).utcoffset() or _ZERO


def _next_in(values: list[int], least: int, most: int = 99) -> int | None:
    """The first of the sorted ``values`` from ``least`` to ``most``, if any."""
    i = bisect_left(values, least)
    return values[i] if i < len(values) and values[i] <= most else None


class BaseSchedule(ABC):
    """A periodic task's schedule: when it is due next, and Celery's ``is_due`` on top of that.
    Subclasses set :attr:`type_name` and implement :meth:`next_after` and :meth:`to_dict`, whose
    keys (but ``"type"``) are the class's constructor arguments."""

    #: The ``"type"`` in :meth:`to_dict`, by which :func:`schedule_from_dict` finds the class.
    type_name: ClassVar[str] = ""
    _types: ClassVar[dict[str, type[BaseSchedule]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__:
            BaseSchedule._types[cls.type_name] = cls

    @abstractmethod
    def next_after(self, after: datetime, tz: tzinfo = UTC) -> datetime:
        """The first due instant strictly after ``after`` (an aware datetime), computed in the
        wall clock of ``tz``; returned aware, in ``tz``."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """This schedule as JSON-able data with a ``"type"`` key (:func:`schedule_from_dict`
        rebuilds it); a changed schedule gives different data."""

    def remaining_estimate(self, last_run_at: datetime, now: datetime | None = None,
                           tz: tzinfo = UTC) -> timedelta:
        """As Celery's: from ``now`` to the first run after ``last_run_at``, negative when overdue
        (naive datetimes are UTC, as in Celery)."""
        return self.next_after(_aware(last_run_at), tz) - _aware(now)

    def is_due(self, last_run_at: datetime, now: datetime | None = None, tz: tzinfo = UTC) -> schedstate:
        """Celery's ``(is_due, next)``: whether a run after ``last_run_at`` is due by ``now``, and
        the seconds until the scheduler should check again (the next run after ``now`` if due)."""
        remaining = self.remaining_estimate(last_run_at, moment := _aware(now), tz).total_seconds()
        return (schedstate(False, remaining) if remaining > 0 else
                schedstate(True, self._next_check(moment, tz)))

    def _next_check(self, now: datetime, tz: tzinfo) -> float:  # seconds to the first run after now
        return max(self.remaining_estimate(now, now, tz).total_seconds(), 0.0)

    def _key(self) -> Any:  # what equality and hashing compare
        return json.dumps(self.to_dict(), sort_keys=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseSchedule):
            return type(self) is type(other) and self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


class schedule(BaseSchedule):
    """Every ``run_every`` (seconds, or a timedelta), as Celery's ``schedule``.

    The beat anchors an interval at its last due time: ``next_after(t) == t + run_every`` in real
    time. With ``relative=True`` that is rounded down on the wall clock of ``tz`` as Celery's
    ``delta_resolution`` does: to the day for a day or more, the hour for an hour or more, the
    minute for a minute or more, else the second (an hourly interval runs at the top of the hour).
    """

    type_name = "schedule"

    def __init__(self, run_every: float | timedelta, relative: bool = False) -> None:
        if isinstance(run_every, bool) or not isinstance(run_every, int | float | timedelta):
            raise TypeError(f"schedule(run_every={run_every!r}): give seconds (int or float) or a timedelta")
        seconds = run_every.total_seconds() if isinstance(run_every, timedelta) else run_every
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"schedule(run_every={run_every!r}): the interval must be a finite number of "
                             "seconds above 0")
        self.run_every = run_every if isinstance(run_every, timedelta) else timedelta(seconds=run_every)
        self.relative = bool(relative)

    @property
    def seconds(self) -> float:
        """The interval in seconds."""
        return self.run_every.total_seconds()

    def next_after(self, after: datetime, tz: tzinfo = UTC) -> datetime:
        """``after + run_every`` in real time (rounded down if relative), in ``tz``."""
        start = _aware(after, "schedule.next_after").astimezone(UTC)
        due = (start + self.run_every).astimezone(tz)
        if self.relative:
            s = self.seconds
            rounded = (due.replace(hour=0, minute=0, second=0, microsecond=0) if s >= 86400 else
                       due.replace(minute=0, second=0, microsecond=0) if s >= 3600 else
                       due.replace(second=0, microsecond=0) if s >= 60 else due.replace(microsecond=0))
            if rounded.astimezone(UTC) > start:  # a sub-second interval may round back to `after`
                due = rounded.astimezone(UTC).astimezone(tz)
        return due

    def _next_check(self, now: datetime, tz: tzinfo) -> float:
        return self.seconds  # Celery's interval, once due, checks again a whole interval later

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "schedule", "run_every": seconds, "relative": bool}``."""
        return {"type": self.type_name, "run_every": self.seconds, "relative": self.relative}

    def _key(self) -> Any:
        return self.run_every, self.relative

    def __eq__(self, other: object) -> bool:
        if isinstance(other, timedelta):  # as Celery: schedule(30) == timedelta(seconds=30)
            return not self.relative and self.run_every == other
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self.run_every) if not self.relative else hash(self._key())

    def __repr__(self) -> str:
        seconds = float(f"{self.seconds:.2f}")  # as Celery's humanize_seconds
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if seconds >= size:
                return f"<freq: {seconds / size:.2f} {unit}{'' if seconds == size else 's'}>"
        return "<freq: now>"


class crontab(BaseSchedule):
    """Celery's crontab: run at the minutes, hours, days and months its five fields match.

    Each field is an int, a cron string (``'*'``, ``'*/15'``, ``'a-b'``, ``'a-b/n'``, ``'1,5,10'``;
    day names such as ``'mon-fri'`` in ``day_of_week``, month names such as ``'jan'`` in
    ``month_of_year``) or an iterable of ints. Ranges: minute 0-59, hour 0-23, day_of_week 0-6
    with Sunday 0, day_of_month 1-31, month_of_year 1-12. As in Celery (unlike classic cron, which
    ORs them), a day must match *both* ``day_of_week`` and ``day_of_month`` when both are
    restricted: ``day_of_week=1, day_of_month='1-7'`` is the first Monday of the month.
    """

    type_name = "crontab"

    def __init__(self, minute: Cronspec = "*", hour: Cronspec = "*", day_of_week: Cronspec = "*",
                 day_of_month: Cronspec = "*", month_of_year: Cronspec = "*") -> None:
        self._orig: dict[str, int | str | list[int]] = {}
        self.minute, self.hour, self.day_of_week, self.day_of_month, self.month_of_year = (
            self._field(name, spec) for name, spec in zip(
                _FIELDS, (minute, hour, day_of_week, day_of_month, month_of_year), strict=True))
        if not any(day <= monthrange(2000, m)[1] for m in self.month_of_year for day in self.day_of_month):
            raise ValueError(f"crontab(day_of_month={day_of_month!r}, month_of_year={month_of_year!r}): "
                             "none of those months has any of those days, so it would never run")
        self._sorted = {name: sorted(getattr(self, name)) for name in _FIELDS}

    def _field(self, name: str, spec: Cronspec) -> set[int]:
        """The values of one field, with a :class:`ParseException` naming the field if bad."""
        size, low, names, extra = _FIELDS[name]
        where = f"crontab({name}={spec!r})"
        hint = f"use {low}-{low + size - 1}, '*', '*/n', 'a-b' or a list{extra}"
        if isinstance(spec, str):
            try:
                values = crontab_parser(size, low, names).parse(spec)
            except ParseException as exc:
                raise ParseException(f"{where}: {exc}; {hint}") from None
            self._orig[name] = spec
            return values
        items = [spec] if isinstance(spec, int) else list(spec) if isinstance(spec, Iterable) else None
        if items is None or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
            raise TypeError(f"{where}: give an int, a cron string like '*/15', or a list of ints")
        for value in items:
            if not low <= value < low + size:
                raise ParseException(f"{where}: {value} is out of range {low}-{low + size - 1}; {hint}")
        if not items:
            raise ParseException(f"{where}: an empty list matches nothing; {hint}")
        self._orig[name] = items[0] if isinstance(spec, int) else sorted(set(items))
        return set(items)

    @classmethod
    def from_string(cls, expression: str) -> crontab:
        """A crontab from a cron line's five fields, in cron's (and Celery's) order:
        ``minute hour day_of_month month_of_year day_of_week``, e.g. ``'*/15 * * * *'``."""
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(f"crontab.from_string({expression!r}): expected 5 fields, 'minute hour "
                             f"day_of_month month_of_year day_of_week', got {len(fields)}")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return cls(minute, hour, day_of_week, day_of_month, month_of_year)

    def _next_match(self, n: datetime) -> datetime:
        """The first naive minute from ``n`` (a whole minute) that every field matches, by months,
        days, hours and minutes (a year ahead is a few steps)."""
        s = self._sorted
        for _ in range(100_000):  # plenty for any valid crontab (Feb 29 on a Monday: 28 years)
            if n.month not in self.month_of_year:
                month = _next_in(s["month_of_year"], n.month)
                n = datetime(n.year, month, 1) if month else datetime(n.year + 1, s["month_of_year"][0], 1)
            elif n.day not in self.day_of_month or n.isoweekday() % 7 not in self.day_of_week:
                day = _next_in(s["day_of_month"], n.day + 1, monthrange(n.year, n.month)[1])
                n = (datetime(n.year, n.month, day) if day else
                     (datetime(n.year, n.month, 28) + timedelta(days=4)).replace(day=1))
            elif n.hour not in self.hour:
                hour = _next_in(s["hour"], n.hour)
                n = (n.replace(hour=hour, minute=0) if hour is not None else
                     datetime(n.year, n.month, n.day) + timedelta(days=1))
            elif n.minute not in self.minute:
                minute = _next_in(s["minute"], n.minute)
                n = (n.replace(minute=minute) if minute is not None else
                     n.replace(minute=0) + timedelta(hours=1))
            else:
                return n
        raise RuntimeError(f"{self!r} found no matching time after {n}")  # pragma: no cover

    def _instants(self, n: datetime, tz: tzinfo) -> list[datetime]:
        """The naive UTC instants of the wall-clock time ``n`` in ``tz``, by the DST rules."""
        early = n.replace(tzinfo=tz).utcoffset() or _ZERO  # fold=0
        late = n.replace(tzinfo=tz, fold=1).utcoffset() or _ZERO
        if early == late:
            return [n - early]
        if len(self.hour) == 24:  # an every-hour job: both times if repeated, none if skipped
            return [n - early, n - late] if early > late else []
        return [n - early]  # a fixed-time job: the first time, or just after the gap (fold=0)

    def next_after(self, after: datetime, tz: tzinfo = UTC) -> datetime:
        """The first run strictly after ``after`` on the wall clock of ``tz``, by the module's DST rules."""
        start = _aware(after, "crontab.next_after").astimezone(UTC).replace(tzinfo=None)
        # A wall-clock time up to one offset change before `after`'s can still fall after it.
        lowest = min(_offset(tz, start + d) for d in (-_WINDOW, _ZERO, _WINDOW))
        n = self._next_match((start + lowest).replace(second=0, microsecond=0))
        best: datetime | None = None
        stop: datetime | None = None
        while stop is None or n < stop:
            for instant in self._instants(n, tz):
                if instant > start and (best is None or instant < best):
                    best = instant
                    # A later wall-clock time could still fall before `best` up to there.
                    stop = best + max(_offset(tz, best + d) for d in (-_WINDOW, _ZERO, _WINDOW))
            n = self._next_match(n + _MINUTE)
        assert best is not None
        return best.replace(tzinfo=UTC).astimezone(tz)

    def to_dict(self) -> dict[str, Any]:
        """The five fields as given (iterables as sorted lists), with ``"type": "crontab"``."""
        return {"type": self.type_name, **self._orig}

    def _key(self) -> Any:
        return tuple(frozenset(getattr(self, name)) for name in _FIELDS)

    def __repr__(self) -> str:
        shown = [",".join(map(str, v)) if isinstance(v, list) else str(v) for v in (
            self._orig[f] for f in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))]
        return f"<crontab: {' '.join(shown)} (m/h/dM/MY/d)>"


def maybe_schedule(value: float | int | timedelta | BaseSchedule, relative: bool = False) -> BaseSchedule:
    """``value`` as a schedule: seconds or a timedelta become a :class:`schedule`, a schedule stays."""
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return schedule(value, relative)
    raise TypeError(f"a schedule must be seconds (an int or a float), a timedelta, or a schedule "
                    f"(schedule, crontab or solar); got {type(value).__name__} {value!r}")


def schedule_from_dict(data: Mapping[str, Any]) -> BaseSchedule:
    """The schedule that :meth:`BaseSchedule.to_dict` gave ``data``; :class:`ValueError` if its
    ``"type"`` is unknown or the data doesn't fit it."""
    kind = data.get("type") if isinstance(data, Mapping) else None
    if kind == "solar" and kind not in BaseSchedule._types:
        # flask_jobs.solar_schedule builds on this module; loaded by name, it registers itself.
        importlib.import_module(f"{__package__}.solar_schedule")
    cls = BaseSchedule._types.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown schedule type {kind!r} in {data!r}; expected a dict from to_dict(), "
                         "whose 'type' is 'schedule', 'crontab' or 'solar'")
    try:
        return cls(**{key: value for key, value in data.items() if key != "type"})
    except TypeError as exc:
        raise ValueError(f"can't rebuild a {kind} schedule from {data!r}: {exc}") from None


def __getattr__(name: str) -> Any:
    if name == "solar":  # (Celery's celery.schedules.solar; its module needs ephem only when used)
        return importlib.import_module(f"{__package__}.solar_schedule").solar
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

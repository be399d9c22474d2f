"""Celery's ``solar`` schedule: run at sunrise, sunset, dawn, dusk or solar noon somewhere.

It needs the ``ephem`` package (``pip install 'flask-jobs-redis[solar]'``), imported only when a
solar schedule is made, so :mod:`flask_jobs.schedules` works without it. Events, horizons and
methods are Celery's; times are computed in UTC, so ``tz`` only sets the zone of the answer.
"""

from __future__ import annotations

import difflib
import importlib
import math
from datetime import UTC, datetime, timedelta, tzinfo
from types import ModuleType
from typing import Any

from .schedules import BaseSchedule, _aware

__all__ = ["EVENTS", "solar"]

#: Each event: the sun's altitude that marks it (ephem's horizon), ephem's method, and whether
#: the sun's centre (not its upper edge) crosses that altitude; Celery's values.
EVENTS: dict[str, tuple[str, str, bool]] = {
    "dawn_astronomical": ("-18", "next_rising", True),
    "dawn_nautical": ("-12", "next_rising", True),
    "dawn_civil": ("-6", "next_rising", True),
    "sunrise": ("-0:34", "next_rising", False),
    "solar_noon": ("0", "next_transit", False),
    "sunset": ("-0:34", "next_setting", False),
    "dusk_civil": ("-6", "next_setting", True),
    "dusk_nautical": ("-12", "next_setting", True),
    "dusk_astronomical": ("-18", "next_setting", True),
}
#: How many days ahead to look for an event before giving up (the polar night is shorter).
MAX_DAYS = 400
#: Two answers this close are the same event, found again from its own time.
_SAME_EVENT = timedelta(seconds=1)


def _ephem() -> ModuleType:
    """The ``ephem`` module, or an :class:`ImportError` saying how to install it."""
    try:
        return importlib.import_module("ephem")
    except ImportError:
        raise ImportError("solar schedules need the 'ephem' package: "
                          "pip install 'flask-jobs-redis[solar]'") from None


def _degrees(name: str, value: Any, limit: int, signs: str, call: str) -> float:
    """``value`` checked as a latitude or longitude, with a :class:`ValueError` saying the fix."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{call}: {name} must be a number of degrees, not {value!r}")
    if not -limit <= value <= limit:
        raise ValueError(f"{call}: {name} {value} is out of range; use -{limit} to {limit} ({signs})")
    return value


class solar(BaseSchedule):
    """Run at a solar event at a place, as Celery's ``solar(event, lat, lon)``.

    Events: ``dawn_astronomical``, ``dawn_nautical``, ``dawn_civil``, ``sunrise``,
    ``solar_noon``, ``sunset``, ``dusk_civil``, ``dusk_nautical``, ``dusk_astronomical``.
    Latitude is north positive (-90 to 90), longitude east positive (-180 to 180).

    In polar regions an event may not happen for days (no sunrise in the polar night, no sunset
    in the midnight sun): the next run is then the next day it does happen. ``solar_noon``
    happens every day. Very near a pole (within about 0.1 degree) ephem can miss risings and
    settings; at a pole it finds none, and :meth:`next_after` raises :class:`RuntimeError`.
    """

    type_name = "solar"

    def __init__(self, event: str, lat: float, lon: float) -> None:
        call = f"solar({event!r}, {lat!r}, {lon!r})"
        if event not in EVENTS:
            close = difflib.get_close_matches(str(event), EVENTS, n=1)
            raise ValueError(f"{call}: unknown event {event!r}; "
                             + (f"did you mean {close[0]!r}? " if close else "")
                             + f"use one of {', '.join(EVENTS)}")
        self.event = event
        self.lat = _degrees("latitude", lat, 90, "south to north", call)
        self.lon = _degrees("longitude", lon, 180, "west to east", call)
        self.horizon, self.method, self.use_center = EVENTS[event]
        _ephem()  # fail now, not at the first look at the schedule

    def _observer(self, ephem: ModuleType) -> Any:
        """An ephem observer at this place, at sea level and without refraction (as Celery)."""
        observer = ephem.Observer()
        observer.lat, observer.lon = str(self.lat), str(self.lon)
        observer.elev = 0
        observer.pressure = 0
        observer.horizon = self.horizon
        return observer

    def next_after(self, after: datetime, tz: tzinfo = UTC) -> datetime:
        """The first time the event happens strictly after ``after``, in ``tz``."""
        ephem = _ephem()
        start = _aware(after, "solar.next_after").astimezone(UTC).replace(tzinfo=None)
        observer, sun = self._observer(ephem), ephem.Sun()
        search = start
        while search - start < timedelta(days=MAX_DAYS):
            try:
                if self.use_center:
                    found = getattr(observer, self.method)(sun, start=search, use_center=True)
                else:
                    found = getattr(observer, self.method)(sun, start=search)
            except ephem.CircumpolarError:
                # The sun stays up (or down) all day: look again after the next anti-transit (local
                # midnight), as Celery does, until a day when the event happens.
                search = observer.next_antitransit(sun, start=search).datetime() + timedelta(minutes=1)
                continue
            when: datetime = found.datetime()
            if when - start > _SAME_EVENT:
                return when.replace(tzinfo=UTC).astimezone(tz)
            search = when + timedelta(minutes=1)  # `after` was this event itself
        raise RuntimeError(f"{self!r}: no {self.event} in the {MAX_DAYS} days after {after}")

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "solar", "event": ..., "lat": ..., "lon": ...}``."""
        return {"type": self.type_name, "event": self.event, "lat": self.lat, "lon": self.lon}

    def _key(self) -> Any:
        return self.event, float(self.lat), float(self.lon)

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat}, longitude: {self.lon}>"

"""The scheduler: periodic tasks sent exactly once per due time by any number of beats.

- :mod:`~flask_jobs.beat.entries`: the entries (``JOBS_BEAT_SCHEDULE``), checked.
- :mod:`~flask_jobs.beat.store`: their state in Redis, the lease, the fenced send.
- :mod:`~flask_jobs.beat.service`: :class:`Beat`, the loop of ``flask jobs beat``.
- :mod:`~flask_jobs.beat.control`: ``jobs.schedule``, changes at run time.
"""

from __future__ import annotations

from .control import ScheduleControl, ScheduleEntry
from .entries import Entry
from .service import Beat

__all__ = ["Beat", "Entry", "ScheduleControl", "ScheduleEntry"]

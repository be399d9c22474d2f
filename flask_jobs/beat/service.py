"""The :class:`Beat`: the loop that sends periodic tasks, run by ``flask jobs beat`` or inside a
worker (``flask jobs worker -B``).

Any number of beats may run, on any hosts. One leads: it holds a lease in Redis
(``beat:leader``, :data:`JOBS_BEAT_LEASE`), renewed from a thread on Redis's clock; the others
try to take it every third of the lease, so a leader that dies is replaced within about
``lease + lease / 3`` seconds (4 s by default). The lease only decides who works. What makes
each due run go out exactly once is the send itself: ``scripts/beat_fire.lua`` queues the task
and moves the entry's next run in one script, and only if the next run is still the one the
caller read and the caller still holds the lease. Two beats that both believe they lead (one
stopped past its lease, then resumed) cannot send a run twice.

Missed runs: a run is *late* when its due time passed less than ``2 x lease + max interval``
ago (a leader's failover), and it is sent. Older due times were *missed* (no beat ran): the
entry's ``missed`` policy (default :data:`JOBS_BEAT_MISSED`) sends one run for all of them,
for the newest due time (``once``, Celery's behaviour), none (``skip``), or each of them
(``all``, the newest :data:`JOBS_BEAT_MISSED_CAP`).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import redis
from flask import Flask

from .._version import __version__
from ..config import check_timezone
from ..message import build_message
from ..schedules import BaseSchedule, schedule
from ..state import AppState
from .entries import Entry, configured_entries
from .store import FireResult, ScheduleStore

log = logging.getLogger("flask_jobs.beat")

UTC = dt.UTC


def to_ms(when: dt.datetime) -> int:
    """An aware datetime as epoch milliseconds."""
    return int(round(when.timestamp() * 1000))


def from_ms(ms: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    """Epoch milliseconds as an aware datetime in ``tz``."""
    return dt.datetime.fromtimestamp(ms / 1000, tz)


def next_after(when: BaseSchedule, after_ms: int, tz: dt.tzinfo) -> int:
    """The first due time of ``when`` after ``after_ms``, in ms."""
    return to_ms(when.next_after(from_ms(after_ms, tz), tz))


def first_after(when: BaseSchedule, due_ms: int, now_ms: int, tz: dt.tzinfo) -> int:
    """The first due time after ``now_ms`` of a schedule last due at ``due_ms``: an interval
    keeps its phase (every 10 s from :05 stays on :05, :15...), a crontab computes afresh."""
    if isinstance(when, schedule) and not when.relative:
        step = when.run_every.total_seconds() * 1000
        return due_ms + int(round(((now_ms - due_ms) // step + 1) * step))
    return next_after(when, now_ms, tz)


def newest_runs(when: BaseSchedule, due_ms: int, now_ms: int, tz: dt.tzinfo,
                cap: int) -> list[int]:
    """The newest ``cap`` due times of ``when`` from ``due_ms`` up to ``now_ms``, oldest first
    (``due_ms`` itself when it is the only one)."""
    if isinstance(when, schedule) and not when.relative:
        step = when.run_every.total_seconds() * 1000
        count = int((now_ms - due_ms) // step) + 1
        return [due_ms + int(round(k * step)) for k in range(max(0, count - cap), count)]
    # A crontab or solar schedule: walk its due times, from near the end when the backlog is
    # long (a week of an every-minute crontab is 10,000 steps), else from the start.
    period = max(1, next_after(when, due_ms, tz) - due_ms)
    starts = [due_ms]
    near_end = now_ms - 2 * cap * period
    if near_end > due_ms:
        starts.insert(0, next_after(when, near_end, tz))
    for start in starts:
        kept: collections.deque[int] = collections.deque(maxlen=cap)
        t, steps = start, 0
        while t <= now_ms and steps < 1_000_000:  # (a bound against a schedule that never ends)
            kept.append(t)
            steps += 1
            t = next_after(when, t, tz)
        if len(kept) == cap or start == due_ms:  # (a near start that found too few: walk all)
            return list(kept) or [due_ms]
    return [due_ms]  # pragma: no cover - the loop returns on its last start


class Beat:
    """The scheduler of one app: sends each entry's task when it is due.

    :param app: the Flask app (its ``JOBS_BEAT_SCHEDULE`` and ``jobs.add_periodic_task``
        entries).
    :param max_interval: the longest sleep between two looks at the schedule, in seconds
        (default :data:`JOBS_BEAT_MAX_LOOP_INTERVAL`): how soon a change made at run time (an
        entry added, paused, resumed) is seen.
    :param hostname: the node name in the beat's id (default ``beat@<host>``).
    """

    def __init__(self, app: Flask, max_interval: float | None = None,
                 hostname: str | None = None) -> None:
        self.app = app
        self.state: AppState = app.extensions["jobs"]
        settings = self.state.settings
        self.tz = check_timezone(settings.timezone)
        self.lease = float(settings.beat_lease)
        self.max_interval = float(max_interval or settings.beat_max_loop_interval)
        self.hostname = hostname or f"beat@{socket.gethostname()}"
        #: This process's identity in the lease.
        self.id = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(4)}"
        self.store = ScheduleStore(self.state.client, self.state.keys)
        self.stop_event = threading.Event()
        self._leading_until = 0.0  # (monotonic) when our lease, as last renewed, runs out
        self._parsed: dict[tuple[str, str], Entry] = {}
        self._lease_thread: threading.Thread | None = None
        self._thread: threading.Thread | None = None

    # -- start ---------------------------------------------------------------------------------

    def setup(self) -> list[Entry]:
        """Check the configured entries and write them to Redis (entries removed from the
        configuration go; changed ones get their next run computed afresh).

        :raises ~flask_jobs.exceptions.ImproperlyConfigured: a bad entry, named.
        """
        jobs = self.state.jobs
        jobs.finalize()
        entries = configured_entries(self.state, jobs.periodic_tasks)
        now = self.store.now_ms()
        changes = self.store.sync("config", [
            (e.name, e.definition(self.state), next_after(e.schedule, now, self.tz))
            for e in entries])
        for change in changes:
            verb = {"+": "added", "~": "changed", "-": "removed"}[change[0]]
            log.info("beat: periodic task %s %s", change[1:], verb)
        return entries

    def banner(self) -> str:
        """The start-up banner: where it sends, the lease, and each entry's next run."""
        return (
            f"flask-jobs beat v{__version__} is starting.\n"
            f".> app:          {self.app.import_name}\n"
            f".> broker:       {self.state.broker_url_safe}\n"
            f".> id:           {self.id}\n"
            f".> time zone:    {self.state.settings.timezone}\n"
            f".> lease:        {self.lease:g} s (a dead leader is replaced within "
            f"{self.lease * 4 / 3:.1f} s)\n"
            f".> max interval: {self.max_interval:g} s\n"
            f"\n[entries]\n{self.entry_lines()}\n"
        )

    def entry_lines(self) -> str:
        """One line per entry: name, task, schedule, and its next run (or ``paused``)."""
        lines = []
        for name in self.store.names():
            stored = self.store.get(name)
            if stored is None:
                continue
            entry = self._entry(stored.name, stored.definition)
            when = ("paused" if stored.paused or stored.next_ms is None else
                    "next " + from_ms(stored.next_ms, self.tz).isoformat(" ", "seconds"))
            lines.append(f"  . {name}: {entry.task} {entry.schedule!r}, {when}")
        return "\n".join(lines) or "  (none)"

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Send due runs until :meth:`stop` (blocking); the lease is given up at the end."""
        self._lease_thread = threading.Thread(target=self._keep_lease, name="beat-lease",
                                              daemon=True)
        self._lease_thread.start()
        try:
            while not self.stop_event.is_set():
                try:
                    wait = self.tick()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("beat: Redis did not answer (%s); trying again", exc)
                    wait = 1.0
                self.stop_event.wait(wait)
        finally:
            self._lease_thread.join(timeout=self.lease)
            try:
                self.store.lease(self.id, 0)  # the next leader need not wait for it to lapse
            except redis.RedisError:
                pass
            log.info("beat: stopped")

    def start(self) -> threading.Thread:
        """Run the beat in a daemon thread (``worker -B``); returns the thread."""
        thread = self._thread = threading.Thread(target=self.run, name="beat", daemon=True)
        thread.start()
        return thread

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end (it gives up the lease); with ``timeout``, wait that long for
        a thread started by :meth:`start` to finish."""
        self.stop_event.set()
        if timeout is not None and self._thread is not None:
            self._thread.join(timeout)

    @property
    def leading(self) -> bool:
        """Whether this beat holds the lease, as far as it knows (the send is fenced anyway)."""
        return time.monotonic() < self._leading_until

    def _keep_lease(self) -> None:
        lease_ms = int(self.lease * 1000)
        was: bool | None = None  # (so the first answer is logged: leading, or standing by)
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                held, holder = self.store.lease(self.id, lease_ms)
            except redis.RedisError as exc:
                log.warning("beat: could not renew the lease (%s)", exc)
                held, holder = False, "?"
            if held:
                self._leading_until = started + self.lease
            if held != was:
                log.info("beat: %s", "leading: this beat sends the periodic tasks" if held
                         else f"standing by: {holder} leads")
                was = held
            self.stop_event.wait(self.lease / 3)

    def tick(self) -> float:
        """Send every run due now; returns the seconds until the next look."""
        if not self.leading:
            return min(self.lease / 3, self.max_interval)
        now = self.store.now_ms()
        for name, next_ms in self.store.due(now):
            if self.stop_event.is_set() or not self.leading:
                break
            self.send_due(name, next_ms, now)
        first = self.store.first_due_ms()
        if first is None:
            return self.max_interval
        return min(self.max_interval, max(0.0, (first - self.store.now_ms()) / 1000.0))

    def send_due(self, name: str, next_ms: int, now_ms: int) -> int:
        """Send (or, for missed runs, skip) the run of entry ``name`` due at ``next_ms``;
        returns the :class:`~flask_jobs.beat.store.FireResult` code of the last send."""
        stored = self.store.get(name)
        if stored is None or stored.paused or stored.next_ms != next_ms:
            return FireResult.MOVED_ON  # changed since the due list was read
        entry = self._entry(name, stored.definition)
        settings = self.state.settings
        if now_ms - next_ms <= (2 * self.lease + self.max_interval) * 1000:  # on time, or late
            return self._send(entry, "tick", next_ms, next_ms,
                              next_after(entry.schedule, next_ms, self.tz))
        # Missed runs (no beat ran): the newest one (once), none (skip) or the newest ones up
        # to the cap (all), each sent and fenced as a due run is.
        policy = entry.missed or settings.beat_missed
        runs = newest_runs(entry.schedule, next_ms, now_ms, self.tz,
                           settings.beat_missed_cap if policy == "all" else 1)
        after = next_after(entry.schedule, runs[-1], self.tz)
        log.warning("beat: %s missed its runs since %s (no beat ran); %s", name,
                    from_ms(next_ms, self.tz).isoformat(" ", "seconds"),
                    {"skip": "skipping them", "once": "sending the newest one"}.get(
                        policy, f"sending the newest {len(runs)}"))
        if policy == "skip":
            return self._send(entry, "skip", next_ms, runs[-1], after)
        expected, code = next_ms, FireResult.SENT
        for i, due in enumerate(runs):
            code = self._send(entry, "tick", expected, due,
                              runs[i + 1] if i + 1 < len(runs) else after)
            if code != FireResult.SENT:
                break
            expected = runs[i + 1] if i + 1 < len(runs) else after
        return code

    def _send(self, entry: Entry, mode: str, expected_ms: int, due_ms: int,
              new_next_ms: int) -> int:
        """One fenced send (``tick``) or advance (``skip``) of ``entry``."""
        message = None
        if mode == "tick":
            try:
                message = self.message(entry, due_ms)
            except Exception:  # noqa: BLE001 - a bad entry must not stop the others
                log.exception("beat: could not send %s (%s); skipping this run", entry.name,
                              entry.task)
                mode = "skip"
        code, detail = self.store.fire(mode, self.id, entry.name, expected_ms, new_next_ms,
                                       due_ms, message)
        if code == FireResult.SENT and message is not None:
            log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        elif code == FireResult.NOT_LEADER:
            self._leading_until = 0.0
            log.info("beat: the lease is held by %s; not sending", detail or "nobody")
        return code

    def message(self, entry: Entry, due_ms: int) -> Any:
        """The message of one run of ``entry`` (due at ``due_ms``): the entry's task, arguments
        and options, with Celery's ``periodic_task_name`` header and ours,
        ``periodic_task_due`` (the due time, ISO 8601 in :data:`JOBS_TIMEZONE`), which tells
        runs apart for idempotent work."""
        options = entry.message_options()
        options["headers"]["periodic_task_due"] = from_ms(due_ms, self.tz).isoformat()
        return build_message(self.state.settings, self.state.codecs,
                             self.state.jobs.tasks.get(entry.task), entry.task, entry.args,
                             entry.kwargs, **options)

    def _entry(self, name: str, definition: str) -> Entry:
        key = (name, definition)
        entry = self._parsed.get(key)
        if entry is None:
            entry = self._parsed[key] = Entry.from_definition(name, definition, self.state)
        return entry

"""Coalesced writes of a worker process: STARTED, progress, outcomes, give-backs.

Writes are buffered and sent in batches, piggybacked on the next claim (one round trip for
"ack these, give me more") or sent by the flusher thread when a task runs long. Progress reports
only replace a pending value in memory; the flusher writes the newest one at most every
:data:`JOBS_PROGRESS_INTERVAL`, so a task can report a million times at almost no cost.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .. import signals, states
from ..execution import Outcome
from ..request import progress_meta
from ..state import AppState
from ..writes import (
    Write,
    final_write,
    ignored_write,
    progress_write,
    retry_write,
    started_write,
)

#: Outcomes older than this are flushed by the flusher thread if no claim has carried them. A
#: consumer draining short tasks claims again (carrying them) sooner than this, so the flusher
#: rarely makes a round trip of its own while the worker is busy.
FINAL_FLUSH_DELAY = 0.01
#: A task's STARTED is written once it has run this long (or with its first progress report): a
#: task that finishes sooner goes straight to its final state, without a write of its own.
STARTED_DELAY = 0.01
#: Longest the flusher sleeps while tasks run: a report is not announced (it only stores a
#: reference), so this is how late the flusher may notice one that is already due.
FLUSH_TICK = 0.01
#: How long the flusher sleeps when nothing runs and nothing is buffered.
IDLE_TICK = 0.05


class Reporter:
    """Where a running task's ``update_state``/``progress`` calls go.

    The calls only store a reference (no lock, no I/O): the GIL makes the assignment atomic,
    and the flusher compares identities to see what is new.
    """

    __slots__ = ("task_id", "attempt", "pending", "sent", "started_at", "started_sent",
                 "last_write", "task")

    def __init__(self, task_id: str, attempt: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        #: The running :class:`~flask_jobs.Task`: the sender of ``task_progress``.
        self.task: Any = None
        self.pending: tuple[str | None, Any] | None = None
        self.sent: tuple[str | None, Any] | None = None
        self.started_at = time.monotonic()
        self.started_sent = False
        self.last_write = 0.0

    def report(self, state: str, meta: Any) -> None:
        """Record a state and meta (``update_state``)."""
        self.pending = (state, meta)

    def progress(self, current: float, total: float | None, status: str | None,
                 extra: dict[str, Any]) -> None:
        """Record a progress report; the meta dict is only built when it is written."""
        self.pending = (None, (current, total, status, extra))


class Writer:
    """The write buffer of one worker process, shared by its consumers and its flusher."""

    def __init__(self, state: AppState, worker: str) -> None:
        self.state = state
        self.worker = worker
        self._lock = threading.Lock()
        self._buffer: list[Write] = []
        self._oldest = 0.0
        self._running: dict[str, Reporter] = {}
        self._dumps = state.codecs.dumps
        self._rtype = state.settings.result_serializer
        self._interval = state.settings.progress_interval
        self._track_started = state.settings.track_started
        #: The encoding of a ``None`` result, the most common one: encoded once, not per task.
        self._none = self._dumps(None, self._rtype)

    def started(self, reporter: Reporter) -> None:
        """A task began; its STARTED is written if it still runs ``STARTED_DELAY`` later."""
        with self._lock:
            self._running[reporter.task_id] = reporter

    def _progress_write(self, r: Reporter, pending: tuple[str | None, Any],
                        notify: bool = True) -> Write:
        state, meta = pending
        if state is None:
            state, meta = states.PROGRESS, progress_meta(*meta)
        if notify:
            signals.send(signals.task_progress, r.task, task_id=r.task_id, state=state, meta=meta)
        rtype = self._rtype
        try:
            data = self._dumps(meta, rtype)
        except Exception as exc:  # a meta we cannot encode must not kill the task or flusher
            rtype = "json"
            data = self._dumps({"error": f"unencodable progress meta: {exc}"}, rtype)
        return progress_write(r.task_id, r.attempt, state, rtype, data)

    def finished(self, reporter: Reporter, outcome: Outcome, retry_body: bytes = b"",
                 ignore_result: bool = False, runtime: float | None = None) -> None:
        """Buffer a task's final write (its last progress report first, if unsent);
        ``runtime`` in seconds, when it ran."""
        write = self.outcome_write(reporter.task_id, reporter.attempt, outcome, retry_body,
                                   ignore_result, runtime)
        with self._lock:
            self._running.pop(reporter.task_id, None)
            pending = reporter.pending
            if pending is not None:
                # Always, even if the flusher took it already: its write may still be in flight
                # on another connection and land after the final one (it is then dropped), and
                # the last report must be written before the final state.
                self._buffer.append(self._progress_write(reporter, pending,
                                                         notify=pending is not reporter.sent))
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(write)

    def outcome_write(self, task_id: str, attempt: int, outcome: Outcome,
                      retry_body: bytes = b"", ignore_result: bool = False,
                      runtime: float | None = None) -> Write:
        """The write tuple of an outcome (see ``apply_writes`` in ``scripts/lib.lua``).

        A SUCCESS value is the encoded result (bytes, see :func:`~flask_jobs.execution.execute`)
        or a value still to encode; ``None`` has its encoding kept.
        """
        ms = None if runtime is None else int(runtime * 1000)
        if outcome.state == states.SUCCESS:
            if ignore_result:
                # The script drops the result of an ignored write: encoding it would be wasted,
                # and would raise for a value the serializer cannot encode.
                return final_write(task_id, attempt, states.SUCCESS, self._rtype, b"",
                                   ignore_result=True, runtime_ms=ms)
            value = outcome.value
            if value is None:
                value = self._none
            elif not isinstance(value, bytes):
                value = self._dumps(value, self._rtype)
            return final_write(task_id, attempt, states.SUCCESS, self._rtype, value,
                               runtime_ms=ms)
        if outcome.state == states.IGNORED:
            return ignored_write(task_id, attempt, str(outcome.value or ""))
        desc = json.dumps(outcome.value, default=str)
        if outcome.state == states.RETRY:
            return retry_write(task_id, attempt, desc, outcome.traceback,
                               int(outcome.countdown * 1000), retry_body)
        return final_write(task_id, attempt, outcome.state, "json", desc, outcome.traceback,
                           runtime_ms=ms)

    def add(self, write: Write) -> None:
        """Buffer any other write (give back ``L``, dead letter ``D``)."""
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(write)

    def collect(self, final: bool = True) -> list[Write]:
        """Take the writes that are due.

        A running task's STARTED is due once it has run ``STARTED_DELAY`` (or with its first
        progress report, which it must precede); its newest report once the previous one is
        :data:`JOBS_PROGRESS_INTERVAL` old.

        :param final: take buffered outcomes whatever their age (a claim carries them); the
            flusher passes False and takes them only once they waited ``FINAL_FLUSH_DELAY``.
        """
        now = time.monotonic()
        with self._lock:
            out: list[Write] = []
            track_started = self._track_started
            for r in self._running.values():
                pending = r.pending
                report = pending if pending is not None and pending is not r.sent and (
                    now - r.last_write >= self._interval) else None
                if track_started and not r.started_sent and (
                        report is not None or now - r.started_at >= STARTED_DELAY):
                    out.append(started_write(r.task_id, r.attempt))
                    r.started_sent = True
                if report is not None:
                    out.append(self._progress_write(r, report))
                    r.sent = report
                    r.last_write = now
            if self._buffer and (final or now - self._oldest >= FINAL_FLUSH_DELAY):
                out.extend(self._buffer)
                self._buffer = []
            return out

    def putback(self, writes: list[Write]) -> None:
        """Return writes whose sending failed; progress is dropped (a newer one will come)."""
        keep = [w for w in writes if w[0] in "FRLD"]
        if keep:
            with self._lock:
                self._buffer[:0] = keep
                self._oldest = time.monotonic()

    def wait_time(self) -> float:
        """Seconds the flusher may sleep before a write is due.

        It sleeps until the earliest due write rather than waking at a fixed tick: while a
        worker drains short tasks, nothing becomes due (each STARTED is dropped as its task
        finishes, the outcomes ride on the next claim if it comes within ``FINAL_FLUSH_DELAY``),
        so the flusher wakes but sends nothing.
        """
        now = time.monotonic()
        with self._lock:
            if not self._running and not self._buffer:
                return IDLE_TICK
            wait = FLUSH_TICK
            if self._buffer:
                wait = min(wait, self._oldest + FINAL_FLUSH_DELAY - now)
            for r in self._running.values():
                if self._track_started and not r.started_sent:
                    wait = min(wait, r.started_at + STARTED_DELAY - now)
                pending = r.pending
                if pending is not None and pending is not r.sent:
                    wait = min(wait, r.last_write + self._interval - now)
        return max(wait, 0.001)  # never a busy loop, whatever the rounding

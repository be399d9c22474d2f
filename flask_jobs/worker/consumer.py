"""The consumer loop: claim, run inside the app context, record the outcome.

A worker process runs one consumer (solo, a prefork child) or several (threads, gevent) over the
same :class:`~flask_jobs.worker.runtime.Runtime`. Each consumer claims up to ``prefetch`` tasks
at a time into its own buffer (carrying the buffered writes on the same round trip), runs them
one by one, and blocks on Redis when there is nothing to claim.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import signals, states, tracing
from ..claims import Claimed, parse_handed
from ..connection import data, text
from ..exceptions import (
    ChordError,
    ContentDisallowed,
    DecodeError,
    EncodeError,
    TaskRevokedError,
    describe,
)
from ..execution import Outcome, execute
from ..message import OPTIONAL_FIELDS
from ..request import Context, TaskLike
from ..writes import dead_letter_write, give_back_write
from . import links, tasklog
from .chords import header_results
from .runtime import Runtime
from .writer import Reporter

log = logging.getLogger("flask_jobs.worker")

#: Longest an idle consumer blocks before it claims again (also bounds a lost wake-up).
IDLE_WAIT = 1.0
#: A delayed task due sooner than this is claimed at once rather than waited for.
_DUE_NOW = 0.002
_MALFORMED = "malformed message: not a {id, task, args, kwargs} mapping"


class Wakeup(BaseException):  # noqa: N818
    """Raised by a signal handler to break a consumer out of its blocking wait."""


class Consumer:
    """One loop that claims and runs tasks, one at a time.

    Lost replies: if the connection drops after Redis ran a claim (or popped a task handed to
    our inbox) but before the reply arrived, those tasks sit in this live worker's active hash
    and nobody else will run them. So claims are numbered (:attr:`seq`): a claim whose reply may
    have been lost is sent again with the same number, and Redis returns what that reply
    carried (see ``scripts/claim.lua``). redis-py must not retry on its own: a silent second
    BLPOP would hide the loss. Clients made by ``from_url`` do not retry in redis-py 8.1, but
    a ``Redis()`` built with its defaults does, so this client says so explicitly: it fails
    fast and the loop below backs off.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        #: Claimed and not started yet (prefetched), in order.
        self.local: deque[Claimed] = deque()
        #: Whether the consumer is blocked in :meth:`_wait` (a stop signal then wakes it).
        self.waiting = False
        self.client = runtime.state.make_client(blocking=True)
        self.client.set_retry(Retry(NoBackoff(), 0))
        #: The number of the next claim; reused (not incremented) while a reply may be lost.
        self.seq = 1
        #: This consumer's inbox: tasks handed over at enqueue while it is idle.
        self.number = runtime.add_consumer(self.local)
        self.inbox = runtime.inboxes[self.number]
        # Blocked on the inbox first: a task handed over is already claimed for us.
        self._wait_keys = [self.inbox, *(runtime.state.keys.wake(q) for q in runtime.queues)]
        #: The greenlet running this consumer under the gevent pool (for terminate), else None.
        self.greenlet: Any = None
        #: Whether the last task ran longer than :data:`JOBS_WORKER_PREFETCH_HOLD`: the next
        #: claim then takes no lookahead (it would likely be given back).
        self._last_was_long = False

    def run(self) -> None:
        """Loop until the runtime stops; then give back what was claimed but not started."""
        self.greenlet = _current_greenlet()
        rt = self.rt
        backoff = 0.0
        while not rt.stopping:
            try:
                if self.local or self._claim():
                    backoff = 0.0
                    self.run_one(self.local.popleft())
                    if rt.max_tasks and rt.tasks_done >= rt.max_tasks:
                        rt.stop_event.set()
            except Wakeup:
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                backoff = min(5.0, backoff * 2 or 0.1)
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                self.client.connection_pool.disconnect()
                rt.stop_event.wait(backoff)
        self.give_back()

    def give_back(self) -> None:
        """Queue the give-back of every prefetched task (to the front of its queue)."""
        while self.local:
            claimed = self.local.popleft()
            self.rt.writer.add(give_back_write(claimed.id, claimed.attempt))

    def _claim(self) -> bool:
        """Claim up to ``prefetch`` tasks into :attr:`local`, carrying the buffered writes, or
        block until a task is handed over (or a wake-up); returns whether any came."""
        rt, writer = self.rt, self.rt.writer
        rt.free[self.number] = True
        # Fair dispatch: one task (what this consumer can start now) while another consumer of
        # this process could start one too, or after a long task; else a lookahead of up to
        # ``prefetch`` (claim.lua cuts it to one while a consumer elsewhere is idle, and the
        # flusher gives back what waits behind a running task longer than the hold).
        n = 1 if self._last_was_long or rt.others_free(self.number) else rt.prefetch
        writes = writer.collect(final=True)
        sent, epoch = self.seq, rt.listen_epoch
        # (only parsed when somebody listens for task_revoked, or the log shows them)
        dropped: list[tuple[str, str, bool]] | None = (
            [] if signals.task_revoked.receivers or tasklog.log.isEnabledFor(tasklog.INFO)
            else None)
        try:
            claimed, more, due = rt.state.broker.claim(
                self.client, rt.name, n, rt.queues, writes, self.number,
                idle=not rt.stopping, seq=sent, dropped=dropped)
        except BaseException:
            writer.putback(writes)  # (seq unchanged: if Redis ran it, the next claim returns it)
            raise
        self.seq = sent + 1
        for task_id, name, expired in dropped or ():
            tasklog.discarded(name, task_id, "expired" if expired else "revoked")
            self._revoked(task_id, name, expired)
        if not claimed:
            if more or (due is not None and due <= _DUE_NOW):
                return False  # claim again at once
            handed = self._wait(IDLE_WAIT if due is None else min(due, IDLE_WAIT), sent)
            if handed is None:
                return False
            claimed = [handed]
        rt.free[self.number] = False
        self.local.extend(claimed)
        self._check_missed_revokes(epoch, claimed)
        return True

    def _check_missed_revokes(self, epoch: int, claimed: list[Claimed]) -> None:
        """Tasks claimed across a (re)subscription: a revoke may have gone unheard."""
        if epoch != self.rt.listen_epoch:
            self.rt.check_revoked(self.client, [c.id for c in claimed])

    def _wait(self, timeout: float, last: int) -> Claimed | None:
        """Block until a task is handed to our inbox (returned) or a queue's wake token.

        :param last: the number of the claim just made (it returned nothing).
        """
        self.waiting = True
        try:
            if self.rt.stopping:
                return None
            try:
                reply = self.client.blpop(self._wait_keys, timeout=max(timeout, 0.01))
            except BaseException:
                # The lost reply may have carried a task popped from our inbox (claimed for us):
                # the next claim reuses the last number, so Redis returns that task, once. That
                # claim returned nothing, so nothing we hold can come back with it.
                self.seq = last
                raise
        finally:
            self.waiting = False
        if reply and reply[1] and text(reply[0]) == self.inbox:
            return parse_handed(data(reply[1]))
        return None

    # -- one task ----------------------------------------------------------------------------

    def run_one(self, claimed: Claimed) -> None:
        """Decode, run and record one claimed task."""
        rt = self.rt
        reporter = Reporter(claimed.id, claimed.attempt)
        if claimed.id in rt.revoked:
            rt.writer.finished(reporter, Outcome(states.REVOKED, describe(TaskRevokedError(
                "revoked"))))
            tasklog.discarded(claimed.name, claimed.id, "revoked")
            self._revoked(claimed.id, claimed.name, False)
            return
        decoded = self._decode(claimed, reporter)
        if decoded is None:
            return
        task, request, chord_error = decoded
        if chord_error is not None:  # a chord's body whose header failed: it does not run
            self._fail_unrun(claimed, task, request, reporter, chord_error)
            return
        tasklog.received(claimed.name, claimed.id)
        if signals.task_received.receivers:  # checked here: the kwargs cost even if unsent
            signals.send(signals.task_received, task, request=request)
        if rt.gate is None:
            self._run(claimed, task, request, reporter)
        else:
            with rt.gate.enter(claimed.suspect):
                self._run(claimed, task, request, reporter)

    def _decode(self, claimed: Claimed, reporter: Reporter
                ) -> tuple[TaskLike, Context, ChordError | None] | None:
        """The task and request of a claimed message (and, for a chord's body whose header
        failed, the error it fails with instead of running); None (and the message
        dead-lettered) if it cannot run here."""
        rt = self.rt
        try:
            body = rt.state.codecs.loads(claimed.body, claimed.ctype)
            if not isinstance(body, dict):
                raise DecodeError(_MALFORMED)
            args, kwargs = body.get("args", []), body.get("kwargs", {})
            if not (isinstance(args, list) and isinstance(kwargs, dict)):
                raise DecodeError(_MALFORMED)
            task = rt.jobs.tasks[claimed.name]
        except (ContentDisallowed, DecodeError, KeyError) as exc:
            reason = (f"task {claimed.name!r} is not registered on this worker"
                      if isinstance(exc, KeyError) else str(exc))
            log.error("Dead-lettering task %s[%s]: %s", claimed.name, claimed.id, reason)
            rt.writer.add(dead_letter_write(claimed.id, claimed.attempt, claimed.name, reason))
            return None
        reporter.task = task
        # One dict literal, taken over by the Context: the same attributes as keyword arguments
        # would give, at a fraction of the cost (this runs for every task). Optional fields are
        # copied from the message only if it has them (most are just {task, args, kwargs}).
        fields: dict[str, Any] = {
            "id": claimed.id, "task": claimed.name, "args": args, "kwargs": kwargs,
            "retries": 0, "hostname": rt.hostname, "delivery_attempt": claimed.deliveries,
            "attempt": claimed.attempt, "eta": None, "headers": {}, "group": None,
            "parent_id": None, "root_id": None, "owner": None, "time_limit": None,
            "soft_time_limit": None, "link": None, "link_error": None, "ignore_result": None,
            "called_directly": False, "reporter": reporter,
        }
        chord_error = None
        if len(body) > 3:
            for key in OPTIONAL_FIELDS:
                if key in body and (key != "headers" or body[key]):
                    fields[key] = body[key]
            chord = body.get("chord")
            if isinstance(chord, dict):
                try:
                    results = header_results(rt.state, self.client, str(chord.get("header")))
                except ChordError as exc:
                    chord_error = exc
                else:
                    if chord.get("results", True):
                        fields["args"] = [results, *args]
        return task, Context.from_dict(fields), chord_error

    def _fail_unrun(self, claimed: Claimed, task: TaskLike, request: Context,
                    reporter: Reporter, error: BaseException) -> None:
        """Record a task that fails without running (a chord's body whose header failed) and
        run its ``link_error`` callbacks, as after a failure."""
        outcome = Outcome(states.FAILURE, describe(error), error, f"{type(error).__name__}: "
                          f"{error}\n")
        self.rt.writer.finished(reporter, outcome)
        if request.link or request.link_error or request.chain:
            links.follow(self.rt, self.client, request, outcome)

    def _run(self, claimed: Claimed, task: TaskLike, request: Context,
             reporter: Reporter) -> None:
        """Run a decoded task and record its outcome (and send its callbacks)."""
        rt, writer = self.rt, self.rt.writer
        writer.started(reporter)
        rt.current[claimed.id] = (threading.get_ident(), self.greenlet)
        slot = rt.slot
        if slot is not None:
            slot.set(claimed.id, claimed.attempt, request.time_limit or task.time_limit)
        started = rt.started_at[self.number] = time.monotonic()
        try:
            if tracing.on():
                with tracing.process_span(task.name, rt.state.settings.route(
                        task.name, task.queue), claimed.id, request.headers) as span:
                    outcome = execute(task, request, rt.app, rt.limits, rt.dump_result)
                    tracing.record_outcome(span, outcome.state, outcome.exception)
            else:  # (no context manager on the hot path)
                outcome = execute(task, request, rt.app, rt.limits, rt.dump_result)
        finally:
            rt.started_at[self.number] = None
            runtime = time.monotonic() - started
            self._last_was_long = runtime > rt.hold
            rt.current.pop(claimed.id, None)
            if slot is not None:
                slot.clear()
        retry_body = b""
        if outcome.state == states.RETRY and outcome.retry_body is not None:
            try:
                retry_body = rt.state.codecs.dumps(outcome.retry_body, claimed.ctype)
            except EncodeError as exc:  # e.g. retry(args=[...]) with an unencodable value
                err = EncodeError(f"Cannot retry task {task.name!r}: {exc}")
                outcome = Outcome(states.FAILURE, describe(err), err,
                                  "".join(traceback.format_exception(exc)))
        ignore = bool(task.ignore_result if request.ignore_result is None
                      else request.ignore_result)
        writer.finished(reporter, outcome, retry_body, ignore, runtime)
        tasklog.finished(task, claimed.id, outcome, runtime)
        rt.tasks_done += 1
        if request.link or request.link_error or request.chain:
            links.follow(rt, self.client, request, outcome)

    def _revoked(self, task_id: str, name: str, expired: bool) -> None:
        """Send ``task_revoked`` for a task skipped without running (revoked or expired).

        Its message is gone (or was never decoded), so the request carries only the id and the
        task name, as Celery's does for a task it discards on receipt.
        """
        task = self.rt.jobs.tasks.get(name)
        if task is not None and signals.task_revoked.receivers:
            request = Context.from_dict({"id": task_id, "task": name, "called_directly": False,
                                         "hostname": self.rt.hostname})
            signals.send(signals.task_revoked, task, request=request, terminated=False,
                         expired=expired)


def _current_greenlet() -> Any:
    """The running greenlet under gevent's monkey patching, else None.

    gevent.monkey is loaded only by a program that patches (a bare ``import gevent``, e.g. by a
    test in the same process, does not load it).
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        import gevent

        return gevent.getcurrent()
    return None

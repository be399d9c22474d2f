"""The consumer loop: claim, run inside the app context, record the outcome. One screen.

A worker process runs one consumer (solo, prefork child) or several (threads, gevent) over the
same :class:`Runtime`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import signals, states
from ..broker import parse_handed
from ..exceptions import ContentDisallowed, DecodeError, EncodeError, TaskRevokedError, describe
from ..execution import Outcome, execute
from ..request import Context
from .gate import Gate
from .writer import Reporter, Writer

if TYPE_CHECKING:
    from flask import Flask

    from ..broker import Claimed
    from ..state import AppState

log = logging.getLogger("flask_jobs.worker")

#: Longest an idle consumer blocks before it claims again (also bounds a lost wake-up).
IDLE_WAIT = 1.0


class Wakeup(BaseException):  # noqa: N818
    """Raised by a signal handler to break a consumer out of its blocking wait."""


class Runtime:
    """What every consumer of one worker process shares.

    :param name: the identity that owns claimed tasks in Redis (unique per process).
    :param hostname: the worker's node name, shown as ``request.hostname``.
    """

    def __init__(self, app: Flask, name: str, hostname: str, queues: list[str], prefetch: int,
                 limits: Callable[..., Any] | None = None,
                 max_tasks: int | None = None) -> None:
        self.app = app
        self.state: AppState = app.extensions["jobs"]
        self.jobs = self.state.jobs
        self.name = name
        self.hostname = hostname
        self.queues = queues
        self.prefetch = max(1, prefetch)
        self.limits = limits
        self.max_tasks = max_tasks
        self.writer = Writer(self.state, name)
        self.stop_event = threading.Event()
        #: task id -> (thread ident, consumer) of what runs now, for revoke(terminate=True).
        self.current: dict[str, tuple[int, Consumer]] = {}
        #: Ids revoked by broadcast: skipped if they are in a prefetch buffer.
        self.revoked: set[str] = set()
        #: Counts confirmations of our broadcast subscription (see :meth:`on_listen`); a claim
        #: answered across one checks its tasks (Consumer.run).
        self.listen_epoch = 0
        #: This process's consumers, whose prefetch buffers :meth:`on_listen` checks.
        self.consumers: list[Consumer] = []
        self.tasks_done = 0
        #: The prefork slot shared with the parent (children only).
        self.slot: Any = None
        #: Set by a revoke(terminate=True) aimed at the main thread (solo).
        self.terminate_target: str | None = None
        self._result_dumps = self.state.codecs.dumps
        self._result_serializer = self.state.settings.result_serializer
        #: Inbox keys of this process's consumers (a stop pushes a bare wake-up to each).
        self.inboxes: list[str] = []
        #: With several consumers, lets a suspect task run alone in the process (gate.py).
        self.gate: Gate | None = None

    def add_consumer(self, consumer: Consumer) -> int:
        """Number a new consumer of this process; its inbox is ``w:<name>:in:<number>``."""
        self.consumers.append(consumer)
        self.inboxes.append(self.state.keys.inbox(self.name, len(self.inboxes)))
        if len(self.inboxes) == 2:  # (every consumer is made before any of them runs)
            self.gate = Gate()
        return len(self.inboxes) - 1

    def note_revoked(self, task_id: str) -> None:
        """Remember a revoked id, so a prefetch buffer holding it skips it."""
        if len(self.revoked) > 50_000:  # bounded: old ids have long left every buffer
            self.revoked.clear()
        self.revoked.add(task_id)

    def on_listen(self, client: redis.Redis) -> None:
        """Our broadcast subscription was just confirmed (at start, or after a lost one).

        A revoke published before that was not heard, so read the records of every task in a
        prefetch buffer and note those revoked. The epoch moves first: a claim whose reply
        lands in a buffer after the buffers are read saw it move, and checks its own tasks.
        """
        self.listen_epoch += 1
        buffered = [c.id for consumer in self.consumers for c in list(consumer.local)]
        revoked = self.check_revoked(client, buffered)
        if self.listen_epoch > 1:
            log.info("Subscribed to broadcasts again; %d prefetched task(s) checked, %d of them "
                     "revoked meanwhile", len(buffered), len(revoked))

    def check_revoked(self, client: redis.Redis, task_ids: list[str]) -> list[str]:
        """Note which of ``task_ids`` are REVOKED in their records (one round trip); returns
        those."""
        if not task_ids:
            return []
        found = self.state.broker.task_states(task_ids, client)
        revoked = [task_id for task_id, state in zip(task_ids, found, strict=True)
                   if state == states.REVOKED]
        for task_id in revoked:
            self.note_revoked(task_id)
        return revoked

    def wait_listening(self, timeout: float) -> bool:
        """Wait until the first subscription was confirmed, so no task starts before a revoke
        can be heard; False if it was not within ``timeout`` seconds. (A short sleep loop, not
        an Event: the confirmation may come from another OS thread under gevent.)"""
        deadline = time.monotonic() + timeout
        while self.listen_epoch == 0 and not self.stopping:  # (a stop cuts the wait short)
            if time.monotonic() >= deadline:
                log.warning("Not subscribed to broadcasts after %.0fs; starting anyway (a task "
                            "revoked before the subscription is checked once it is made)",
                            timeout)
                return False
            time.sleep(0.002)
        return self.listen_epoch > 0

    def wake_consumers(self) -> None:
        """Wake this process's idle consumers (blocked on their inboxes), e.g. to stop."""
        if not self.inboxes:
            return
        try:
            pipe = self.state.client.pipeline(transaction=False)
            for key in self.inboxes:
                pipe.rpush(key, b"")
            pipe.execute()
        except Exception:  # Redis down: they wake up on their own within IDLE_WAIT
            pass

    @property
    def stopping(self) -> bool:
        """Whether a shutdown was asked for."""
        return self.stop_event.is_set()

    def dump_result(self, value: Any) -> bytes:
        """Encode a return value with the result serializer."""
        return self._result_dumps(value, self._result_serializer)

    def flush(self, client: redis.Redis, final: bool = True) -> None:
        """Send due writes now (used by the flusher and at shutdown)."""
        writes = self.writer.collect(final=final)
        if not writes:
            return
        try:
            stale = self.state.broker.write(client, self.name, writes)
        except Exception:
            self.writer.putback(writes)
            raise
        if stale:
            log.warning("%d write(s) refused: this worker lost those tasks to another delivery",
                        stale)


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
        self.local: deque[Claimed] = deque()
        self.waiting = False
        self.client = runtime.state.make_client(blocking=True)
        self.client.set_retry(Retry(NoBackoff(), 0))
        #: The number of the next claim; reused (not incremented) while a reply may be lost.
        self.seq = 1
        #: This consumer's inbox: tasks handed over at enqueue while it is idle.
        self.number = runtime.add_consumer(self)
        self.inbox = runtime.inboxes[self.number]
        #: The greenlet running this consumer under the gevent pool (for terminate), else None.
        self.greenlet: Any = None

    def run(self) -> None:
        """Loop until the runtime stops; then give back what was claimed but not started."""
        # gevent.monkey is loaded only by a program that patches (a bare "import gevent",
        # e.g. by a test in the same process, does not load it)
        monkey = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("threading"):
            import gevent

            self.greenlet = gevent.getcurrent()
        rt, broker, writer = self.rt, self.rt.state.broker, self.rt.writer
        # Blocked on the inbox first: a task handed over is already claimed for us.
        wait_keys = [self.inbox, *(rt.state.keys.wake(q) for q in rt.queues)]
        backoff = 0.0
        while not rt.stopping:
            try:
                if not self.local:
                    writes = writer.collect(final=True)
                    sent = self.seq
                    epoch = rt.listen_epoch
                    # (only parsed when somebody listens for task_revoked)
                    dropped: list[tuple[str, str, bool]] | None = (
                        [] if signals.task_revoked.receivers else None)
                    try:
                        claimed, more, due = broker.claim(self.client, rt.name, rt.prefetch,
                                                          rt.queues, writes, self.number,
                                                          idle=not rt.stopping, seq=sent,
                                                          dropped=dropped)
                    except BaseException:
                        # (seq unchanged: if Redis ran it, the next claim returns its tasks)
                        writer.putback(writes)
                        raise
                    self.seq = sent + 1
                    backoff = 0.0
                    for task_id, name, expired in dropped or ():
                        self._revoked(task_id, name, expired)
                    if not claimed:
                        if not more and (due is None or due > 0.002):
                            handed = self._wait(wait_keys,
                                                IDLE_WAIT if due is None else min(due, IDLE_WAIT),
                                                sent)
                            if handed is not None:
                                self.local.append(handed)
                                self._check_missed_revokes(epoch, [handed])
                        continue
                    self.local.extend(claimed)
                    self._check_missed_revokes(epoch, claimed)
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
        for claimed in self.local:  # prefetched, never started: back to the front of the queue
            writer.add(("L", claimed.id, claimed.attempt, "", "", "", "", "", ""))
        self.local.clear()

    def _check_missed_revokes(self, epoch: int, claimed: list[Claimed]) -> None:
        """Tasks claimed across a (re)subscription: a revoke may have gone unheard."""
        if epoch != self.rt.listen_epoch:
            self.rt.check_revoked(self.client, [c.id for c in claimed])

    def _wait(self, keys: list[str], timeout: float, last: int) -> Claimed | None:
        """Block until a task is handed to our inbox (returned) or a queue's wake token.

        :param last: the number of the claim just made (it returned nothing).
        """
        self.waiting = True
        try:
            if self.rt.stopping:
                return None
            try:
                reply = self.client.blpop(keys, timeout=max(timeout, 0.01))
            except BaseException:
                # The lost reply may have carried a task popped from our inbox (claimed for us):
                # the next claim reuses the last number, so Redis returns that task, once. That
                # claim returned nothing, so nothing we hold can come back with it.
                self.seq = last
                raise
        finally:
            self.waiting = False
        if reply and reply[1] and reply[0].decode() == self.inbox:
            return parse_handed(reply[1])
        return None

    def run_one(self, claimed: Claimed) -> None:
        """Decode, run and record one claimed task."""
        rt, writer = self.rt, self.rt.writer
        reporter = Reporter(claimed.id, claimed.attempt)
        if claimed.id in rt.revoked:
            writer.finished(reporter, Outcome(states.REVOKED, describe(TaskRevokedError(
                "revoked"))))
            self._revoked(claimed.id, claimed.name, False)
            return
        try:
            body = rt.state.codecs.loads(claimed.body, claimed.ctype)
            if not isinstance(body, dict):
                raise DecodeError("malformed message: not a {id, task, args, kwargs} mapping")
            args, kwargs = body.get("args", []), body.get("kwargs", {})
            if not (isinstance(args, list) and isinstance(kwargs, dict)):
                raise DecodeError("malformed message: not a {id, task, args, kwargs} mapping")
            task = rt.jobs.tasks[claimed.name]
        except (ContentDisallowed, DecodeError, KeyError) as exc:
            reason = (f"task {claimed.name!r} is not registered on this worker"
                      if isinstance(exc, KeyError) else str(exc))
            log.error("Dead-lettering task %s[%s]: %s", claimed.name, claimed.id, reason)
            writer.add(("D", claimed.id, claimed.attempt, "", "", reason, "", claimed.name, ""))
            return
        reporter.task = task
        # One dict literal, taken over by the Context: the same attributes as keyword arguments
        # would give, at a fraction of the cost (this runs for every task). Optional fields are
        # copied from the message only if it has them (most are just {id, task, args, kwargs}).
        fields: dict[str, Any] = {
            "id": claimed.id, "task": claimed.name, "args": args, "kwargs": kwargs,
            "retries": 0, "hostname": rt.hostname, "delivery_attempt": claimed.deliveries,
            "attempt": claimed.attempt, "eta": None, "headers": {}, "group": None,
            "parent_id": None, "root_id": None, "owner": None, "time_limit": None,
            "soft_time_limit": None, "link": None, "link_error": None, "ignore_result": None,
            "called_directly": False, "reporter": reporter,
        }
        for key, value in body.items():
            if key in {"retries", "eta", "group", "parent_id", "root_id", "owner", "time_limit",
                       "soft_time_limit", "link", "link_error", "ignore_result"}:
                fields[key] = value
            elif key == "headers" and value:
                fields[key] = value
        request = Context.from_dict(fields)
        if signals.task_received.receivers:  # checked here: the kwargs cost even if unsent
            signals.send(signals.task_received, task, request=request)
        if rt.gate is None:
            self._run(claimed, task, request, reporter)
        else:
            with rt.gate.enter(claimed.suspect):
                self._run(claimed, task, request, reporter)

    def _run(self, claimed: Claimed, task: Any, request: Context, reporter: Reporter) -> None:
        """Run a decoded task and record its outcome (and send its callbacks)."""
        rt, writer = self.rt, self.rt.writer
        writer.started(reporter)
        rt.current[claimed.id] = (threading.get_ident(), self)
        slot = rt.slot
        if slot is not None:
            slot.set(claimed.id, claimed.attempt, request.time_limit or task.time_limit)
        try:
            outcome = execute(task, request, rt.app, rt.limits, rt.dump_result)
        finally:
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
        writer.finished(reporter, outcome, retry_body, ignore)
        rt.tasks_done += 1
        if outcome.state == states.SUCCESS and request.link:
            self._callbacks(request.link, (outcome.retval,))
        elif outcome.state == states.FAILURE and request.link_error:
            self._callbacks(request.link_error, (request.id,))
        if outcome.state in (states.FAILURE, states.REVOKED) and request.link:
            self._fail_chain(request.link, outcome)

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

    def _fail_chain(self, sigs: list[dict[str, Any]], outcome: Outcome) -> None:
        """The rest of a chain will never be sent: record this outcome under its ids (Celery
        does the same), so ``get()`` on the chain's result raises instead of hanging."""
        from ..canvas import chain_ids

        ids = chain_ids(sigs)
        if not ids:
            return
        try:
            self.rt.flush(self.client)  # this task's own final write lands first
            self.rt.state.broker.fail_links(ids, outcome.state, json.dumps(
                outcome.value, default=str), outcome.traceback)
        except Exception:
            log.exception("Could not record the failure of the chain after %s", ids)

    def _callbacks(self, sigs: list[dict[str, Any]], args: tuple[Any, ...]) -> None:
        from ..canvas import signature

        with self.rt.app.app_context():
            for sig in sigs:
                try:
                    s = signature(sig, app=self.rt.jobs)
                    sent = (s if s.get("immutable") else s.clone(args=args)).apply_async()
                    following = s.options.get("link")
                    if following and s.options.get("task_id") and \
                            sent.state == states.REVOKED:
                        # A chain's task revoked before the chain got to it was not sent (see
                        # placeholders.lua): the tasks after it never will be either.
                        self._fail_chain(following if isinstance(following, list) else
                                         [following], Outcome(states.REVOKED, describe(
                                             TaskRevokedError("an earlier task of its chain "
                                                              "was revoked"))))
                except Exception as exc:
                    log.exception("Could not send callback %r", sig)
                    # A chain link that cannot be sent (e.g. wrong arguments) fails as it would
                    # have run, instead of leaving the chain's result waiting for ever.
                    self._fail_chain([sig], Outcome(states.FAILURE, describe(exc), exc,
                                                    "".join(traceback.format_exception(exc))))


def flusher(runtime: Runtime) -> None:
    """Thread body: write STARTED, progress and late outcomes while tasks run.

    It sleeps until a write is due (see :meth:`Writer.wait_time`), not for a fixed tick: while a
    worker drains short tasks, whose writes all ride on its claims, it finds nothing to send.
    """
    client = runtime.state.make_client()
    writer = runtime.writer
    while not runtime.stop_event.is_set():
        runtime.stop_event.wait(writer.wait_time())
        try:
            runtime.flush(client, final=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Could not write progress (%s); will retry", exc)
            time.sleep(0.5)  # the writes were put back; Redis is down
        except Exception:
            log.exception("Flusher error")

"""The prefork pool: a supervising parent and N forked children, each a solo consumer.

The parent holds the heartbeats of every child (so a child stuck in C code or burning the CPU
keeps its leases), restarts children that die, kills a child stuck past its hard time limit or
asked to terminate a revoked task, and records those outcomes before giving the rest back.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import TaskRevokedError, TimeLimitExceeded, WorkerLostError, describe
from ..execution import Outcome, Terminated
from .consumer import Consumer, Runtime, Wakeup, flusher
from .control import LISTEN_TIMEOUT, ControlChannel, ControlListener
from .heartbeat import Heartbeat
from .limits import signal_limits
from .writer import Writer

if TYPE_CHECKING:
    from .main import Worker

log = logging.getLogger("flask_jobs.worker")
_mp = multiprocessing.get_context("fork")
#: Grace after a hard limit or a terminate before the parent kills the child.
KILL_GRACE = 2.0


class Slot:
    """What a child shares with the parent: the task it runs, its attempt, start and limit."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.task_id = _mp.RawArray(ctypes.c_char, 64)
        self.numbers = _mp.RawArray(ctypes.c_double, 3)  # attempt, started (monotonic), hard
        self.process: Any = None
        self.name = ""
        self.kill_reason: str | None = None
        self.kill_deadline: float | None = None
        #: The task a kill or terminate is aimed at; written by the parent before it signals,
        #: so neither side ever stops a task that started after the request.
        self.target = _mp.RawArray(ctypes.c_char, 64)

    def set(self, task_id: str, attempt: int, hard: float | None) -> None:
        """Called by the child when a task starts."""
        self.numbers[0] = attempt
        self.numbers[1] = time.monotonic()
        self.numbers[2] = hard or 0.0
        self.task_id.value = task_id.encode()

    def clear(self) -> None:
        """Called by the child when a task ends."""
        self.task_id.value = b""

    @property
    def running(self) -> str:
        """The id of the task the child runs, or ''."""
        return self.task_id.value.decode()


class PreforkSupervisor:
    """The parent process of the prefork pool."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.state = worker.state
        self.slots = [Slot(i) for i in range(worker.concurrency)]
        self.stop_event = threading.Event()
        self.cold = False
        self._signals_seen = 0
        self._terminate: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    # -- children ----------------------------------------------------------------------------

    def spawn(self, slot: Slot) -> None:
        """Fork a child for ``slot`` with a fresh identity."""
        slot.generation += 1
        slot.name = f"{self.worker.name}.{slot.index}-{slot.generation}"
        slot.kill_reason = slot.kill_deadline = None
        slot.target.value = b""
        slot.clear()
        process = _mp.Process(target=self._child_main, args=(slot,),
                              name=f"ForkPoolWorker-{slot.index + 1}", daemon=False)
        process.start()
        slot.process = process

    def _child_main(self, slot: Slot) -> None:
        _die_with_parent()
        w = self.worker
        rt = Runtime(w.app, slot.name, w.hostname, w.queues, w.prefetch, signal_limits,
                     max_tasks=w.max_tasks_per_child)
        rt.slot = slot  # type: ignore[attr-defined]
        consumer = Consumer(rt)
        # The parent hears revokes for terminating; the child hears them for its own buffer.
        def on_control(command: dict[str, Any]) -> None:
            if command.get("op") == "revoke":
                rt.note_revoked(str(command.get("id")))

        ears = ControlListener(ControlChannel(self.state, on_control,
                                              lambda: rt.on_listen(self.state.client)))

        def on_stop(signum: int, frame: Any) -> None:
            rt.stop_event.set()
            if consumer.waiting:
                raise Wakeup()

        def on_terminate(signum: int, frame: Any) -> None:
            target = slot.target.value.decode()
            if target and slot.running == target:
                raise Terminated()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGUSR1, on_terminate)
        threading.Thread(target=flusher, args=(rt,), daemon=True).start()
        ears.start()
        rt.wait_listening(LISTEN_TIMEOUT)
        consumer.run()
        rt.stop_event.set()
        ears.stop()
        rt.flush(self.state.client, final=True)
        self.state.broker.unregister(self.state.client, slot.name)
        os._exit(0)  # skip atexit handlers inherited from the parent

    def _record_killed(self, slot: Slot) -> None:
        """A child we killed: record its task's outcome, then give back what it held."""
        task_id = slot.running
        if task_id and slot.kill_reason and task_id == slot.target.value.decode():
            if slot.kill_reason == "revoked":
                outcome = Outcome(states.REVOKED, describe(TaskRevokedError("terminated")))
            else:
                exc = TimeLimitExceeded(f"Task ran past its time limit ({slot.numbers[2]:g}s)")
                outcome = Outcome(states.FAILURE, describe(exc), exc, repr(exc))
            write = Writer(self.state, slot.name).outcome_write(task_id, int(slot.numbers[0]),
                                                                outcome)
            self.state.broker.write(self.state.client, slot.name, [write])
        elif task_id:
            log.error("Child %s died while running %s (%s); the task will be delivered again",
                      slot.process.pid, task_id, WorkerLostError.__name__)
        if task_id:
            # The child's other tasks were prefetched and never started (or finished with the
            # outcome unsent): give them back without counting this delivery, so only the task
            # it died on moves towards JOBS_MAX_DELIVERIES, not a poison pill's neighbours.
            held = self.state.client.hgetall(self.state.keys.active(slot.name))
            writes = [("L", k.decode(), int(v), "", "", "", "", "", "")
                      for k, v in held.items() if k.decode() != task_id]
            if writes:
                self.state.broker.write(self.state.client, slot.name, writes)
        given = self.state.broker.unregister(self.state.client, slot.name)
        if given:
            log.warning("Gave back %d task(s) of child %s", given, slot.process.pid)

    # -- parent loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Start children and supervise them until stopped."""
        w = self.worker
        hb = Heartbeat(self.state, w.name, self._identities, w.info, self._control)
        for slot in self.slots:
            slot.name = ""
        # Fork before starting threads: a fork copies only the calling thread.
        for slot in self.slots:
            self.spawn(slot)
        hb.beat(self.state.client)
        hb.start()
        self._install_signals()
        from .. import signals

        signals.send(signals.worker_ready, w, hostname=w.hostname)
        log.info("%s ready.", w.hostname)
        try:
            while not self.stop_event.is_set():
                sentinels = [s.process.sentinel for s in self.slots]
                multiprocessing.connection.wait(sentinels, timeout=0.1)
                self._supervise(respawn=True)
            self._shutdown()
        finally:
            signals.send(signals.worker_shutdown, w, hostname=w.hostname)
            hb.stop()
            # After the last beat: children unregistered themselves, but a beat of ours may
            # have registered their identities again in between.
            for name in [w.name] + [slot.name for slot in self.slots if slot.name]:
                self.state.broker.unregister(self.state.client, name)
            log.info("%s stopped.", w.hostname)
        return 0

    def _identities(self) -> list[str]:
        return [self.worker.name] + [s.name for s in self.slots if s.name]

    def _supervise(self, respawn: bool) -> None:
        now = time.monotonic()
        with self._lock:
            requests, self._terminate = self._terminate, []
        for task_id, sig in requests:
            for slot in self.slots:
                if slot.running == task_id and slot.process.is_alive():
                    slot.kill_reason = "revoked"
                    slot.target.value = task_id.encode()
                    if sig == "SIGKILL":
                        slot.process.kill()
                    else:
                        os.kill(slot.process.pid, signal.SIGUSR1)
                        slot.kill_deadline = now + KILL_GRACE
        for slot in self.slots:
            p = slot.process
            if p.is_alive():
                hard = slot.numbers[2]
                if slot.running and hard and now - slot.numbers[1] > hard + KILL_GRACE:
                    log.error("Task %s ran past its hard time limit; killing child %s",
                              slot.running, p.pid)
                    slot.kill_reason = "timelimit"
                    slot.target.value = slot.running.encode()
                    p.kill()
                elif slot.kill_deadline and now > slot.kill_deadline:
                    if slot.running and slot.running == slot.target.value.decode():
                        p.kill()  # still stuck in the revoked task after the grace period
                    else:  # it stopped by itself: forget the request
                        slot.kill_reason = None
                        slot.target.value = b""
                    slot.kill_deadline = None
                continue
            p.join()
            if p.exitcode != 0:
                self._record_killed(slot)
            if respawn and not self.stop_event.is_set():
                self.spawn(slot)

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.worker.shutdown_timeout
        for slot in self.slots:
            if slot.process.is_alive():
                os.kill(slot.process.pid, signal.SIGTERM)
        while any(s.process.is_alive() for s in self.slots):
            if self.cold or time.monotonic() > deadline:
                for s in self.slots:
                    if s.process.is_alive():
                        s.process.kill()
                break
            multiprocessing.connection.wait([s.process.sentinel for s in self.slots], 0.1)
        for slot in self.slots:
            slot.process.join()
            if slot.process.exitcode != 0:
                self._record_killed(slot)

    def _install_signals(self) -> None:
        def on_stop(signum: int, frame: Any) -> None:
            self._signals_seen += 1
            if self._signals_seen > 1:
                self.cold = True
                log.warning("Cold shutdown: giving running tasks back")
            else:
                log.info("Warm shutdown: finishing running tasks (%.0fs at most); press Ctrl-C "
                         "again for a cold stop", self.worker.shutdown_timeout)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)

    def _control(self, command: dict[str, Any]) -> None:
        if command.get("op") == "revoke" and command.get("terminate"):
            with self._lock:
                self._terminate.append((str(command.get("id")), str(command.get("signal"))))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the parent dies, so no orphan keeps running."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the heartbeat lapse still recovers tasks
        pass

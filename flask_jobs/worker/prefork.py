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
from typing import Any

from .. import states
from ..connection import text
from ..exceptions import TaskRevokedError, TimeLimitExceeded, WorkerLostError, describe
from ..execution import Outcome, Terminated
from ..writes import give_back_write
from .consumer import Wakeup
from .control import LISTEN_TIMEOUT, ControlChannel, ControlListener, answer
from .heartbeat import Heartbeat
from .options import WorkerOptions
from .process import Process
from .shutdown import StopSignals
from .slot import Slot
from .writer import Writer

log = logging.getLogger("flask_jobs.worker")
_mp = multiprocessing.get_context("fork")
#: Grace after a hard limit or a terminate before the parent kills the child.
KILL_GRACE = 2.0


class PreforkSupervisor:
    """The parent process of the prefork pool.

    :param worker: the worker's options (the :class:`~flask_jobs.worker.main.Worker`).
    """

    def __init__(self, worker: WorkerOptions) -> None:
        self.worker = worker
        self.state = worker.state
        self.slots = [Slot(i) for i in range(worker.concurrency)]
        self.stop_event = threading.Event()
        self.cold = False
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
        process = Process(w.app, slot.name, w.hostname, w.queues, w.prefetch, 1,
                          w.pool_type.limits(), max_tasks=w.max_tasks_per_child)
        rt = process.rt
        rt.slot = slot
        consumer = process.consumers[0]

        # The parent hears revokes for terminating; the child hears them for its own buffer.
        def on_control(command: dict[str, Any]) -> None:
            if command.get("op") == "revoke":
                rt.note_revoked(str(command.get("id")))

        def on_stop(signum: int, frame: Any) -> None:
            rt.stop_event.set()  # (the parent decides warm or cold, and kills a cold child)
            if consumer.waiting:
                raise Wakeup()

        def on_terminate(signum: int, frame: Any) -> None:
            target = slot.target.value.decode()
            if target and slot.running == target:
                raise Terminated()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGUSR1, on_terminate)
        process.start(ControlListener(ControlChannel(self.state, on_control,
                                                     lambda: rt.on_listen(self.state.client))))
        process.wait_listening()
        consumer.run()
        process.finish(cold=False)
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
            writes = [give_back_write(text(k), int(v))
                      for k, v in held.items() if text(k) != task_id]
            if writes:
                self.state.broker.write(self.state.client, slot.name, writes)
        given = self.state.broker.unregister(self.state.client, slot.name)
        if given:
            log.warning("Gave back %d task(s) of child %s", given, slot.process.pid)

    # -- parent loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Start children and supervise them until stopped."""
        w = self.worker
        listening = threading.Event()
        hb = Heartbeat(self.state, w.name, self._identities, w.info, self._control,
                       on_listen=lambda client: listening.set(), health_file=w.health_file)
        for slot in self.slots:
            slot.name = ""
        # Fork before starting threads: a fork copies only the calling thread.
        for slot in self.slots:
            self.spawn(slot)
        w.pool_type.start_ears(hb)
        w.start_beat()  # (a thread: after the forks, as the heartbeat's)
        if not listening.wait(LISTEN_TIMEOUT):  # (ready means it hears broadcasts: ping)
            log.warning("The control channel was not subscribed within %ss", LISTEN_TIMEOUT)
        StopSignals(w.shutdown_timeout, self.stop_event.set, self._cold_stop).install()
        w.announce_ready()
        try:
            while not self.stop_event.is_set():
                sentinels = [s.process.sentinel for s in self.slots]
                multiprocessing.connection.wait(sentinels, timeout=0.1)
                self._supervise(respawn=True)
            self._shutdown()
        finally:
            w.announce_shutdown()
            hb.stop()
            # After the last beat: children unregistered themselves, but a beat of ours may
            # have registered their identities again in between.
            for name in [w.name] + [slot.name for slot in self.slots if slot.name]:
                self.state.broker.unregister(self.state.client, name)
            log.info("%s stopped.", w.hostname)
        return 0

    def _cold_stop(self) -> None:
        self.cold = True
        self.stop_event.set()

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

    def _control(self, command: dict[str, Any]) -> None:
        if command.get("op") != "revoke":
            answer(self.state, self.worker.hostname, command)
        elif command.get("terminate"):
            with self._lock:
                self._terminate.append((str(command.get("id")), str(command.get("signal"))))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the parent dies, so no orphan keeps running."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the heartbeat lapse still recovers tasks
        pass

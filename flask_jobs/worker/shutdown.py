"""Stopping: what SIGTERM and Ctrl-C do, the same for every pool.

The first SIGTERM or SIGINT asks for a **warm** stop: stop claiming, let running tasks finish
for up to :data:`JOBS_WORKER_SHUTDOWN_TIMEOUT` seconds, give prefetched tasks back to the front
of their queues, write every outcome, unregister, exit 0. A second one (or the timeout) is a
**cold** stop: running tasks are given back at once and run again on another worker. The end of
the road, writing and unregistering, is :meth:`Process.finish
<flask_jobs.worker.process.Process.finish>`.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

log = logging.getLogger("flask_jobs.worker")


class ColdShutdown(BaseException):  # noqa: N818 - not an error
    """Raised in the main thread to stop at once."""


class StopSignals:
    """Handle SIGTERM and SIGINT: the first calls ``on_warm``, any later one ``on_cold``.

    :param timeout: the warm stop's limit in seconds (for the log line).
    :param on_warm: asks the process to stop after its running tasks.
    :param on_cold: stops at once (it may raise, e.g. :class:`ColdShutdown`, to leave the main
        thread's wait).
    """

    def __init__(self, timeout: float, on_warm: Callable[[], None],
                 on_cold: Callable[[], None]) -> None:
        self.timeout = timeout
        self.on_warm = on_warm
        self.on_cold = on_cold
        #: How many stop signals came.
        self.seen = 0

    def install(self) -> None:
        """Make this the handler of SIGTERM and SIGINT (main thread only)."""
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen += 1
        if self.seen > 1:
            log.warning("Cold shutdown: giving running tasks back")
            self.on_cold()
            return
        log.info("Warm shutdown: finishing running tasks (%.0fs at most); press Ctrl-C again "
                 "for a cold stop", self.timeout)
        self.on_warm()

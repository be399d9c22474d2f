"""Signals sent by flask-jobs, as blinker signals in their own namespace.

Connect receivers with ``@task_success.connect`` (optionally ``sender=the_task``). A receiver that
raises is logged and never stops the worker. The sender is the :class:`~flask_jobs.Task` (or the
worker for ``worker_*`` signals).
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

_signals = Namespace()
log = logging.getLogger("flask_jobs")

#: A worker took a task from Redis. kwargs: ``request``.
task_received = _signals.signal("task-received")
#: Just before the task body runs, in the app context. kwargs: ``task_id``, ``args``, ``kwargs``.
task_prerun = _signals.signal("task-prerun")
#: After the body ran, whatever the outcome. kwargs: ``task_id``, ``args``, ``kwargs``,
#: ``retval``, ``state``.
task_postrun = _signals.signal("task-postrun")
#: The task returned. kwargs: ``result``.
task_success = _signals.signal("task-success")
#: The task raised. kwargs: ``task_id``, ``exception``, ``traceback``, ``args``, ``kwargs``.
task_failure = _signals.signal("task-failure")
#: The task will be retried. kwargs: ``request``, ``reason``.
task_retry = _signals.signal("task-retry")
#: A running (or prefetched) task was stopped by ``revoke(terminate=True)``, in the worker.
#: kwargs: ``request``, ``terminated``, ``expired``. Tasks revoked or expired while queued are
#: discarded inside Redis and send nothing.
task_revoked = _signals.signal("task-revoked")
#: The task reported progress or a custom state. kwargs: ``task_id``, ``state``, ``meta``.
task_progress = _signals.signal("task-progress")
#: A worker is ready to take tasks. kwargs: ``hostname``.
worker_ready = _signals.signal("worker-ready")
#: A worker is stopping. kwargs: ``hostname``.
worker_shutdown = _signals.signal("worker-shutdown")
#: Before a worker or beat sets up logging. When anyone listens, flask-jobs leaves logging to
#: them (Celery's escape hatch). kwargs: ``loglevel``, ``logfile``, ``format``.
setup_logging = _signals.signal("setup-logging")
#: After a worker or beat set up logging. kwargs: ``logger`` (the root logger), ``loglevel``,
#: ``logfile``, ``format``.
after_setup_logger = _signals.signal("after-setup-logger")


def send(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal``, logging (never raising) a receiver's error.

    Skips all work when nobody listens, so signals cost nothing on the hot path.
    """
    if not signal.receivers:
        return
    try:
        signal.send(sender, **kwargs)
    except Exception:
        log.exception("A receiver of signal %r raised; ignoring it",
                      getattr(signal, "name", signal))

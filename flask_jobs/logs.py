"""Logging as Celery's: :func:`get_task_logger`, the worker's line formats, and JSON lines.

A task logs with ``logger = get_task_logger(__name__)`` at module level, as with Celery; each
record then carries the running task's name and id (``%(task_name)s``, ``%(task_id)s``; ``???``
outside a task, as Celery). The worker prints them in Celery's two formats: its own lines as
``[time: LEVEL/Process] message``, a task's as ``[time: LEVEL/Process] name[id]: message``.
``--log-format json`` prints one JSON object per line instead, for log shippers.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

#: The task running in this thread or greenlet: ``(name, id)``, set by the executor.
current_task: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "flask_jobs_current_task", default=None)

#: The worker's own lines (Celery's ``worker_log_format``).
LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
#: Lines of task loggers (Celery's ``worker_task_log_format``).
TASK_LOG_FORMAT = ("[%(asctime)s: %(levelname)s/%(processName)s] "
                   "%(task_name)s[%(task_id)s]: %(message)s")
#: The ``--log-format`` choices.
LOG_FORMATS = ("text", "json")


class TaskFilter(logging.Filter):
    """Adds ``task_name`` and ``task_id`` of the running task to each record (``???`` when no
    task runs), for :data:`TASK_LOG_FORMAT` and JSON lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        running = current_task.get()
        record.task_name, record.task_id = running if running is not None else ("???", "???")
        return True


_TASK_FILTER = TaskFilter()


def get_task_logger(name: str) -> logging.Logger:
    """A logger for code run by tasks, as Celery's ``get_task_logger``: its records carry the
    running task's name and id, which the worker's format shows."""
    logger = logging.getLogger(name)
    if _TASK_FILTER not in logger.filters:
        logger.addFilter(_TASK_FILTER)
    return logger


class WorkerFormatter(logging.Formatter):
    """Celery's worker formats: :data:`TASK_LOG_FORMAT` for a task logger's records,
    :data:`LOG_FORMAT` for the rest."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._task = logging.Formatter(TASK_LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if hasattr(record, "task_id"):
            return self._task.format(record)
        return super().format(record)


#: LogRecord attributes that are not a caller's ``extra=`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "task_name", "task_id"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``process``,
    ``pid``, ``message``, ``task_name`` and ``task_id`` (for a task's records), ``exc_info``
    (the traceback, when there is one), and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name,
            "process": record.processName, "pid": record.process,
            "message": record.getMessage(),
        }
        if getattr(record, "task_id", "???") != "???":
            data["task_name"], data["task_id"] = record.task_name, record.task_id  # type: ignore[attr-defined]
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        return json.dumps(data, default=repr)


def configure_logging(level: str = "INFO", logfile: str | None = None,
                      log_format: str = "text") -> logging.Handler:
    """Log to stderr (or ``logfile``) at ``level``, in Celery's format or as JSON lines;
    returns the handler.

    As Celery's worker (``worker_hijack_root_logger``), the root logger's handlers are replaced,
    so each line is printed once; connect a receiver to
    :data:`~flask_jobs.signals.setup_logging` to configure logging yourself instead.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler: logging.Handler = (logging.FileHandler(logfile, encoding="utf-8") if logfile
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(JSONFormatter() if log_format == "json" else WorkerFormatter())
    handler.set_name("flask_jobs")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if old.get_name() == "flask_jobs":
            old.close()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler

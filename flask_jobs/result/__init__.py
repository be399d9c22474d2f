"""Results, as Celery's ``celery.result``: :class:`AsyncResult` (a task sent),
:class:`EagerResult` (a task run here) and :class:`GroupResult` (a group's members as one).

- :mod:`~flask_jobs.result.records`: a task record as read, failures back into exceptions;
- :mod:`~flask_jobs.result.waiting`: waiting on pub/sub for a state to be reached;
- :mod:`~flask_jobs.result.async_result`, :mod:`~flask_jobs.result.group`: the results.
"""

from .async_result import AsyncResult, EagerResult
from .group import BoundGroupResult, GroupResult
from .records import FIELDS, Record, rebuild_exception

__all__ = ["FIELDS", "AsyncResult", "BoundGroupResult", "EagerResult", "GroupResult", "Record",
           "rebuild_exception"]

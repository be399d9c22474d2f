"""A chord's body: the results of its header, read when the body runs.

The body's message carries ``chord = {"header": <group id>, "results": bool}`` (see
:mod:`flask_jobs.canvas.chord`). The script that counted the header's last task queued it; the
worker reads the header's member list, then its member records (two pipelined round trips,
one more to describe a failure): every result, in the header's order
(put in front of the body's arguments unless it is immutable), or the first failure, which fails
the body with :class:`~flask_jobs.exceptions.ChordError` instead of running it.
"""

from __future__ import annotations

from typing import Any

import redis

from .. import states
from ..connection import data, text
from ..exceptions import ChordError
from ..result import rebuild_exception
from ..state import AppState


def header_results(state: AppState, client: redis.Redis, group_id: str) -> list[Any]:
    """The results of the header ``group_id``, in order.

    :raises ChordError: a header task failed or was revoked (the first to do so, in time, is
        named, as Celery names it).
    """
    keys = state.keys
    pipe = client.pipeline(transaction=False)
    pipe.lrange(keys.group(group_id), 0, -1)
    pipe.hget(keys.counters(group_id), "fail")
    member_ids, first_failed = pipe.execute()
    ids = [text(m) for m in member_ids]
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hmget(keys.task(task_id), "state", "rtype", "result", "reason")
    rows = pipe.execute()
    failed = text(first_failed) if first_failed else None
    values: list[Any] = []
    for task_id, (state_name, rtype, result, _reason) in zip(ids, rows, strict=True):
        name = text(state_name) if state_name else None
        if name != states.SUCCESS:
            failed = failed or task_id
            continue
        values.append(None if result is None else state.codecs.loads_result(
            result, text(rtype or b"json")))
    if failed is not None:
        raise ChordError(f"Dependency {failed} raised {_error_of(state, client, failed)!r}")
    return values


def _error_of(state: AppState, client: redis.Redis, task_id: str) -> BaseException:
    """The exception a failed (or revoked, or expired) header task ended with."""
    state_name, rtype, result, reason = client.hmget(state.keys.task(task_id), "state",
                                                     "rtype", "result", "reason")
    if result is not None:
        try:
            return rebuild_exception(state.codecs.loads_result(data(result),
                                                               text(rtype or b"json")))
        except Exception:  # an undecodable value: say what is known
            pass
    what = text(state_name) if state_name else "expired"
    return Exception(text(reason) if reason else what)

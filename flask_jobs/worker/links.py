"""After a task: send its callbacks (``link``, ``link_error``) and settle the rest of its chain.

A chain is sent as its first task with the others nested in ``link`` options, each with its id
fixed in advance (see :class:`~flask_jobs.chain`). So when a task of a chain fails or is revoked,
the tasks after it will never be sent; their ids get the same outcome (as Celery does), so
``get()`` on the chain's result raises instead of waiting for ever.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import redis

from .. import states
from ..canvas import chain_ids, signature
from ..exceptions import TaskRevokedError, describe
from ..execution import Outcome
from ..request import Context
from .runtime import Runtime

log = logging.getLogger("flask_jobs.worker")


def follow(rt: Runtime, client: redis.Redis, request: Context, outcome: Outcome) -> None:
    """Act on a finished task's ``link``/``link_error`` for its outcome."""
    if outcome.state == states.SUCCESS and request.link:
        send_callbacks(rt, client, request.link, (outcome.retval,))
    elif outcome.state == states.FAILURE and request.link_error:
        send_callbacks(rt, client, request.link_error, (request.id,))
    if outcome.state in (states.FAILURE, states.REVOKED) and request.link:
        fail_chain(rt, client, request.link, outcome)


def fail_chain(rt: Runtime, client: redis.Redis, sigs: list[dict[str, Any]],
               outcome: Outcome) -> None:
    """The rest of a chain will never be sent: record ``outcome`` under its ids."""
    ids = chain_ids(sigs)
    if not ids:
        return
    try:
        rt.flush(client)  # this task's own final write lands first
        rt.state.broker.fail_links(ids, outcome.state, json.dumps(
            outcome.value, default=str), outcome.traceback)
    except Exception:
        log.exception("Could not record the failure of the chain after %s", ids)


def send_callbacks(rt: Runtime, client: redis.Redis, sigs: list[dict[str, Any]],
                   args: tuple[Any, ...]) -> None:
    """Send each signature of ``sigs`` with ``args`` in front of its own (unless immutable)."""
    with rt.app.app_context():
        for sig in sigs:
            try:
                s = signature(sig, app=rt.jobs)
                sent = (s if s.get("immutable") else s.clone(args=args)).apply_async()
                following = s.options.get("link")
                if following and s.options.get("task_id") and \
                        getattr(sent, "state", None) == states.REVOKED:
                    # A chain's task revoked before the chain got to it was not sent (see
                    # placeholders.lua): the tasks after it never will be either.
                    fail_chain(rt, client, following if isinstance(following, list) else
                               [following], Outcome(states.REVOKED, describe(TaskRevokedError(
                                   "an earlier task of its chain was revoked"))))
            except Exception as exc:
                log.exception("Could not send callback %r", sig)
                # A chain link that cannot be sent (e.g. wrong arguments) fails as it would
                # have run, instead of leaving the chain's result waiting for ever.
                fail_chain(rt, client, [sig], Outcome(states.FAILURE, describe(exc), exc,
                                                      "".join(traceback.format_exception(exc))))

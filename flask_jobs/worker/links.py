"""After a task: send the next step of its chain, its callbacks (``link``) or errbacks
(``link_error``), and settle the rest of its chain when it failed.

A chain is sent as its first task, carrying the later steps as a flat stack (its ``chain``
field, the next step last), each with its id fixed in advance (see
:class:`~flask_jobs.chain`): a task that succeeds sends the next step with its result and the
rest of the stack. When a task of a chain fails or is revoked, the steps after it will never be
sent; their ids get the same outcome (as Celery does), so ``get()`` on the chain's result
raises instead of waiting for ever. (Chains sent by older versions nest the steps in ``link``
options; those are followed too.)
"""

from __future__ import annotations

import inspect
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
from ..result import AsyncResult, rebuild_exception
from .runtime import Runtime

log = logging.getLogger("flask_jobs.worker")


def follow(rt: Runtime, client: redis.Redis, request: Context, outcome: Outcome) -> None:
    """Act on a finished task's ``chain``, ``link`` and ``link_error`` for its outcome: on
    success the next step and the callbacks, on failure the errbacks; a failed or revoked
    task's later steps get its outcome."""
    if outcome.state == states.SUCCESS:
        if request.chain:
            send_next(rt, client, request.chain, outcome.retval)
        if request.link:
            sent = send_callbacks(rt, client, request.link, (outcome.retval,))
            if sent and request.id:
                record_children(rt, client, request.id, sent)
        return
    if outcome.state == states.FAILURE and request.link_error:
        run_errbacks(rt, client, request, outcome)
    if outcome.state in (states.FAILURE, states.REVOKED):
        if request.chain:
            fail_chain(rt, client, request.chain, outcome)
        if request.link:
            fail_chain(rt, client, request.link, outcome)


def send_next(rt: Runtime, client: redis.Redis, stack: list[dict[str, Any]],
              retval: Any) -> None:
    """Send the next step of a chain (the last of ``stack``) with ``retval`` in front of its
    arguments, and the rest of the stack with it."""
    rest = list(stack)
    step = rest.pop()
    with rt.app.app_context():
        try:
            s = signature(step, app=rt.jobs)
            sent = (s if s.immutable else s.clone(args=(retval,))).apply_async(
                **({"chain": rest} if rest else {}))
            if rest and isinstance(sent, AsyncResult) and \
                    sent.known_state() == states.REVOKED:
                # A chain's step revoked before the chain got to it is not sent (see
                # enqueue.lua): the steps after it never will be either.
                fail_chain(rt, client, rest, Outcome(states.REVOKED, describe(TaskRevokedError(
                    "an earlier task of its chain was revoked"))))
        except Exception as exc:
            log.exception("Could not send the next step of a chain, %r", step.get("task"))
            # A step that cannot be sent (e.g. wrong arguments) fails as it would have run,
            # with the rest of the chain, instead of leaving the chain's result waiting.
            fail_chain(rt, client, stack, Outcome(states.FAILURE, describe(exc), exc,
                                                  "".join(traceback.format_exception(exc))))


def takes_request(task: Any) -> bool:
    """Whether ``task`` is an errback of Celery's first style, ``(request, exc, traceback)``:
    a task that is not bound and takes more than one positional argument."""
    if getattr(task, "bind", False):
        return False
    try:
        spec = inspect.getfullargspec(task.run)
    except TypeError:
        return False
    return bool(spec.varargs) or len(spec.args) > 1


def run_errbacks(rt: Runtime, client: redis.Redis, request: Context, outcome: Outcome) -> None:
    """Celery's two errback styles: one registered here that takes ``(request, exc,
    traceback)`` is called in this worker with them; any other is sent as a task with the
    failed task's id."""
    queued = []
    with rt.app.app_context():
        for sig in request.link_error or ():
            task = rt.jobs.tasks.get(str(sig.get("task")))
            if task is None or sig.get("subtask_type") or not takes_request(task):
                queued.append(sig)
                continue
            exc = outcome.exception or rebuild_exception(outcome.value)
            try:
                signature(sig, app=rt.jobs)(request, exc, outcome.traceback)
            except Exception:
                log.exception("Errback %s of task %s raised", sig.get("task"), request.id)
    if queued:
        send_callbacks(rt, client, queued, (request.id,))


def record_children(rt: Runtime, client: redis.Redis, task_id: str, sent: list[Any]) -> None:
    """Keep the ids of the callbacks a task sent in its record (``AsyncResult.children``).
    A chain's next step is not recorded: its result links back with ``parent`` already."""
    ids = [r.id for r in sent]
    if ids:
        try:
            client.hset(rt.state.keys.task(task_id), "children", json.dumps(ids))
        except Exception:
            log.exception("Could not record the callbacks of task %s", task_id)


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
                   args: tuple[Any, ...]) -> list[Any]:
    """Send each signature of ``sigs`` with ``args`` in front of its own (unless immutable);
    returns the results of those that are not a chain's next step."""
    children = []
    with rt.app.app_context():
        for sig in sigs:
            try:
                s = signature(sig, app=rt.jobs)
                sent = (s if s.get("immutable") else s.clone(args=args)).apply_async()
                if not s.options.get("task_id") and isinstance(sent, AsyncResult):
                    children.append(sent)
                following = s.options.get("link")
                if following and s.options.get("task_id") and isinstance(sent, AsyncResult) \
                        and sent.known_state() == states.REVOKED:
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
    return children

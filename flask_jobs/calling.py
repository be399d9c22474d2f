"""The producer path: a call becomes a message in Redis (or an eager run) and a result.

``Task.apply_async``, ``Jobs.send_task`` and every canvas primitive send through here, so the
steps are written once: build and check the message(s) (:func:`~flask_jobs.message.build_message`),
queue them atomically (:meth:`~flask_jobs.broker.Broker.enqueue`), and hand back the result
object. With :data:`JOBS_ALWAYS_EAGER` on (read at each call), a call is checked as a real send
would be and then run here instead.

The path of ``add.delay(2, 2)``: ``task.py`` (``Task.apply_async``) -> ``calling.py``
(:func:`send`) -> ``message.py`` (``build_message``) -> ``broker.py`` (``Broker.enqueue``, one
``EVALSHA`` of ``scripts/enqueue.lua`` over ``direct.py``'s connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import tracing
from .eager import run_eagerly
from .exceptions import NotRegistered
from .message import Message, build_message
from .request import TaskLike
from .result import AsyncResult, EagerResult
from .state import AppState


def send(state: AppState, task: TaskLike | None, name: str, args: Iterable[Any] | None,
         kwargs: dict[str, Any] | None, options: dict[str, Any]) -> AsyncResult:
    """Send one call of task ``name`` and return its result.

    :param task: the registered task, or None to send by name a task this process does not
        know (only the worker needs it).
    :param options: :meth:`~flask_jobs.Task.apply_async`'s options.
    :raises NotRegistered: eager mode is on and the task is not registered here.
    """
    if state.settings.always_eager:
        if task is None:
            raise NotRegistered(name)
        # The checks of a real send (options, arguments, encoding, size), so code that passes
        # in eager tests does not fail in production.
        build_message(state.settings, state.codecs, task, name, args, kwargs, **options)
        return apply_eagerly(state, task, args, kwargs, options)
    if tracing.on():
        # The message is built inside the publish span, so the trace context it carries is
        # this span's: the worker's process span is its child.
        queue = options.get("queue") or state.settings.route(
            name, task.queue if task is not None else None)
        with tracing.publish_span(name, queue) as span:
            message = build_message(state.settings, state.codecs, task, name, args, kwargs,
                                    **options)
            tracing.set_message_id(span, message.id)
            queued = state.broker.enqueue((message,), options.get("group_id") or "")
    else:  # (no context manager on the hot path)
        message = build_message(state.settings, state.codecs, task, name, args, kwargs,
                                **options)
        queued = state.broker.enqueue((message,), options.get("group_id") or "")
    result = AsyncResult(message.id, jobs=state.jobs, app=state.app, task_name=name)
    if not queued:  # its id was taken: a chain's step revoked already, or a dedup key's holder
        result.exists()  # (one read, rare: a final state is kept, see known_state)
    return result


def send_messages(state: AppState, messages: Sequence[Message], group_id: str,
                  group_size: int, ids: list[str]) -> None:
    """Queue a group's messages in one round trip.

    :param group_size: the group's size when it is sent here in full (its member list and
        counters are written with it); 0 when they were written already (a chord's header).
    :param ids: the id each message goes under, in order: given (a chord's header, whose ids
        were listed first), or an empty list, filled here (a message object that comes more
        than once, a signature repeated in a group encoded once, gets a fresh id each time
        after the first; see :meth:`~flask_jobs.broker.Broker.enqueue`).
    """
    state.broker.enqueue(messages, group_id, ids, group_size)


def apply_eagerly(state: AppState, task: TaskLike, args: Iterable[Any] | None,
                  kwargs: dict[str, Any] | None, options: dict[str, Any]) -> EagerResult:
    """Run a call here and now (``Task.apply``); ``options`` may name the ``task_id``."""
    options = dict(options)
    task_id = options.pop("task_id", None)
    return run_eagerly(state, task, list(args or ()), dict(kwargs or {}), task_id, options)

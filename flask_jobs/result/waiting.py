"""Waiting for a result on Redis pub/sub, not by polling.

A result (a task's, a group's) has a channel its state changes are published on. The waiter
subscribes, waits for Redis to confirm, then checks the state: a change published before the
check is seen by the check, one published after it wakes the wait. Each thread keeps one
pub/sub connection per app for all its waits.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from ..exceptions import TimeoutError
from ..state import AppState

T = TypeVar("T")

#: How long one wait lasts before the state is checked again anyway: a safety net if a message
#: was lost to a reconnect, not a polling interval.
SLICE = 2.0


class _Waiter(threading.local):
    """A per-thread pub/sub connection reused by every wait in that thread."""

    pubsub: Any = None


#: Per app state (weakly: the connection goes with the app), a per-thread pub/sub.
_waiters: weakref.WeakKeyDictionary[AppState, _Waiter] = weakref.WeakKeyDictionary()


def wait_on(st: AppState, channel_key: str, check: Callable[[], T | None],
            wakes: Callable[[bytes], bool], timeout: float | None, what: str) -> T:
    """Return the first value of ``check()`` that is not None, checking after subscribing to
    ``channel_key`` and again each time a message for which ``wakes(data)`` is true arrives.

    :param timeout: seconds to wait at most; None waits for ever.
    :param what: names what is waited for, in the error.
    :raises TimeoutError: ``check()`` was still None after ``timeout`` seconds.
    """
    waiter = _waiters.setdefault(st, _Waiter())
    if waiter.pubsub is None:
        waiter.pubsub = st.make_client(blocking=True).pubsub()
    pubsub = waiter.pubsub
    channel = channel_key.encode()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for fresh in (False, True):
            if fresh:
                # The cached connection broke since the last wait (Redis restarted): once more
                # on a new one, so a wait after a Redis restart does not fail.
                pubsub.close()
                waiter.pubsub = pubsub = st.make_client(blocking=True).pubsub()
            try:
                pubsub.subscribe(channel)
                _confirm(pubsub, channel)
                break
            except (redis.ConnectionError, redis.TimeoutError):
                if fresh:
                    raise
        while True:
            value = check()
            if value is not None:
                return value
            slice_end = time.monotonic() + SLICE
            if deadline is not None:
                slice_end = min(slice_end, deadline)
            while True:
                left = slice_end - time.monotonic()
                if left <= 0:
                    break
                message = pubsub.get_message(timeout=left)
                if message is not None and message["type"] == "message" and (
                        message["channel"] == channel and wakes(message["data"])):
                    break
            if deadline is not None and time.monotonic() >= deadline:
                value = check()
                if value is not None:
                    return value
                raise TimeoutError(f"{what} did not finish within {timeout}s")
    except BaseException:
        # A broken or interrupted wait leaves the connection in an unknown state.
        pubsub.close()
        waiter.pubsub = None
        raise
    finally:
        if waiter.pubsub is not None:
            pubsub.unsubscribe(channel)


def _confirm(pubsub: Any, channel: bytes) -> None:
    """Wait for Redis to confirm the subscription before the caller reads the state: the read
    goes over another connection, and without this a change published between the two could
    be missed."""
    confirm_by = time.monotonic() + 5.0
    while True:
        message = pubsub.get_message(timeout=max(0.0, confirm_by - time.monotonic()))
        if message is None:
            if time.monotonic() >= confirm_by:
                return  # the slices re-read the state anyway
            continue
        if message["type"] == "subscribe" and message["channel"] == channel:
            return

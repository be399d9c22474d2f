"""Hearing broadcasts (revoke) on the control channel, and not missing one while deaf.

A broadcast reaches only the workers subscribed when it is published. A task revoked while a
worker was not yet (or no longer) subscribed, after that worker had claimed it into a prefetch
buffer, would run anyway. So each time a subscription is confirmed by Redis, the worker reads
the records of the tasks in its buffers and skips those revoked meanwhile (see
:meth:`~flask_jobs.worker.consumer.Runtime.on_listen`). Redis records the revoke before it
publishes it, so a revoke is either in a record read after the confirmation or in a message
received after it.

A connection can also die without a word: a NAT, firewall or load balancer that drops an idle
connection sends no reset, and a listener would then wait for broadcasts that never come while
every other connection of the worker works. So a subscription that has heard nothing for
:data:`PING_AFTER` seconds is sent a ``PING``, and one whose ``PING`` goes unanswered for
:data:`JOBS_BROKER_TIMEOUT` is dropped and made again (which checks the buffers, as above).
The pings also keep the connection from looking idle to whatever would drop it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from ..state import AppState

log = logging.getLogger("flask_jobs.worker")

#: Longest a worker waits, before its first claim, for its broadcast subscription (seconds).
LISTEN_TIMEOUT = 10.0
#: Seconds of silence on a control subscription after which it is sent a ``PING``.
PING_AFTER = 10.0


#: How long a broadcast's replies wait for the caller (ms).
REPLY_TTL_MS = 60_000


def answer(state: AppState, hostname: str, command: dict[str, Any]) -> bool:
    """Reply to a broadcast that asks for replies (``ping``), if it is meant for ``hostname``;
    returns whether this worker answered.

    The reply goes to the list the caller named, if it is a reply list of this app's prefix
    (a command cannot make a worker write any other key).
    """
    destination = command.get("destination")
    if destination and hostname not in destination:
        return False
    key = command.get("reply")
    if command.get("op") != "ping" or not isinstance(key, str) or not key.startswith(
            state.keys.reply("")):
        return False
    pipe = state.client.pipeline(transaction=False)
    pipe.rpush(key, json.dumps({hostname: {"ok": "pong"}}))
    pipe.pexpire(key, REPLY_TTL_MS)
    pipe.execute()
    return True


class ControlChannel:
    """A subscription to the control channel, made again after a lost connection.

    :param on_control: called with each broadcast command (a dict), e.g. a revoke.
    :param on_listen: called each time Redis confirms the subscription (at first and after
        every reconnection), before any message published after it is handled.
    """

    def __init__(self, state: AppState, on_control: Callable[[dict[str, Any]], None],
                 on_listen: Callable[[], None] | None = None) -> None:
        self.state = state
        self.on_control = on_control
        self.on_listen = on_listen
        self._pubsub: Any = None
        #: How long a PING may go unanswered before the connection is taken for dead.
        self.pong_timeout = state.settings.broker_timeout
        self._heard = 0.0  # time.monotonic() of the last thing Redis sent us
        self._pinged: float | None = None  # ... of our unanswered PING, if one is out

    def poll(self, timeout: float) -> None:
        """Subscribe if needed, then handle what arrives within ``timeout`` seconds.

        :raises redis.ConnectionError: the connection was lost, or went silent (a ``PING``
            unanswered); the next poll subscribes again.
        """
        if self._pubsub is None:
            # Subscription replies are kept (not ignored): the confirmation is the moment from
            # which no broadcast can be missed.
            self._pubsub = self.state.make_client(blocking=True).pubsub()
            self._pubsub.subscribe(self.state.keys.control)
            self._heard, self._pinged = time.monotonic(), None
        try:
            now = time.monotonic()
            if self._pinged is not None:
                if now - self._pinged >= self.pong_timeout:
                    raise redis.ConnectionError(
                        f"no reply to PING on the control subscription within "
                        f"{self.pong_timeout:g}s (a connection dropped silently?); subscribing "
                        "again")
                timeout = min(timeout, self._pinged + self.pong_timeout - now)
            elif now - self._heard >= PING_AFTER:
                self._pubsub.ping()
                self._pinged = now
                timeout = min(timeout, self.pong_timeout)
            else:
                timeout = min(timeout, self._heard + PING_AFTER - now)
            message = self._pubsub.get_message(timeout=max(0.0, timeout))
            while message is not None:
                self._heard, self._pinged = time.monotonic(), None
                kind = message.get("type")
                if kind == "subscribe":
                    if self.on_listen is not None:
                        self.on_listen()
                elif kind == "message":
                    self._dispatch(message["data"])
                message = self._pubsub.get_message(timeout=0)
        except (redis.ConnectionError, redis.TimeoutError):
            self.close()
            raise

    def close(self) -> None:
        """Drop the subscription (the next :meth:`poll` makes a new one)."""
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # closing a broken connection: nothing left to do
                pass
            self._pubsub = None

    def _dispatch(self, data: bytes) -> None:
        try:
            command = json.loads(data)
        except ValueError:
            log.warning("Ignoring an undecodable control message")
            return
        if not isinstance(command, dict):
            log.warning("Ignoring a control message that is not an object")
            return
        try:
            self.on_control(command)
        except Exception:
            log.exception("Control command %r failed", command)


class ControlListener(threading.Thread):
    """A thread that only listens on the control channel (a prefork child's ears: the parent's
    heartbeat thread listens for the parent, but a child's prefetch buffer is its own)."""

    def __init__(self, channel: ControlChannel) -> None:
        super().__init__(name="flask-jobs-control", daemon=True)
        self.channel = channel
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Thread body: poll until stopped, backing off while Redis is unreachable."""
        backoff = 0.0
        while not self.stop_event.is_set():
            try:
                self.channel.poll(1.0)
                backoff = 0.0
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                backoff = min(5.0, backoff * 2 or 0.1)
                log.warning("Control channel: Redis unavailable (%s)", exc)
                self.stop_event.wait(backoff)
            except Exception:
                log.exception("Control channel error")
                self.stop_event.wait(1.0)
        self.channel.close()

    def stop(self) -> None:
        """Ask the thread to stop (it exits within a second)."""
        self.stop_event.set()

"""The SSE hub: one Redis pub/sub connection per process for all open event streams of an app.

Without it each ``/events/`` stream would hold its own pub/sub connection and read the status
itself on every notification: 200 viewers of one task would mean 200 subscriptions and 200 reads
per change. The hub of an app (one per :class:`~flask_jobs.state.AppState` and process):

- subscribes to a channel while at least one local stream follows it, and unsubscribes when
  the last one leaves;
- reads the status of a followed id once per change, not once per stream, and hands the
  rendered event to every stream of that id (:class:`Update`);
- confirms each subscription before the stream's first read, so no change can fall between
  the two;
- reconnects when its connection drops, subscribes again to every channel, and re-reads every
  followed id, which makes up for a notification lost meanwhile.

Its listener is a daemon thread: under gevent's monkey patching it is a greenlet, and the
``threading`` locks and events used here wait cooperatively. The listener starts with the first
stream and closes the connection :data:`LINGER` seconds after the last one ended. A hub belongs
to the process that made it: a forked child makes its own.

The hub only moves notifications and rendered events; what a read is (``lookup`` and the SSE
rendering) is the ``read`` callable the web layer gives :func:`hub_for`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from .state import AppState

log = logging.getLogger("flask_jobs.sse_hub")

#: A redis-py connection (``redis.connection.Connection``), talked to with its public
#: methods; Any, because redis-py leaves those methods unannotated.
Connection = Any

#: Seconds the hub keeps its connection open after the last stream ended, so a page that
#: starts its next task at once doesn't pay for a new connection.
LINGER = 1.0
#: Seconds of silence on the connection before the hub sends a ``PING``. If nothing comes back
#: within ``JOBS_BROKER_TIMEOUT`` more, the connection is taken for dead and replaced.
PING_INTERVAL = 30.0
#: Longest pause between two attempts to reconnect (the pause doubles from 0.05 s).
MAX_BACKOFF = 2.0
#: Seconds before an id whose read failed is read again.
RETRY_READ = 0.5
#: Most replies read in one go before acting on them: a burst becomes one read per id.
_DRAIN_LIMIT = 10000
#: The hub's connection name in ``CLIENT LIST``.
CLIENT_NAME = "flask-jobs:sse-hub"

#: Channels per ``SUBSCRIBE`` when subscribing again after a reconnect.
_SUBSCRIBE_CHUNK = 1000
_ERRORS = (redis.RedisError, OSError, ValueError)


@dataclass(frozen=True)
class Update:
    """One read of a followed id, rendered once for every stream of that id."""

    #: What a client needs to see again: two updates with equal fingerprints are one event.
    fingerprint: str
    #: The SSE event to send (``id:`` and ``data:`` lines); empty when the id is gone.
    chunk: bytes
    #: Nothing will change any more: a stream ends after sending it.
    final: bool


#: The update of an id that is not known any more (forgotten, or its result expired).
GONE = Update("", b"", True)

#: Reads the status of an id (in the app context) and renders it: the web layer's ``lookup``.
Reader = Callable[[str], Update]


class _Topic:
    """An id followed by local streams: its channels, its followers and its latest read."""

    def __init__(self, ident: str, channels: Iterable[str], min_interval: float) -> None:
        self.ident = ident
        self.channels = tuple(dict.fromkeys(channels))
        self.min_interval = min_interval
        self.followers: set[Follower] = set()
        # Reads of one id are serialised: a read that starts later sees a newer state, so the
        # read number (seq) orders updates and a stream never goes back to an older one.
        self.read_lock = threading.Lock()
        self.seq = 0
        self.latest: Update | None = None
        self.read_started = float("-inf")
        self.sent_fingerprint: str | None = None
        #: When the listener should read it (a change was notified); None: nothing pending.
        self.due: float | None = None

    def refresh(self, hub: Hub, not_before: float | None) -> tuple[int, Update]:
        """Read the id, or reuse the latest read if it started at ``not_before`` or later.

        A read whose fingerprint differs from the last one handed out goes to every follower.
        """
        with self.read_lock:
            if not_before is not None and self.latest is not None and self.read_started >= not_before:
                return self.seq, self.latest
            started = time.monotonic()
            update = hub.read(self.ident)
            self.seq += 1
            self.latest, self.read_started = update, started
            if update.fingerprint != self.sent_fingerprint:
                self.sent_fingerprint = update.fingerprint
                with hub.lock:
                    followers = list(self.followers)
                # Still under the read lock: updates reach each follower in read order.
                for follower in followers:
                    follower._offer(self.seq, update)
            return self.seq, update


class Follower:
    """One stream's subscription to an id: the newest update it has not taken yet.

    Made by :meth:`Hub.follow`; :meth:`close` it when the stream ends (idempotent).
    """

    def __init__(self, hub: Hub, topic: _Topic) -> None:
        self._hub = hub
        self._topic = topic
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._seq = 0  # the read number of the newest update this stream has taken
        self._pending: Update | None = None
        self._pending_seq = 0
        #: Monotonic time at which Redis had confirmed the subscriptions.
        self.confirmed_at = float("inf")
        #: Set by :meth:`close`.
        self.closed = False

    def _offer(self, seq: int, update: Update) -> None:
        with self._lock:
            if seq > self._seq and seq > self._pending_seq:
                self._pending, self._pending_seq = update, seq
                self._ready.set()

    def refresh(self, not_before: float | None = None) -> Update:
        """The status read now, or by a read of the same id that started at ``not_before`` or later.

        By default a read that started after the subscription was confirmed, which makes
        "subscribe, then read" race-free. Other streams of the id get the update too if it
        changed.

        :raises redis.RedisError: the read failed.
        """
        seq, update = self._topic.refresh(self._hub, self.confirmed_at if not_before is None
                                          else not_before)
        with self._lock:
            self._seq = max(self._seq, seq)
            if self._pending_seq <= self._seq:  # an older update waiting: superseded
                self._pending = None
                self._ready.clear()
        return update

    def wait(self, timeout: float) -> Update | None:
        """The next update handed to this stream, or None after ``timeout`` seconds (or close)."""
        if not self._ready.wait(max(0.0, timeout)):
            return None
        with self._lock:
            update, self._pending = self._pending, None
            self._ready.clear()
            if update is not None:
                self._seq = self._pending_seq
        return update

    def close(self) -> None:
        """Stop following: the hub unsubscribes when this was the id's last stream."""
        if not self.closed:
            self.closed = True
            self._hub._leave(self)
        self._ready.set()  # a wait() in another thread returns now


class Hub:
    """The pub/sub connection of one app in one process, shared by all its event streams.

    Use :func:`hub_for` rather than making one.

    :param state: the app's :class:`~flask_jobs.state.AppState` (its Redis and config).
    :param read: reads and renders the status of an id; called in the app context.
    """

    def __init__(self, state: AppState, read: Reader) -> None:
        #: The process that made the hub (a forked child must make its own).
        self.pid = os.getpid()
        self._read = read
        # Weak: the hub is kept in a WeakKeyDictionary keyed by the state, and must not keep
        # the app alive.
        self._app = weakref.ref(state.app)
        pool = state.client.connection_pool
        # A connection of its own (same address, auth, TLS and db as the app's client), not
        # one of the pool's: it stays subscribed, and only this hub reads from it.
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        # Named, so operators (and tests) can tell it apart in CLIENT LIST.
        self._connection_kwargs["client_name"] = CLIENT_NAME
        self._timeout = state.settings.broker_timeout
        #: Guards the followers, channels and the connection; every send holds it.
        self.lock = threading.Lock()
        self._answered = threading.Condition(self.lock)
        self._topics: dict[str, _Topic] = {}
        self._channels: dict[str, set[_Topic]] = {}
        self._conn: Connection = None  # (None while disconnected)
        self._listener: threading.Thread | None = None
        # Every batch of commands ends with a PING carrying its number; Redis answers in
        # order, so once PING n is answered, everything sent before it is in effect.
        self._sent = 0
        self._answered_up_to = 0
        self._resync_at: int | None = None  # re-read every id once this PING is answered
        self._lost = False  # a connection with subscriptions was lost: resync on the next one
        self._due: set[_Topic] = set()  # the listener's: ids with a change to read

    # -- streams ---------------------------------------------------------------------------

    def follow(self, ident: str, channels: Sequence[str], min_interval: float = 0.0) -> Follower:
        """Follow ``ident``, whose changes are published on ``channels``, until closed.

        Returns once Redis has confirmed the subscriptions: a read made afterwards cannot miss
        a change. Streams of the same id share one subscription and one read per change.

        :param min_interval: read the id at most once per this many seconds (groups).
        :raises redis.TimeoutError: no confirmation within ``JOBS_BROKER_TIMEOUT``.
        """
        with self.lock:
            topic = self._topics.get(ident)
            if topic is None:
                topic = self._topics[ident] = _Topic(ident, channels, min_interval)
                new = []
                for channel in topic.channels:
                    topics = self._channels.setdefault(channel, set())
                    if not topics:
                        new.append(channel)
                    topics.add(topic)
                if new and self._conn is not None:
                    self._send_locked([("SUBSCRIBE", *new)])
            follower = Follower(self, topic)
            topic.followers.add(follower)
            # The latest PING went after every subscription of a channel still wanted. With no
            # connection, the next one goes after the listener subscribes to them all.
            target = self._sent if self._conn is not None else self._sent + 1
            if self._listener is None:
                self._listener = threading.Thread(target=self._run, name="flask-jobs-sse-hub",
                                                  daemon=True)
                self._listener.start()
            try:
                confirmed = self._answered.wait_for(lambda: self._answered_up_to >= target,
                                                    self._timeout)
                if not confirmed:
                    raise redis.TimeoutError(
                        "Redis did not confirm the subscription of an event stream within "
                        f"{self._timeout} s (JOBS_BROKER_TIMEOUT); the client will retry.")
            except BaseException:  # also a greenlet killed while waiting: don't leak it
                follower.closed = True
                self._leave_locked(follower)
                raise
        follower.confirmed_at = time.monotonic()
        return follower

    def read(self, ident: str) -> Update:
        """Read and render ``ident`` with the web layer's reader."""
        return self._read(ident)

    def _leave(self, follower: Follower) -> None:
        with self.lock:
            self._leave_locked(follower)

    def _leave_locked(self, follower: Follower) -> None:
        topic = follower._topic
        topic.followers.discard(follower)
        if topic.followers or self._topics.get(topic.ident) is not topic:
            return
        del self._topics[topic.ident]
        gone = []
        for channel in topic.channels:
            topics = self._channels.get(channel)
            if topics is not None:
                topics.discard(topic)
                if not topics:
                    del self._channels[channel]
                    gone.append(channel)
        if gone and self._conn is not None:
            self._send_locked([("UNSUBSCRIBE", *gone)])

    def stats(self) -> dict[str, int]:
        """Followed ids, subscribed channels and open streams (for tests and debugging)."""
        with self.lock:
            return {"ids": len(self._topics), "channels": len(self._channels),
                    "streams": sum(len(t.followers) for t in self._topics.values()),
                    "connected": int(self._conn is not None)}

    # -- the connection --------------------------------------------------------------------

    def _send_locked(self, commands: list[tuple[Any, ...]]) -> None:
        """Send ``commands`` and a numbered PING in one write (the lock is held)."""
        conn = self._conn
        assert conn is not None
        self._sent += 1
        packed = conn.pack_commands([*commands, ("PING", str(self._sent))])
        try:
            conn.send_packed_command(packed, check_health=False)
        except _ERRORS as exc:
            # The listener sees the closed socket and reconnects; waiters are answered then.
            log.info("SSE hub: sending to Redis failed (%s); reconnecting", exc)
            self._drop_locked(conn)

    def _drop_locked(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
            if self._channels:
                self._lost = True
        conn.disconnect()

    def _connect(self) -> Connection:
        conn = self._connection_class(**self._connection_kwargs)
        conn.connect()  # outside the lock: it may take up to the connect timeout
        with self.lock:
            self._conn = conn
            channels = list(self._channels)
            self._send_locked([("SUBSCRIBE", *channels[i:i + _SUBSCRIBE_CHUNK])
                               for i in range(0, len(channels), _SUBSCRIBE_CHUNK)])
            if self._lost:
                # Notifications sent while we were away are lost: read everything again once
                # the subscriptions are back.
                self._lost = False
                self._resync_at = self._sent
        return conn

    # -- the listener ----------------------------------------------------------------------

    def _run(self) -> None:
        """Receive notifications, read what changed, hand it out; reconnect on errors."""
        failures = 0
        idle_since: float | None = None
        heard = pinged = time.monotonic()  # the last reply from Redis, and our last PING
        while True:
            now = time.monotonic()
            stop, idle_since = self._stop_when_idle(idle_since, now)
            if stop:
                return
            conn = self._conn
            if conn is None:
                if failures:  # don't hammer a Redis that is restarting
                    time.sleep(min(MAX_BACKOFF, 0.05 * 2 ** (failures - 1)))
                try:
                    conn = self._connect()
                except _ERRORS as exc:
                    failures += 1
                    log.warning("SSE hub: cannot connect to Redis (%s); retrying", exc)
                    continue
                heard = pinged = time.monotonic()
            elif pinged > heard and now - pinged > self._timeout:
                failures += 1
                self._lose(conn, f"no answer to PING within {self._timeout} s")
                continue
            elif now - heard >= PING_INTERVAL and pinged <= heard:
                with self.lock:  # a quiet connection: check that it is still there
                    if self._conn is conn:
                        self._send_locked([])
                pinged = now
            wake = [heard + PING_INTERVAL if pinged <= heard else pinged + self._timeout]
            wake += [topic.due for topic in self._due if topic.due is not None]
            if idle_since is not None:
                wake.append(idle_since + LINGER)
            try:
                replies = self._receive(conn, max(0.0, min(wake) - time.monotonic()))
            except _ERRORS as exc:
                failures += 1
                self._lose(conn, exc)
                continue
            if replies:
                heard, failures = time.monotonic(), 0
            for reply in replies:
                self._handle(reply)
            self._read_due()

    def _stop_when_idle(self, idle_since: float | None, now: float) -> tuple[bool, float | None]:
        """Whether the listener should end (and its connection close), and since when it idles.

        Decided under the lock, so a stream that arrives meanwhile either finds the listener
        still running or starts a new one.
        """
        with self.lock:
            if self._channels:
                return False, None
            idle_since = now if idle_since is None else idle_since
            if now - idle_since >= LINGER or self._conn is None or self._app() is None:
                self._listener = None
                if self._conn is not None:
                    self._drop_locked(self._conn)
                return True, idle_since
            return False, idle_since

    def _lose(self, conn: Connection, reason: object) -> None:
        with self.lock:
            if conn is self._conn and self._channels:
                log.warning("SSE hub: lost the Redis connection (%s); reconnecting", reason)
            self._drop_locked(conn)

    def _receive(self, conn: Connection, timeout: float) -> list[Any]:
        if conn is not self._conn:  # dropped by a failed send: don't let can_read reconnect it
            raise redis.ConnectionError("connection closed")
        if not conn.can_read(timeout=timeout):
            return []
        replies = [conn.read_response(disconnect_on_error=False, push_request=True)]
        while len(replies) < _DRAIN_LIMIT and conn.can_read(timeout=0):
            replies.append(conn.read_response(disconnect_on_error=False, push_request=True))
        return replies

    def _handle(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = _text(reply[0])
            if kind == "message":
                now = time.monotonic()
                with self.lock:
                    topics = list(self._channels.get(_text(reply[1]), ()))
                for topic in topics:
                    if topic.due is None:
                        topic.due = max(now, topic.read_started + topic.min_interval)
                        self._due.add(topic)
                return
            if kind != "pong" or len(reply) < 2:
                return  # a subscribe or unsubscribe confirmation
            token = reply[1]
        else:
            token = reply  # PING on a connection subscribed to nothing: a plain reply
        try:
            number = int(_text(token))
        except ValueError:
            return
        with self.lock:
            if number > self._answered_up_to:
                self._answered_up_to = number
                self._answered.notify_all()
            resync = self._resync_at is not None and number >= self._resync_at
            if resync:
                self._resync_at = None
                topics = list(self._topics.values())
        if resync:
            now = time.monotonic()
            for topic in topics:
                topic.due = now
                self._due.add(topic)

    def _read_due(self) -> None:
        now = time.monotonic()
        due = [t for t in self._due if t.due is not None and t.due <= now]
        if not due:
            return
        app = self._app()
        if app is None:
            return
        with app.app_context():
            for topic in due:
                self._due.discard(topic)
                topic.due = None  # cleared first: a message during the read marks it again
                if not topic.followers:
                    continue
                try:
                    topic.refresh(self, None)
                except Exception as exc:
                    log.warning("SSE hub: reading %s failed (%s); trying again", topic.ident, exc,
                                exc_info=not isinstance(exc, _ERRORS))
                    topic.due = time.monotonic() + RETRY_READ
                    self._due.add(topic)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_hubs: weakref.WeakKeyDictionary[AppState, Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def hub_for(state: AppState, read: Reader) -> Hub:
    """The hub of ``state``'s app in this process, made on first use.

    :param read: used when the hub is made; later calls get the existing hub.
    """
    hub = _hubs.get(state)
    if hub is None or hub.pid != os.getpid():
        with _hubs_lock:
            hub = _hubs.get(state)
            if hub is None or hub.pid != os.getpid():
                hub = _hubs[state] = Hub(state, read)
    return hub


def _after_fork_in_child() -> None:
    # The parent's hubs share its sockets and their listener threads don't exist here; leave
    # them alone (no close: that would cut the parent's connection) and start afresh.
    global _hubs_lock
    _hubs_lock = threading.Lock()
    _hubs.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)

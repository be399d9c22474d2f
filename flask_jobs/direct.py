"""A lean path to Redis for the producer's hot commands (enqueue one task, send a bulk).

redis-py's client path (pool checkout and release, observability hooks, retry wrapper) costs
about 30 µs per command on the benchmark machine, as much as the network round trip itself.
Sending a task is one script call, so that overhead alone would cost a third of the enqueue
rate. :class:`DirectLine` keeps a few redis-py :class:`~redis.connection.Connection` objects of
its own (built from the client pool's own class and settings, so unix sockets, TLS, ACL users
and passwords behave exactly as in the pool) and talks to them with redis-py's public
connection methods (``pack_command``, ``send_packed_command``, ``read_response``).

Idle connections sit in a :class:`collections.deque`, whose ``append``/``pop`` are atomic, so
threads and greenlets share them without a lock. A forked child never reuses its parent's
sockets.

**Busy-polling the reply.** Most of a round trip to a nearby Redis is not the network: it is
the kernel putting the caller to sleep and waking it up when the reply lands (on the benchmark
VM a blocking round trip costs about 70 µs, a polled one about 25 µs). So after sending one
task, :meth:`DirectLine.evalsha` polls the socket without blocking for up to
:data:`JOBS_BROKER_BUSY_POLL` microseconds before it falls back to a blocking read, as Linux's
own ``busy_poll`` does for network cards. The spin costs CPU only while a reply is due, and only
as long as replies keep arriving within it: after :data:`SPIN_MISSES` misses in a row (a remote
Redis, say) the line stops polling for the next :data:`SPIN_PAUSE` calls. It never polls under
gevent (that would stall the hub) or over TLS.

Only a call in a burst polls: one that comes more than :data:`BURST_GAP` after the line's last
reply (a web request sending one task, say) blocks as usual. A lone send gains little from
polling, and on a small machine its spin takes a core from the Redis server and the worker the
task is handed to: on the 2-core benchmark machine, polling on lone sends put about 0.1 ms on
the median enqueue-to-start latency.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # hiredis packs a command in C, three times faster than redis-py's generic packer
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # the optional [hiredis] extra is not installed
    _hiredis_pack = None

#: Idle connections kept for reuse; more concurrent callers open (and then close) extra ones.
MAX_IDLE = 32

#: Polls that time out in a row before a line stops busy-polling for a while.
SPIN_MISSES = 8
#: Calls sent without busy-polling after :data:`SPIN_MISSES` misses, before it tries again.
SPIN_PAUSE = 1000
#: Seconds since the line's last reply after which a call no longer counts as part of a burst
#: and does not poll (see the module docstring).
BURST_GAP = 0.001

#: Bumped in a forked child, so a line built before the fork drops its parent's sockets.
#: (Cheaper than os.getpid() on every call: glibc no longer caches the pid, so that is a
#: system call.)
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _pack(conn: Any, command: tuple[Any, ...]) -> list[bytes]:
    """The wire form of a command, for ``send_packed_command``."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(command)]
    packed: list[bytes] = conn.pack_command(*command)
    return packed


class DirectLine:
    """Connections outside redis-py's pool for a few hot commands; see the module docstring.

    :param pool: the client's :class:`~redis.ConnectionPool`, whose connection class and
        settings are reused.
    :param busy_poll_us: how long :meth:`evalsha` polls for its reply before it blocks
        (:data:`JOBS_BROKER_BUSY_POLL`); 0 turns polling off.
    """

    def __init__(self, pool: redis.ConnectionPool, busy_poll_us: float = 0) -> None:
        self._pool = pool
        self._idle: deque[Any] = deque()
        self._generation = _fork_generation
        self._spin = max(0.0, float(busy_poll_us)) / 1e6 if hasattr(select, "poll") else 0.0
        #: Polls that timed out in a row (or, once over SPIN_MISSES, calls left to skip).
        self._misses = 0
        #: perf_counter() at the last reply read by :meth:`evalsha` (shared by every thread
        #: using the line: a busy process is a burst, whichever thread sends).
        self._last_reply = float("-inf")

    def _await_reply(self, conn: Any, sent_at: float) -> None:
        """Poll ``conn``'s socket until a reply is readable, at most until the spin budget
        from ``sent_at`` (a :func:`time.perf_counter` reading just after the send) is spent. A
        reply found later than that counts as a miss even so (e.g. this thread was not
        running): polling pays only while replies come within the budget.

        Runs only on plain TCP/unix sockets outside gevent; returns quietly otherwise.
        """
        if self._misses >= SPIN_MISSES:  # replies come too late to be worth polling for
            self._misses += 1
            if self._misses >= SPIN_MISSES + SPIN_PAUSE:
                self._misses = SPIN_MISSES // 2  # try again; a few more misses pause it again
            return
        sock = getattr(conn, "_sock", None)
        if type(sock) is not socket.socket or "gevent.monkey" in sys.modules:
            return  # TLS, gevent, or an unknown transport: block as usual
        # A poll object per socket (a reconnect makes a new one). Not sock.recv(MSG_DONTWAIT):
        # a socket with a timeout waits in poll() before it even tries to read.
        fd = sock.fileno()
        poller = getattr(conn, "_flask_jobs_poll", None)
        if poller is None or poller[0] != fd:
            poller = (fd, select.poll())
            poller[1].register(fd, select.POLLIN)
            conn._flask_jobs_poll = poller
        ready, clock = poller[1].poll, time.perf_counter
        deadline = sent_at + self._spin
        while not ready(0):
            if clock() >= deadline:
                self._misses += 1
                return
        if clock() > deadline:
            self._misses += 1
        else:
            self._misses = 0

    def _take(self) -> Any:
        if self._generation != _fork_generation:  # forked: the parent's sockets are not ours
            self._idle = deque()
            self._generation = _fork_generation
        try:
            return self._idle.pop()
        except IndexError:
            conn = self._pool.connection_class(**self._pool.connection_kwargs)
            # Connected here, as redis-py's pool does, not by the first send: a Sentinel-managed
            # connection finds the primary's address in connect(), and a send on an unconnected
            # one would go to its default address (localhost:6379) instead.
            conn.connect()
            return conn

    def _give(self, conn: Any) -> None:
        if len(self._idle) < MAX_IDLE and self._generation == _fork_generation:
            self._idle.append(conn)
        else:
            conn.disconnect()

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One ``EVALSHA sha numkeys *keys *args`` and its reply (the hot path of a single
        send)."""
        conn = self._take()
        try:
            conn.send_packed_command(_pack(conn, ("EVALSHA", sha, len(keys), *keys, *args)),
                                     check_health=False)
            if self._spin:
                sent_at = time.perf_counter()
                if sent_at - self._last_reply <= BURST_GAP:
                    self._await_reply(conn, sent_at)
                reply = conn.read_response()
                self._last_reply = time.perf_counter()
            else:
                reply = conn.read_response()
        except redis.ResponseError:
            self._give(conn)  # an error reply: the connection itself is fine
            raise
        except BaseException:
            conn.disconnect()
            raise
        self._give(conn)
        return reply

    def evalsha_many(self, sha: str,
                     calls: Iterable[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Send one ``EVALSHA sha numkeys *keys *args`` per ``(keys, args)`` of ``calls``
        without waiting, then read every reply, in order.

        Each call is packed and written as soon as the previous one is, so Redis runs one while
        this thread packs the next. A Redis error reply (e.g. ``NOSCRIPT``) is raised after
        every reply was read, so the connection stays usable; a connection that fails is
        closed, never reused.
        """
        conn = self._take()
        try:
            sent = 0
            for keys, args in calls:
                conn.send_packed_command(_pack(conn, ("EVALSHA", sha, len(keys), *keys, *args)),
                                         check_health=False)
                sent += 1
            replies: list[Any] = []
            error: redis.ResponseError | None = None
            for _ in range(sent):
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(None)
                    error = error or exc
        except BaseException:
            conn.disconnect()
            raise
        self._give(conn)
        if error is not None:
            raise error
        return replies

    def load(self, source: str) -> str:
        """``SCRIPT LOAD`` a script; returns its SHA."""
        conn = self._take()
        try:
            conn.send_command("SCRIPT", "LOAD", source, check_health=False)
            sha = conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        self._give(conn)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    def disconnect(self) -> None:
        """Close every idle connection."""
        while self._idle:
            try:
                self._idle.pop().disconnect()
            except IndexError:
                break

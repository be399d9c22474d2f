"""A TCP proxy in front of the test Redis that loses replies or freezes connections.

It lets tests cut a real worker's network at a chosen moment: after Redis ran a command but
before its reply arrived (``tests/test_lost_replies.py``), or silently, without a reset
(``tests/test_revoke.py``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import redis


class _Link:
    """What the proxy knows of one proxied connection."""

    def __init__(self) -> None:
        self.last_request = b""
        self.sent = b""  # its first requests, up to 64 KiB
        self.frozen = False


class LossyProxy:
    """A TCP proxy in front of Redis that can lose one reply, or freeze connections, as a cut
    network would.

    :meth:`arm` names a request (bytes it contains, e.g. a script's SHA or ``BLPOP``) and a
    reply (bytes it contains, e.g. a task id). The first reply that matches, to a request that
    matches, on any connection, is not forwarded: both sides of that connection are closed
    instead. Redis ran the command; the client sees its connection drop.

    :meth:`freeze` silences connections without closing them, as a NAT or firewall that drops
    an idle connection does: neither side hears from the other again, and neither is told.
    """

    def __init__(self, upstream_url: str) -> None:
        kw = redis.ConnectionPool.from_url(upstream_url).connection_kwargs
        self.upstream: Any = kw["path"] if "path" in kw else (kw["host"], kw["port"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        auth = f":{kw['password']}@" if kw.get("password") else ""
        self.url = f"redis://{auth}127.0.0.1:{port}/{kw.get('db', 0)}"
        self._lock = threading.Lock()
        self._armed: tuple[bytes, bytes] | None = None
        self._sockets: list[socket.socket] = []
        self._links: list[_Link] = []
        #: The replies that were lost, in order.
        self.lost: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, request: bytes, reply: bytes) -> None:
        """Lose the next reply containing ``reply`` to a request containing ``request``."""
        with self._lock:
            self._armed = (request, reply)

    def freeze(self, request: bytes) -> int:
        """Silence every open connection that has sent a request containing ``request`` (e.g.
        ``SUBSCRIBE``): from now on nothing it carries is forwarded, either way, and it stays
        open. Later connections work. Returns how many were frozen."""
        with self._lock:
            frozen = [link for link in self._links if request in link.sent]
            for link in frozen:
                link.frozen = True
        return len(frozen)

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                _close(s)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            family = socket.AF_UNIX if isinstance(self.upstream, str) else socket.AF_INET
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(self.upstream)
            link = _Link()
            with self._lock:
                self._sockets += [client, server]
                self._links.append(link)
            threading.Thread(target=self._requests, args=(client, server, link),
                             daemon=True).start()
            threading.Thread(target=self._replies, args=(client, server, link),
                             daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if link.frozen:
                        continue  # swallowed: the request never reaches Redis
                    link.last_request = data  # (before it is sent: its reply cannot come sooner)
                    if len(link.sent) < 65536:  # (what freeze() matches: the first requests)
                        link.sent += data
                server.sendall(data)
        _close(client, server)

    def _replies(self, client: socket.socket, server: socket.socket, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                with self._lock:
                    if link.frozen:
                        continue  # swallowed: the client never hears it
                    armed = self._armed
                    lose = armed is not None and armed[0] in link.last_request and armed[1] in data
                    if lose:
                        self._armed = None
                        self.lost.append(data)
                if lose:
                    break
                client.sendall(data)
        _close(client, server)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

"""A tiny RESP client for the questions starting and stopping a server asks, without redis-py.

Is anything listening? Is it the server I started (its pid, its run id)? Please stop. redis-py
gets in the way of those: its default retries with backoff (5.x and 6+ differ) would turn "is it
down?" into seconds of waiting, and its errors don't tell "refused" from "busy". A few lines of
raw RESP over a socket answer them directly, each call with its own timeout.
"""

from __future__ import annotations

import socket
from typing import TypeAlias

#: Where a server listens: a unix socket path, or ``(host, port)`` on TCP.
Address: TypeAlias = str | tuple[str, int]


class ReplyError(Exception):
    """The server answered with an error reply (``-ERR ...``, ``-LOADING ...``)."""


def _connect(address: Address, timeout: float) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def accepting(address: Address, timeout: float = 2.0) -> bool:
    """Whether a server is listening at ``address``.

    A timeout counts as yes: a busy server is still alive, and treating it as dead would start a
    second one on its socket.

    :param address: A unix socket path or ``(host, port)``.
    :param timeout: Seconds to wait for the connection.
    """
    try:
        sock = _connect(address, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except TimeoutError:
        return True
    sock.close()
    return True


def _command(
    address: Address, *args: str, timeout: float = 5.0, password: str | None = None
) -> bytes | int | None:
    """Send one command and return its reply.

    The reply is ``None`` if the server closed the connection without answering (which is how a
    successful ``SHUTDOWN`` looks). With ``password`` (a server started with ``--requirepass``),
    ``AUTH`` goes first.
    """
    commands: list[tuple[str, ...]] = [("AUTH", password)] if password else []
    commands.append(args)
    payload = []
    for command in commands:
        payload.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg.encode()
            payload.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with _connect(address, timeout) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"".join(payload))
        if password:
            auth = reader.readline()
            if not auth.startswith(b"+"):
                raise ReplyError(auth.decode(errors="replace").strip() or "AUTH failed")
        line = reader.readline()
        if not line:
            return None
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else reader.read(size + 2)[:-2]
        raise ReplyError(f"unexpected reply {line!r}")


def ping(address: Address, password: str | None = None) -> bool:
    """Whether the server at ``address`` answers ``PING`` (and so is ready for commands).

    :param address: A unix socket path or ``(host, port)``.
    :param password: For a server started with ``--requirepass``.
    """
    try:
        return _command(address, "PING", timeout=1.0, password=password) == b"PONG"
    except (OSError, ReplyError):
        # Not listening yet, or -LOADING: not ready either way.
        return False


def info(address: Address, timeout: float = 5.0, password: str | None = None) -> dict[str, str]:
    """Return the fields of ``INFO server``, such as ``run_id`` and ``process_id``.

    :param address: A unix socket path or ``(host, port)``.
    :param timeout: Seconds to wait for the connection and the reply.
    :param password: For a server started with ``--requirepass``.
    :raises OSError: if the server can't be reached.
    :raises ReplyError: if it answers with an error or something else than ``INFO``.
    """
    reply = _command(address, "INFO", "server", timeout=timeout, password=password)
    if not isinstance(reply, bytes):
        raise ReplyError(f"unexpected INFO reply {reply!r}")
    fields = {}
    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


def server_pid(address: Address, password: str | None = None) -> int | None:
    """Return the process id of the server at ``address``, or ``None`` if it doesn't say.

    :param address: A unix socket path or ``(host, port)``.
    :param password: For a server started with ``--requirepass``.
    """
    try:
        return int(info(address, password=password)["process_id"])
    except (OSError, ReplyError, KeyError, ValueError):
        return None


def send_shutdown(address: Address, password: str | None = None) -> None:
    """Send ``SHUTDOWN NOSAVE`` to the server at ``address``, without waiting for it to exit.

    :param address: A unix socket path or ``(host, port)``.
    :param password: For a server started with ``--requirepass``.
    """
    try:
        _command(address, "SHUTDOWN", "NOSAVE", timeout=5.0, password=password)
    except (OSError, ReplyError):
        # Already gone, or it refused; the caller falls back to signals either way.
        pass

"""Server-Sent Events: the body of an ``/events/`` response, and what the SSE hub reads.

A stream sends the status now, then one event per change until the status is final. It does not
listen to Redis itself: the process's :class:`~flask_jobs.sse_hub.Hub` (see :func:`events_hub`)
holds one pub/sub connection for every stream of the app, reads a changed id once, and hands the
rendered :class:`~flask_jobs.sse_hub.Update` to every stream of that id.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import redis
from flask import Response, current_app, request, stream_with_context

from ..sse_hub import GONE, Follower, Hub, Update, hub_for
from ..state import AppState, Registry
from .encoding import dumps
from .lookups import Found, lookup

# The logger of the single module the web layer used to be, so logging configured for it still
# applies.
log = logging.getLogger("flask_jobs.web")

#: Reconnection delay suggested to EventSource clients (the SSE ``retry:`` field), in ms.
SSE_RETRY_MS = 2000


# -- rendering ----------------------------------------------------------------------------------


def _fingerprint(body: dict[str, Any]) -> str:
    """What a client needs to see again: all but the clock-driven fields."""
    return dumps({k: v for k, v in body.items() if k not in ("eta_seconds", "updated_at")})


def _sse(found: Found) -> bytes:
    """The SSE event of a read: its ``id:`` and its status JSON as ``data:``."""
    return f"id: {found.event_id}\ndata: {dumps(found.body)}\n\n".encode()


def render_update(found: Found | None) -> Update:
    """A read rendered once for every stream of its id (``GONE`` if the id is not known).

    :param found: what :func:`~flask_jobs.web.lookups.lookup` returned.
    """
    if found is None:
        return GONE
    return Update(_fingerprint(found.body), _sse(found), found.final)


def _read_update(jobs: Registry, ident: str) -> Update:
    """The SSE hub's reader: the status of ``ident`` now (in the app context)."""
    return render_update(lookup(jobs, ident))


def events_hub(st: AppState) -> Hub:
    """The SSE hub of ``st``'s app in this process: one pub/sub connection for all its streams.

    :param st: the app's state (``app.extensions["jobs"]``).
    """
    return hub_for(st, functools.partial(_read_update, st.jobs))


# -- streaming ----------------------------------------------------------------------------------


class EventStream:
    """The body of one ``/events/`` response: an iterator of SSE chunks.

    Follows its id through the process's SSE hub (``follower``, already subscribed; None for a
    status that is already final) and leaves it when the stream ends or the response is closed,
    whichever comes first (``close()`` is idempotent and also runs if the client went away
    before the first chunk).

    :param first: the first event to send.
    :param follower: the stream's place in the hub, or None to send ``first`` alone.
    :param heartbeat: seconds between re-reads (or ``: ping`` comments) while nothing changes.
    :param max_age: seconds after which the stream ends (the client reconnects).
    """

    def __init__(self, first: Update, follower: Follower | None, heartbeat: float,
                 max_age: float) -> None:
        self._first = first
        self._follower = follower
        self._heartbeat = max(0.01, heartbeat)
        self._deadline = time.monotonic() + max_age
        self._gen = self._events()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        return next(self._gen)

    def close(self) -> None:
        """Stop the stream and leave the hub (the last stream of an id unsubscribes)."""
        try:
            self._gen.close()
        except ValueError:  # closed from another thread while running: left below
            pass
        self._leave()

    def _leave(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.close()

    def _events(self) -> Generator[bytes, None, None]:
        try:
            yield f"retry: {SSE_RETRY_MS}\n\n".encode()
            update = self._first
            yield update.chunk
            if update.final or self._follower is None:
                return
            yield from self._follow(self._follower, update)
        except GeneratorExit:
            raise
        except (redis.RedisError, OSError) as exc:
            # Redis went away mid-stream: end it; the client reconnects after `retry`.
            log.info("Event stream ended by a Redis error: %s", exc)
        finally:
            self._leave()

    def _follow(self, follower: Follower, update: Update) -> Generator[bytes, None, None]:
        last = update.fingerprint
        next_beat = time.monotonic() + self._heartbeat
        while not follower.closed:
            now = time.monotonic()
            if now >= self._deadline:
                return
            got = follower.wait(min(next_beat, self._deadline) - now)
            if got is None:
                if time.monotonic() < next_beat:
                    continue  # the deadline, or closed
                # Heartbeat time: re-read (shared with the id's other streams) as a safety net
                # for a change whose notification was lost; send it, or a comment that keeps
                # proxies from closing an idle connection.
                got = follower.refresh(not_before=time.monotonic() - self._heartbeat / 2)
                if got.fingerprint == last:
                    yield b": ping\n\n"
                    next_beat = time.monotonic() + self._heartbeat
                    continue
            if got.fingerprint != last:
                last = got.fingerprint
                if got.chunk:
                    yield got.chunk
                next_beat = time.monotonic() + self._heartbeat
            if got.final:  # or gone: forgotten or expired meanwhile
                return


def stream_response(ident: str, found: Found) -> Response:
    """The ``/events/`` response for ``ident``: the status now, then one event per change.

    A status that is already final is sent alone; a client reconnecting after it (its
    ``Last-Event-ID`` is the final event's) gets ``204``, which tells EventSource to stop.

    :param ident: the task or group id.
    :param found: what the view read (and authorized).
    """
    st: AppState = current_app.extensions["jobs"]
    follower = None
    if found.final:
        if request.headers.get("Last-Event-ID") == found.event_id:
            # A reconnect after the final event: 204 tells EventSource to stop.
            return Response(status=204, headers={"Cache-Control": "no-store"})
        first = render_update(found)
    else:
        # One pub/sub connection per process for all streams; returns once subscribed.
        min_interval = st.settings.progress_interval if found.kind == "group" else 0.0
        follower = events_hub(st).follow(ident, found.channels, min_interval=min_interval)
        try:
            # Read again now that we are subscribed: no change can slip in between.
            first = follower.refresh()
        except BaseException:
            follower.close()
            raise
        if first is GONE:  # forgotten or expired meanwhile: send what we found, and end
            first = replace(render_update(found), final=True)
    stream = EventStream(first, follower,
                         heartbeat=st.settings.sse_heartbeat,
                         max_age=st.settings.sse_max_age)
    response = Response(stream_with_context(stream), mimetype="text/event-stream")
    response.call_on_close(stream.close)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    return response

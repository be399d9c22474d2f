"""``chord``: a group (the header) and a callback (the body) that gets the header's results.

``chord(add.s(i, i) for i in range(10))(tsum.s())`` runs the ten additions in parallel, then
``tsum`` with the list of their results, in the header's order.

Reliable by construction: before the header is sent, its member list and counters are written
and the body is *held* (its message stored, not queued; ``scripts/chord.lua``). The script that
writes a header task's final state counts it (fenced by the delivery attempt, so a task
delivered twice after a worker crash counts once) and the one that counts the last queues the
body: it runs exactly once, with no task polling for the header. The worker that runs the body
reads the header's results; if a header task failed or was revoked, the body fails with
:class:`~flask_jobs.exceptions.ChordError` naming it (and its ``link_error`` callbacks run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from ..message import build_message, new_task_id
from ..result import AsyncResult, GroupResult
from ..state import Registry
from .group import group, is_plain, send_members
from .signature import Signature, jobs_of, maybe_signature

#: The built-in task a chord holds when its body is not one task (a group, a chord): it
#: returns the header's results, and the real body is linked to it.
IDENTITY = "flask_jobs.identity"


@Signature.register_type()
class chord(Signature):  # noqa: N801 - Celery's name
    """A group and a callback run with the list of its results.

    :param header: the group (or an iterable of signatures).
    :param body: the callback; a chord may also get it when it is called:
        ``chord(header)(body)``. An immutable body (``.si()``) does not get the results.
    :param options: options for the body.

    Sending returns the body's result; its ``parent`` is the header's
    :class:`~flask_jobs.GroupResult`.
    """

    def __init__(self, header: Any, body: Any = None, task: str = "flask_jobs.chord",
                 args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                 app: Registry | None = None, **options: Any) -> None:
        if isinstance(header, group):
            head = header
        else:
            head = group(header, app=app) if isinstance(header, (list, tuple)) or not \
                isinstance(header, Mapping) else group(maybe_signature(header, app), app=app)
        Signature.__init__(self, task, args, {**(kwargs or {}), "header": head,
                                              "body": maybe_signature(body, app)},
                           options, subtask_type="chord", app=app or head._app)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Registry | None = None) -> Signature:
        """The chord of a plain dict."""
        kwargs = dict(d["kwargs"])
        header = group.from_dict(kwargs.pop("header"), app=app) \
            if isinstance(kwargs.get("header"), Mapping) else kwargs.pop("header")
        body = kwargs.pop("body", None)
        sig = cls(header, body, args=d.get("args"), kwargs=kwargs, app=app,
                  **(d.get("options") or {}))
        sig["immutable"] = bool(d.get("immutable"))
        return sig

    @property
    def tasks(self) -> group:
        """The header."""
        return cast(group, self.kwargs["header"])

    @property
    def body(self) -> Signature:
        """The callback (None until given)."""
        return cast(Signature, self.kwargs.get("body"))

    def with_body(self, body: Signature) -> chord:
        """A copy whose body is ``body``."""
        return chord(self.tasks.clone(), body, app=self._app, **self.options)

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(body)``: send it with this body."""
        return self.apply_async((), {"body": body} if body is not None else {}, **options)

    def clone(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy (header and body cloned), with partial arguments and options merged in."""
        sig = Signature.clone(self, args, kwargs, **options)
        sig.kwargs["header"] = self.tasks.clone()
        if self.body is not None:
            sig.kwargs["body"] = self.body.clone()
        return sig

    def freeze(self, _id: str | None = None, group_id: str | None = None, **_ignored: Any
               ) -> Any:
        """Give the header and the body their ids now; returns the body's result, whose
        ``parent`` is the header's."""
        if self.body is None:
            raise TypeError("This chord has no body yet: chord(header)(body) or "
                            "chord(header, body)")
        header = self.tasks.freeze()
        return _after_header(self.body.freeze(_id), header)

    def link(self, callback: Mapping[str, Any]) -> Any:
        """Link ``callback`` to the body (it runs once, after the body)."""
        return self.body.link(callback)

    def link_error(self, errback: Mapping[str, Any]) -> Any:
        """Link ``errback`` to the body (it runs once, if a header task or the body fails)."""
        return self.body.link_error(errback)

    def __or__(self, other: Any) -> Any:
        """``chord | sig``: the chord with ``sig`` after its body."""
        if isinstance(other, group) and len(other.tasks) == 1:
            other = other.tasks[0]
        if isinstance(other, Signature) and other.subtask_type not in ("group", "chain"):
            return self.with_body(cast(Signature, self.body | other))
        return Signature.__or__(self, other)

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> Any:
        """Send the header and hold the body until it is done; returns the body's result."""
        options = {k: v for k, v in options.items() if v is not None}
        kwargs = dict(kwargs or {})
        body = maybe_signature(kwargs.pop("body", None), self._app) or self.body
        if body is None:
            raise TypeError("A chord needs a body: chord(header)(body) or chord(header, body)")
        body = body.clone()
        jobs = jobs_of([*self.tasks.tasks, body], self._app)
        state = jobs.state()
        if state.settings.always_eager:
            return self.apply(args, kwargs, body=body, **options)
        partial_args, partial_kwargs, opts = self._partial(args, kwargs, options)
        body_id = opts.pop("task_id", None)
        member_of = opts.pop("group_id", None)
        owner = opts.get("owner")
        header_options = {"owner": owner} if owner is not None else {}
        members, _ = self.tasks._parts(partial_args, partial_kwargs, {})
        gid = self.tasks.id or new_task_id()
        held, result = _held_body(body, body_id, opts, member_of)
        message = build_message(state.settings, state.codecs, jobs.tasks.get(held.task),
                                held.task, held.args, held.kwargs,
                                chord={"header": gid, "results": not held.immutable},
                                **held.options)
        header = send_members(state, jobs, gid, members, header_options, listed=True,
                              body=message, member_of=member_of or "")
        return _after_header(result, header)

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              body: Any = None, **options: Any) -> Any:
        """Run the header here, then the body with its results; returns the body's
        EagerResult."""
        body = maybe_signature(body, self._app) or self.body
        if body is None:
            raise TypeError("A chord needs a body: chord(header)(body) or chord(header, body)")
        header = self.tasks.apply(args, kwargs)
        values = header.get()
        result = body.apply((values,) if not body.immutable else (), **options)
        result.parent = header
        return result

    def __repr__(self) -> str:
        return f"chord({self.tasks!r}, {self.body!r})"


def _after_header(result: Any, header: GroupResult) -> Any:
    """``result`` (the body's), its first ``parent`` (a chain body's first step) given the
    header's result as parent."""
    node = result
    while isinstance(node, AsyncResult) and node.parent is not None:
        node = node.parent
    if node is not header:
        node.parent = header
    return result


def _held_body(body: Signature, body_id: str | None, options: dict[str, Any],
               member_of: str | None) -> tuple[Signature, Any]:
    """The one task a chord holds, and the result the chord will have.

    A task body is held itself. A chain body holds its first step (the rest behind it, as
    when a chain is sent). Any other body (a group, a chord, a chain starting with one) is
    linked to a held identity task, which passes the header's results on. ``options``'
    ``chain`` (the rest of a chain this chord is a step of) goes after the body.
    """
    if is_plain(body):
        held = body.clone(**options)
        if body_id:
            held.options["task_id"] = body_id
        if member_of:
            held.options["group_id"] = member_of
        return held, held.freeze()
    if body.subtask_type == "chain" and is_plain(body.tasks[0]):  # type: ignore[attr-defined]
        first, result = body.prepare(options, body_id, member_of)  # type: ignore[attr-defined]
        return first, result
    continuation = options.pop("chain", None)
    if continuation:
        body = Signature.TYPES["chain"](body, *[maybe_signature(s, body._app)
                                                for s in reversed(continuation)])
    identity = Signature(IDENTITY, app=body._app, immutable=body.immutable)
    result = body.freeze(body_id)
    identity.link(body)
    return identity, result

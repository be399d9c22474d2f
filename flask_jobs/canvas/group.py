"""``group``: signatures run in parallel, with one result (and one status URL) for all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from .. import calling
from ..message import Message, build_message, new_task_id, new_task_ids
from ..result import AsyncResult, GroupResult
from ..state import AppState, Registry
from .signature import Signature, jobs_of, maybe_signature, type_name


def as_signatures(tasks: tuple[Any, ...], app: Registry | None) -> list[Signature]:
    """The members given to a group or chain: several signatures, or one iterable of them (a
    list, a generator), or one group or chain whose members are taken."""
    if len(tasks) == 1:
        only = tasks[0]
        if isinstance(only, Signature) and only.subtask_type in ("group", "chain"):
            return [maybe_signature(t, app) for t in only.kwargs["tasks"]]
        if not isinstance(only, Mapping):
            if isinstance(only, (str, bytes)) or not isinstance(only, Iterable):
                raise TypeError(f"Expected signatures (e.g. add.s(2)), not {type_name(only)}")
            tasks = tuple(only)
    return [maybe_signature(t, app) for t in tasks]


def is_plain(sig: Signature) -> bool:
    """Whether ``sig`` is one task call (sent as one message)."""
    return not sig.subtask_type or sig.subtask_type in ("xmap", "xstarmap")


@Signature.register_type()
class group(Signature):  # noqa: N801 - Celery's name
    """Run signatures in parallel: ``group(add.s(i, i) for i in range(10))()``.

    Members may be tasks, chains or chords. Sending builds and checks every member's message
    first (so a bad argument anywhere sends nothing), and sends the tasks among them in one
    pipelined round trip. The :class:`~flask_jobs.GroupResult` has one id, whose status URL
    reads the group's counters (one read however many members).

    Partial arguments go in front of every member's (as in a chain: ``add.s(4) | group(...)``).
    """

    def __init__(self, *tasks: Any, **options: Any) -> None:
        app = options.pop("app", None)
        members = as_signatures(tasks, app)
        Signature.__init__(self, "flask_jobs.group", (), {"tasks": members}, options,
                           subtask_type="group", app=app or jobs_of(members, None)
                           if members and any(m._app for m in members) else app)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Registry | None = None) -> Signature:
        """The group of a plain dict."""
        sig = cls(d["kwargs"]["tasks"], app=app, **(d.get("options") or {}))
        sig["args"] = tuple(d.get("args") or ())
        sig["immutable"] = bool(d.get("immutable"))
        return sig

    @property
    def tasks(self) -> list[Signature]:
        """The members."""
        return cast(list[Signature], self.kwargs["tasks"])

    def __len__(self) -> int:
        return len(self.tasks)

    def __call__(self, *args: Any, **options: Any) -> GroupResult:
        """Send every member, with partial arguments (as Celery's ``group(...)()``)."""
        return self.apply_async(args, **options)

    def clone(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy, its members cloned, with partial arguments and options merged in."""
        sig = Signature.clone(self, args, kwargs, **options)
        sig.kwargs["tasks"] = [m.clone() for m in self.tasks]
        return sig

    def _parts(self, args: Iterable[Any] | None, kwargs: Mapping[str, Any] | None,
               options: Mapping[str, Any]) -> tuple[list[Signature], dict[str, Any]]:
        """The members as they are sent (partial arguments applied) and the group's options.

        Without partial arguments the members are the group's own objects, so a signature
        repeated n times is still one object (encoded once, see :func:`send_members`).
        """
        partial_args, partial_kwargs, merged = self._partial(args, kwargs, options)
        if partial_args or partial_kwargs:
            members = [m.clone(partial_args, partial_kwargs) for m in self.tasks]
        else:
            members = list(self.tasks)
        return members, dict(merged)

    def freeze(self, _id: str | None = None, group_id: str | None = None, **_ignored: Any
               ) -> GroupResult:
        """Give the group and its members their ids now; returns the group's result."""
        gid = self.options.get("task_id") or _id or new_task_id()
        self.options["task_id"] = gid
        return GroupResult(gid, [m.freeze() for m in self.tasks], jobs=self._app)

    @property
    def id(self) -> str | None:
        """The group id given in advance (:meth:`freeze`), if any."""
        return cast("str | None", self.options.get("task_id"))

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> GroupResult:
        """Send every member; returns a :class:`~flask_jobs.GroupResult`."""
        options = {k: v for k, v in options.items() if v is not None}
        jobs = jobs_of(self.tasks, self._app)
        state = jobs.state()
        if state.settings.always_eager:
            return self.apply(args, kwargs, **options)
        members, opts = self._parts(args, kwargs, options)
        gid = opts.pop("task_id", None) or opts.pop("group_id", None) or self.id or new_task_id()
        opts.pop("group_id", None)
        if not members:
            return GroupResult(gid, [], jobs=jobs, app=state.app)
        return send_members(state, jobs, gid, members, opts, listed=False)

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> GroupResult:
        """Run every member here, one after another; returns a GroupResult of their
        EagerResults."""
        options = {k: v for k, v in options.items() if v is not None}
        members, opts = self._parts(args, kwargs, options)
        gid = opts.pop("task_id", None) or opts.pop("group_id", None) or self.id or new_task_id()
        jobs = jobs_of(self.tasks, self._app)
        return GroupResult(gid, [m.apply(**opts) for m in members], jobs=jobs)

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Give the members countdowns ``start``, ``start + step``... (up to ``stop``, then the
        last one repeats), so they do not all start at once."""
        countdown = start
        for member in self.tasks:
            member.set(countdown=countdown)
            if stop is None or countdown + step <= stop:
                countdown += step
        return self

    def link(self, callback: Mapping[str, Any]) -> Any:
        """Link ``callback`` to every member (as Celery does: it runs once per member)."""
        for member in self.tasks:
            member.link(callback)
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Any:
        """Link ``errback`` to every member (it runs for each member that fails)."""
        for member in self.tasks:
            member.link_error(errback)
        return errback

    def __or__(self, other: Any) -> Any:
        """``group | sig``: a chord whose body is ``sig``; an empty group adds nothing."""
        if isinstance(other, group) and not other.tasks:
            return self
        if isinstance(other, Signature):
            return self.TYPES["chord"](self, body=other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"group({list(self.tasks)!r})"


def send_members(state: AppState, jobs: Registry, gid: str, members: list[Signature],
                 options: dict[str, Any], listed: bool, body: Message | None = None,
                 member_of: str = "") -> GroupResult:
    """Send a group's (or a chord header's) members, with ``options`` for each.

    The tasks among them go in one pipelined round trip, each signature object validated and
    encoded once however often it repeats. A chain or chord member is sent on its own, counting
    in the group by its last task. When a member is not a task, or ``body`` (a chord's) is
    held, the member list and counters are written first (``Broker.hold_chord``), so a member
    that finishes before the others are sent is counted.

    :param member_of: the group a chord's body counts in (a chord that is a group's member).
    """
    owner = str(options["owner"]) if options.get("owner") is not None else ""
    plain = [m for m in members if is_plain(m)]
    listing = listed or body is not None or len(plain) != len(members)
    built: dict[int, Message] = {}
    messages: list[Message] = []
    for member in plain:
        message = built.get(id(member))
        if message is None or member.id:
            message = build_message(
                state.settings, state.codecs, jobs.tasks.get(member.task), member.task,
                member.args, member.kwargs, validated=message is not None,
                **{**member.options, **options, "group_id": gid})
            built[id(member)] = message
        messages.append(message)
    ids: list[str] = []
    if listing:  # every member's id now, in order: tasks' (fresh ones for copies), others' own
        fresh = iter(new_task_ids(len(plain)))
        seen: set[int] = set()
        queue = iter(messages)
        order: list[Any] = []
        for member in members:
            if is_plain(member):
                message = next(queue)
                task_id = message.id if id(message) not in seen else next(fresh)
                seen.add(id(message))
                ids.append(task_id)
                order.append(AsyncResult(task_id, jobs=jobs, app=state.app,
                                         task_name=member.task))
            else:
                order.append(member.freeze())
        state.broker.hold_chord(gid, body, [r.id for r in order], owner, member_of)
        if messages:
            calling.send_messages(state, messages, gid, 0, ids)
        for member in members:
            if not is_plain(member):
                member.apply_async(**{**options, "group_id": gid})
        return GroupResult(gid, order, jobs=jobs, app=state.app)
    calling.send_messages(state, messages, gid, len(messages), ids)
    return GroupResult(gid, [AsyncResult(i, jobs=jobs, app=state.app, task_name=m.name)
                             for i, m in zip(ids, messages, strict=True)], jobs=jobs, app=state.app)

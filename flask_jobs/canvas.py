"""Signatures and workflows: :class:`Signature`, :class:`group`, :class:`chain`.

A signature is a task call that can be passed around (a dict, as in Celery, so it serialises).
``group(sigs).apply_async()`` sends every message in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from flask import current_app

from . import calling
from .message import Message, build_message, new_task_id, signature_dict
from .result import AsyncResult, GroupResult
from .state import AppState, Registry


class Signature(dict[str, Any]):
    """A task name with arguments and options: ``add.s(2, 2)``.

    :param task: a task name or a :class:`~flask_jobs.Task`.
    :param args: positional arguments (a result in a chain is put in front of them).
    :param kwargs: keyword arguments.
    :param options: :meth:`~flask_jobs.Task.apply_async` options.
    """

    def __init__(self, task: Any, args: Iterable[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 app: Registry | None = None, immutable: bool = False) -> None:
        name = task if isinstance(task, str) else task.name
        if app is None and not isinstance(task, str):
            app = task.jobs
        super().__init__(task=name, args=list(args or ()), kwargs=dict(kwargs or {}),
                         options=dict(options or {}), immutable=immutable)
        self._app = app

    @property
    def name(self) -> str:
        """The task name."""
        return cast(str, self["task"])

    @property
    def args(self) -> list[Any]:
        """The positional arguments."""
        return cast(list[Any], self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments."""
        return cast(dict[str, Any], self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        """The call options."""
        return cast(dict[str, Any], self["options"])

    @property
    def immutable(self) -> bool:
        """Whether a parent's result is ignored."""
        return bool(self.get("immutable"))

    @property
    def jobs(self) -> Registry:
        """The extension this signature sends through."""
        if self._app is None:
            state: AppState = current_app.extensions["jobs"]
            return state.jobs
        return self._app

    def clone(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy with ``args`` put in front of its own, and merged kwargs and options."""
        new_args = self.args if self.immutable else [*args, *self.args]
        return Signature(self.name, new_args, {**self.kwargs, **(kwargs or {})},
                         {**self.options, **options}, app=self._app, immutable=self.immutable)

    def set(self, **options: Any) -> Signature:
        """Set call options in place; returns the signature."""
        self.options.update(options)
        return self

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        """Send it (with extra partial arguments and options)."""
        sig = self.clone(args, kwargs, **options)
        jobs = sig.jobs
        return calling.send(jobs.state(), jobs.tasks.get(sig.name), sig.name, sig.args,
                            sig.kwargs, sig.options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send it with extra partial arguments."""
        return self.apply_async(args, kwargs)

    __call__ = delay

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> AsyncResult:
        """Run it here, synchronously."""
        sig = self.clone(args, kwargs, **options)
        state = sig.jobs.state()
        return calling.apply_eagerly(state, state.task(sig.name), sig.args, sig.kwargs,
                                     sig.options)

    def __or__(self, other: Signature) -> chain:  # type: ignore[override] # Celery's a | b
        return chain(self, other)

    def __repr__(self) -> str:
        call = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.name}({call})"


def signature(value: Any, app: Registry | None = None) -> Signature:
    """Turn a dict (as stored in a message) or a :class:`Signature` into a :class:`Signature`."""
    if isinstance(value, Signature):
        return value
    plain = signature_dict(value)
    return Signature(plain["task"], plain["args"], plain["kwargs"], plain["options"], app=app,
                     immutable=plain["immutable"])


def chain_ids(links: Iterable[Any]) -> list[str]:
    """The ids given in advance to the links of a chain after a task (nested ``link`` options).

    Callbacks passed as ``link=`` by users have no id of their own and are not followed.
    """
    ids: list[str] = []
    todo = list(links)
    while todo:
        sig = todo.pop()
        options = sig.get("options") or {}
        if options.get("task_id"):
            ids.append(str(options["task_id"]))
            following = options.get("link")
            if following:
                todo.extend(following if isinstance(following, (list, tuple)) else [following])
    return ids


def _as_signatures(tasks: tuple[Any, ...]) -> list[Signature]:
    if len(tasks) == 1 and not isinstance(tasks[0], (Signature, dict)):
        tasks = tuple(tasks[0])
    return [signature(t) for t in tasks]


class group:  # noqa: N801 - Celery's name
    """Run signatures in parallel: ``group(add.s(i, i) for i in range(10))()``.

    ``apply_async`` builds every message first (so a bad argument anywhere sends nothing) and
    sends them all in one pipelined round trip.
    """

    def __init__(self, *tasks: Any) -> None:
        self.tasks = _as_signatures(tasks)

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> GroupResult:
        """Send every member; returns a :class:`GroupResult`."""
        if not self.tasks:
            return GroupResult(new_task_id(), [])
        jobs = self.tasks[0].jobs
        state = jobs.state()
        group_id = options.pop("group_id", None) or new_task_id()
        if state.settings.always_eager:
            return GroupResult(group_id, [s.apply(args, kwargs, **options) for s in self.tasks],
                               jobs=jobs)
        messages: list[Message] = []
        extra = bool(args or kwargs or options)
        # A signature repeated n times is validated and encoded once and sent under n ids.
        built: dict[int, Message] = {}
        for sig in self.tasks:
            first = built.get(id(sig))
            if first is not None and not first.chosen_id:
                messages.append(first)  # sent again under a new id (Broker.enqueue)
                continue
            s = sig.clone(args, kwargs, **options) if extra else sig
            message = build_message(state.settings, state.codecs, jobs.tasks.get(s.name), s.name,
                                    s.args, s.kwargs, group_id=group_id,
                                    validated=first is not None, **s.options)
            built[id(sig)] = message
            messages.append(message)
        return calling.send_group(state, messages, group_id)

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:
        """Send every member with extra partial arguments."""
        return self.apply_async(args, kwargs)

    __call__ = apply_async

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> GroupResult:
        """Run every member here, synchronously."""
        jobs = self.tasks[0].jobs if self.tasks else None
        return GroupResult(new_task_id(), [s.apply(args, kwargs, **options)
                                               for s in self.tasks], jobs=jobs)

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"group({self.tasks!r})"


class chain:  # noqa: N801 - Celery's name
    """Run signatures one after another, each getting the previous result as first argument.

    ``chain(add.s(2, 2), add.s(4), mul.s(8))()`` computes ``mul(add(add(2, 2), 4), 8)``. The
    returned result is the last task's; its ``parent`` is the one before, and so on.
    """

    def __init__(self, *tasks: Any) -> None:
        self.tasks = _as_signatures(tasks)

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        """Send the first task, with the rest linked behind it."""
        if not self.tasks:
            raise ValueError("An empty chain has nothing to run")
        jobs = self.tasks[0].jobs
        state = jobs.state()
        if state.settings.always_eager:
            return self.apply(args, kwargs, **options)
        ids = [new_task_id() for _ in self.tasks]
        owner = options.get("owner")
        # Build from the end: each signature links to the next, with its id fixed in advance.
        # The owner goes with every task, so the chain's status URL (its last task's) obeys it.
        linked: Signature | None = None
        for sig, task_id in zip(reversed(self.tasks), reversed(ids), strict=True):
            opts = {**sig.options, "task_id": task_id}
            if owner is not None and task_id != ids[0]:  # (the first gets it from options)
                opts.setdefault("owner", owner)
            if linked is not None:
                opts["link"] = linked
            linked = Signature(sig.name, sig.args, sig.kwargs, opts, app=sig._app,
                               immutable=sig.immutable)
        assert linked is not None
        # The later tasks read PENDING from now on, not "unknown" until the chain gets there
        # (one round trip before the first send; they expire like results if it never does).
        state.broker.placeholders(
            [(task_id, sig.name) for sig, task_id in zip(self.tasks[1:], ids[1:], strict=True)],
            "" if owner is None else str(owner))
        linked.apply_async(args, kwargs, **options)
        result: AsyncResult | None = None
        for sig, task_id in zip(self.tasks, ids, strict=True):
            result = AsyncResult(task_id, jobs=jobs, task_name=sig.name, parent=result)
        assert result is not None
        return result

    __call__ = apply_async

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the chain with extra partial arguments for the first task."""
        return self.apply_async(args, kwargs)

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> AsyncResult:
        """Run the chain here, synchronously."""
        result: AsyncResult | None = None
        value_args = list(args)
        for i, sig in enumerate(self.tasks):
            result = sig.apply(value_args, kwargs if i == 0 else None, **options)
            value_args = [result.get()]
        assert result is not None
        return result

    def __or__(self, other: Signature) -> chain:
        return chain(*self.tasks, other)

"""Signatures: a task call (name, arguments, options) that can be passed around.

A :class:`Signature` is a dict, as in Celery, so it is plain data: it travels in messages (a
callback in ``link``, a chord's body) and comes back with :func:`signature`. Partial
application works as in Celery: arguments given when a signature is sent or cloned go in front
of its own, keyword arguments are merged (the new ones win), options too; an *immutable*
signature keeps its arguments and takes only options.

The workflow primitives (group, chain, chord, map, starmap, chunks) are signatures too, each of
a registered ``subtask_type``, so any of them can be a callback or a member of another.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar, cast

from flask import current_app

from .. import calling
from ..message import new_task_id
from ..request import TaskLike
from ..result import AsyncResult
from ..state import AppState, Registry

S = TypeVar("S", bound="type[Signature]")


class Signature(dict[str, Any]):
    """A task name with arguments and options: ``add.s(2, 2)``.

    :param task: a task name or a :class:`~flask_jobs.Task` (or a dict of a signature).
    :param args: positional arguments (partial arguments go in front of them).
    :param kwargs: keyword arguments.
    :param options: :meth:`~flask_jobs.Task.apply_async` options.
    :param subtask_type: the primitive this is (``None`` for a plain task call).
    :param immutable: ignore partial arguments (a callback that does not take its parent's
        result).
    :param app: the :class:`~flask_jobs.Jobs` to send through (default: the task's, or the
        current app's).
    :param ex: more options, as in ``signature("tasks.add", args=(2, 2), countdown=10)``.
    """

    #: The primitives by ``subtask_type`` (see :meth:`register_type`).
    TYPES: ClassVar[dict[str, type[Signature]]] = {}
    _app: Registry | None = None

    @classmethod
    def register_type(cls, name: str | None = None) -> Callable[[S], S]:
        """Class decorator: register a primitive under its ``subtask_type`` (its class name by
        default), so :meth:`from_dict` rebuilds it from plain data."""
        def register(subclass: S) -> S:
            cls.TYPES[name or subclass.__name__] = subclass
            return subclass

        return register

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Registry | None = None) -> Signature:
        """The signature (of the right primitive) a plain dict describes."""
        kind = d.get("subtask_type")
        if kind:
            target = cls.TYPES.get(kind)
            if target is None:
                raise ValueError(f"Unknown signature type {kind!r}: not one of "
                                 f"{', '.join(sorted(cls.TYPES))}")
            if target is not cls:
                return target.from_dict(d, app=app)
        return Signature(dict(d), app=app)

    def __init__(self, task: Any = None, args: Iterable[Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None, type: Any = None,
                 subtask_type: str | None = None, immutable: bool = False,
                 app: Registry | None = None, **ex: Any) -> None:
        if isinstance(task, Mapping):
            super().__init__(task)  # a signature's plain data
            self["args"] = tuple(self.get("args") or ())  # (a list, after JSON)
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
        else:
            name = task if isinstance(task, str) or task is None else task.name
            if app is None and task is not None and not isinstance(task, str):
                app = getattr(task, "jobs", None)
            if args is not None and isinstance(args, (str, bytes, Mapping)):
                raise TypeError(f"args must be a list or tuple, not {type_name(args)}")
            super().__init__(task=name, args=tuple(args or ()), kwargs=dict(kwargs or {}),
                             options=dict(options or {}, **ex), subtask_type=subtask_type,
                             immutable=bool(immutable))
        self._app = app

    # -- fields ------------------------------------------------------------------------------

    @property
    def task(self) -> str:
        """The task name."""
        return cast(str, self["task"])

    name = task

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments."""
        return tuple(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments."""
        return cast(dict[str, Any], self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        """The call options."""
        return cast(dict[str, Any], self["options"])

    @property
    def subtask_type(self) -> str | None:
        """The primitive (``group``, ``chain``, ``chord``...), or None for a task call."""
        return cast("str | None", self.get("subtask_type"))

    @property
    def immutable(self) -> bool:
        """Whether partial arguments (a parent's result) are ignored."""
        return bool(self.get("immutable"))

    @property
    def id(self) -> str | None:
        """The task id given in advance (:meth:`freeze`), if any."""
        return cast("str | None", self.options.get("task_id"))

    @property
    def jobs(self) -> Registry:
        """The extension this signature sends through."""
        if self._app is None:
            state: AppState = current_app.extensions["jobs"]
            return state.jobs
        return self._app

    @property
    def type(self) -> TaskLike:
        """The registered task this signature calls.

        :raises NotRegistered: it is not registered in this process.
        """
        return self.jobs.task_named(self.task)

    # -- calling -----------------------------------------------------------------------------

    def _merge(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
               options: Mapping[str, Any] | None = None, force: bool = False
               ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Partial arguments in front of ours, kwargs and options merged (theirs win); an
        immutable signature keeps its arguments unless ``force``."""
        new_options = {**self.options, **options} if options else self.options
        if self.immutable and not force:
            return self.args, self.kwargs, new_options
        return ((*tuple(args), *self.args) if args else self.args,
                {**self.kwargs, **kwargs} if kwargs else self.kwargs, new_options)

    def _partial(self, args: Iterable[Any] | None, kwargs: Mapping[str, Any] | None,
                 options: Mapping[str, Any] | None) -> tuple[tuple[Any, ...], dict[str, Any],
                                                               dict[str, Any]]:
        """For a primitive (whose ``kwargs`` hold its parts): the partial arguments it passes
        on (``args`` in front of its own, unless immutable), ``kwargs``, and merged options."""
        own = () if self.immutable else tuple(args or ())
        return (*own, *self.args), dict(kwargs or {}), {**self.options, **(options or {})}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now and return its value, as Celery does (``add.s(2, 2)()``
        is 4)."""
        full_args, full_kwargs, _ = self._merge(args, kwargs)
        task = self.type
        return task(*full_args, **full_kwargs)  # type: ignore[operator]

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send it with partial arguments: ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> Any:
        """Send it, with partial arguments and extra options; returns its
        :class:`~flask_jobs.AsyncResult`."""
        options = {k: v for k, v in options.items() if v is not None}
        full_args, full_kwargs, full_options = self._merge(args, kwargs, options)
        jobs = self.jobs
        return calling.send(jobs.state(), jobs.tasks.get(self.task), self.task, full_args,
                            full_kwargs, dict(full_options))

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """Run it here (an :class:`~flask_jobs.EagerResult`), with partial arguments."""
        options = {k: v for k, v in options.items() if v is not None}
        full_args, full_kwargs, full_options = self._merge(args, kwargs, options)
        state = self.jobs.state()
        return calling.apply_eagerly(state, self.type, full_args, full_kwargs,
                                     dict(full_options))

    def __invert__(self) -> Any:
        """``~sig``: send it and wait for its value (a shortcut for the shell)."""
        return self.apply_async().get()

    # -- deriving ----------------------------------------------------------------------------

    def clone(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy with partial arguments and options merged in (see the module docstring)."""
        if args or kwargs or options:
            new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        else:
            new_args, new_kwargs, new_options = self.args, self.kwargs, self.options
        return Signature.from_dict({**self, "args": tuple(new_args),
                                    "kwargs": dict(new_kwargs),
                                    "options": copy.deepcopy(new_options)}, app=self._app)

    partial = clone

    def replace(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None) -> Signature:
        """A copy with ``args``, ``kwargs`` or ``options`` replaced (not merged)."""
        data = dict(self)
        if args is not None:
            data["args"] = tuple(args)
        if kwargs is not None:
            data["kwargs"] = dict(kwargs)
        if options is not None:
            data["options"] = dict(options)
        return Signature.from_dict(data, app=self._app)

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set options (and ``immutable``) in place; returns the signature."""
        if immutable is not None:
            self.set_immutable(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Make partial arguments ignored (``True``) or taken (``False``)."""
        self["immutable"] = bool(immutable)

    def freeze(self, _id: str | None = None, group_id: str | None = None, **_ignored: Any
               ) -> Any:
        """Give it its task id now (``_id``, or a new one) and return the result it will have;
        sending it later uses that id."""
        task_id = self.options.get("task_id") or _id or new_task_id()
        self.options["task_id"] = task_id
        if group_id:
            self.options["group_id"] = group_id
        return AsyncResult(task_id, jobs=self._app, task_name=self.task)

    def link(self, callback: Mapping[str, Any]) -> Any:
        """Send ``callback`` with this task's result when it succeeds; returns ``callback``."""
        return self._add_callback("link", callback)

    def link_error(self, errback: Mapping[str, Any]) -> Any:
        """Send ``errback`` with this task's id when it fails; returns ``errback``."""
        return self._add_callback("link_error", errback)

    def on_error(self, errback: Mapping[str, Any]) -> Signature:
        """:meth:`link_error`, returning this signature (for chaining calls)."""
        self.link_error(errback)
        return self

    def _add_callback(self, option: str, callback: Mapping[str, Any]) -> Any:
        existing = self.options.get(option)
        if existing is None:
            self.options[option] = [callback]
        elif isinstance(existing, list):
            existing.append(callback)
        else:
            self.options[option] = [existing, callback]
        return callback

    def __or__(self, other: Any) -> Any:  # Celery's a | b
        """``a | b``: a chain (a group after it takes its result; see :class:`chain`)."""
        if isinstance(other, Signature):
            return self.TYPES["chain"](self, other)
        return NotImplemented

    __ior__ = __or__

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        memo[id(self)] = self
        return Signature.from_dict(copy.deepcopy(dict(self), memo), app=self._app)

    def __reduce__(self) -> tuple[Any, ...]:
        return Signature.from_dict, (dict(self),)

    def __repr__(self) -> str:
        call = ", ".join([*map(repr, self.args),
                          *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.task}({call})"


def type_name(value: Any) -> str:
    """The type of ``value``, for an error message."""
    return type(value).__name__


def signature(varies: Any, *args: Any, **kwargs: Any) -> Any:
    """A signature: a copy of a signature, one rebuilt from its plain data (a dict, as in a
    message), or a new one for a task or task name (``signature("tasks.add", args=(2, 2),
    countdown=10)``; the arguments of :class:`Signature`).
    """
    app = kwargs.get("app")
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies, app=app)
    return Signature(varies, *args, **kwargs)


subtask = signature


def maybe_signature(d: Any, app: Registry | None = None, clone: bool = False) -> Any:
    """``d`` as a signature (rebuilt from a dict, cloned if asked), or None for None."""
    if d is None:
        return None
    if isinstance(d, Signature):
        sig = d.clone() if clone else d
    elif isinstance(d, Mapping):
        sig = Signature.from_dict(d, app=app)
    else:
        raise TypeError(f"Expected a signature (e.g. add.s(2)), not {type_name(d)}")
    if app is not None:
        sig._app = app
    return sig


def jobs_of(signatures: Iterable[Signature], app: Registry | None = None) -> Registry:
    """The extension a workflow sends through: ``app``, else its first signature's."""
    if app is not None:
        return app
    for sig in signatures:
        if sig._app is not None:
            return sig._app
    state: AppState = current_app.extensions["jobs"]
    return state.jobs


def chain_ids(links: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids given in advance to the steps of a chain after a task (its ``chain`` stack,
    or, from older versions, its ``link`` options, nested), which will never run once that
    task failed.

    A chord's step is its body's id (a chain body's, its steps'); callbacks users added
    themselves have no id of their own and are not followed.
    """
    ids: list[str] = []
    todo = list(links)
    while todo:
        sig = todo.pop()
        kind = sig.get("subtask_type")
        if kind == "chord":
            todo.append(sig["kwargs"]["body"])
            continue
        if kind == "chain":
            todo.extend(sig["kwargs"]["tasks"])
            continue
        options = sig.get("options") or {}
        if options.get("task_id"):
            ids.append(str(options["task_id"]))
            for name in ("link", "chain"):
                following = options.get(name)
                if following:
                    todo.extend(following if isinstance(following, (list, tuple))
                                else [following])
    return ids

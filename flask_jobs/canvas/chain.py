"""``chain``: signatures run one after another, each getting the previous one's result.

A chain is composed as Celery composes it (``a | b``): a chain in a chain is flattened, a group
with one member becomes that member, a group followed by a task becomes a chord, and a task
after a chord joins the chord's body.

Sending gives every step its id in advance, gives the first step the later ones as a flat
stack (its ``chain`` option, as Celery's ``request.chain``: the worker pops the next step and
sends it with the result in front of its arguments and the rest of the stack), writes a
PENDING placeholder for every task step (so the chain's status URL, its last step's, answers at
once) and the chain's counters (so that URL shows how far the whole chain is), then sends the
first step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from ..message import new_task_id
from ..result import AsyncResult, GroupResult
from ..state import Registry
from .chord import chord
from .group import as_signatures, group, is_plain
from .signature import Signature, jobs_of, maybe_signature


def _unroll(sig: Signature) -> Signature:
    """A group of one member is that member when chained (as in Celery 5)."""
    if isinstance(sig, group) and len(sig.tasks) == 1:
        return sig.tasks[0]
    return sig


def compose(steps: list[Signature], other: Signature) -> list[Signature]:
    """``steps`` with ``other`` chained after them (Celery's rules, see the module docstring)."""
    steps = list(steps)
    if isinstance(other, chain):
        for step in other.unchain_tasks():
            steps = compose(steps, step)
        return steps
    other = _unroll(other)
    last = steps[-1] if steps else None
    if isinstance(other, group):
        if isinstance(last, chord):  # a chord's body takes the group after it
            steps[-1] = last.with_body(cast(Signature, last.body | other))
            return steps
        return [*steps, other]
    if isinstance(last, group):  # group | task: a chord
        steps[-1] = chord(last, body=other, app=last._app)
        if len(steps) > 1 and isinstance(steps[-2], chord):  # two chords in a row: one body
            steps[-2] = steps[-2].with_body(cast(Signature, steps[-2].body | steps[-1]))
            steps.pop()
        return steps
    if isinstance(last, chord) and not isinstance(other, chord):  # chord | task: its body
        steps[-1] = last.with_body(cast(Signature, last.body | other))
        return steps
    return [*steps, other]


@Signature.register_type()
class chain(Signature):  # noqa: N801 - Celery's name
    """Run signatures one after another: ``chain(add.s(2, 2), add.s(4), mul.s(8))()`` is
    ``mul(add(add(2, 2), 4), 8)``. Also written ``add.s(2, 2) | add.s(4) | mul.s(8)``.

    :param tasks: the steps, or one iterable of them.
    :param options: options for the whole chain: ``link`` goes to its last step,
        ``link_error`` to every step.

    The result of sending it is the last step's (its ``parent`` is the step before, and so
    on). Partial arguments go to the first step. A step that fails (or is revoked) ends the
    chain: every later step takes its state, and ``get()`` on the chain's result raises its
    error.
    """

    def __init__(self, *tasks: Any, **options: Any) -> None:
        app = options.pop("app", None)
        steps: list[Signature] = []
        for step in as_signatures(tasks, app) if tasks else []:
            steps = compose(steps, step)
        Signature.__init__(self, "flask_jobs.chain", (), {"tasks": steps}, options,
                           subtask_type="chain", app=app)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Registry | None = None) -> Signature:
        """The chain of a plain dict."""
        sig = cls.__new__(cls)
        steps = [maybe_signature(t, app) for t in d["kwargs"]["tasks"]]
        Signature.__init__(sig, "flask_jobs.chain", d.get("args") or (), {"tasks": steps},
                           d.get("options") or {}, subtask_type="chain",
                           immutable=bool(d.get("immutable")), app=app)
        return sig

    @property
    def tasks(self) -> list[Signature]:
        """The steps."""
        return cast(list[Signature], self.kwargs["tasks"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Send the chain with partial arguments for its first step (as Celery's
        ``chain(...)(16)``)."""
        return self.apply_async(args, kwargs)

    def clone(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy, its steps cloned, with partial arguments and options merged in."""
        sig = Signature.clone(self, args, kwargs, **options)
        sig.kwargs["tasks"] = [s.clone() for s in self.tasks]
        return sig

    def unchain_tasks(self) -> list[Signature]:
        """Copies of the steps, with the chain's ``link`` on the last one and its
        ``link_error`` on every one (what chaining this chain into another keeps)."""
        steps = [s.clone() for s in self.tasks]
        links = self.options.get("link") or []
        for sig in links if isinstance(links, list) else [links]:
            steps[-1].link(sig)
        errbacks = self.options.get("link_error") or []
        for sig in errbacks if isinstance(errbacks, list) else [errbacks]:
            for step in steps:
                step.link_error(sig)
        return steps

    def __or__(self, other: Any) -> Any:
        """``chain | sig``: a longer chain (see :func:`compose`)."""
        if not isinstance(other, Signature):
            return NotImplemented
        sig = chain.__new__(chain)
        Signature.__init__(sig, "flask_jobs.chain", self.args,
                           {"tasks": compose(self.unchain_tasks(), other)},
                           {k: v for k, v in self.options.items()
                            if k not in ("link", "link_error")},
                           subtask_type="chain", app=self._app)
        return sig

    def freeze(self, _id: str | None = None, group_id: str | None = None, **_ignored: Any
               ) -> Any:
        """Give every step its id now; returns the last step's result, whose ``parent``
        links lead back to the first step's."""
        steps = self.tasks
        if not steps:
            raise ValueError("An empty chain has nothing to run")
        if _id and not steps[-1].id:
            steps[-1].options["task_id"] = _id
        result: Any = None
        for step in steps:
            step_result = step.freeze()
            _set_parent(step_result, result)
            result = step_result
        return result

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> Any:
        """Send the first step, with the rest linked behind it; returns the last step's
        result."""
        if not self.tasks:
            raise ValueError("An empty chain has nothing to run")
        options = {k: v for k, v in options.items() if v is not None}
        jobs = jobs_of(self.tasks, self._app)
        if jobs.state().settings.always_eager:
            return self.apply(args, kwargs, **options)
        partial_args, partial_kwargs, opts = self._partial(args, kwargs, options)
        first, result = self.prepare(opts, opts.pop("task_id", None), opts.pop("group_id", None))
        first.apply_async(partial_args, partial_kwargs,
                          **{k: v for k, v in opts.items()
                             if k not in ("link", "link_error", "chain")})
        return result

    def prepare(self, options: dict[str, Any], last_id: str | None = None,
                member_of: str | None = None) -> tuple[Signature, Any]:
        """Everything but sending the first step: ids for every step, placeholders and
        counters written, and the rest of the chain given to the first step as its ``chain``
        option: a flat stack of the later steps (the next one last, as Celery's), which the
        worker pops one step at a time. Returns the first step, ready to send (or for a chord
        to hold as its body), and the chain's result.

        :param options: the chain's options: ``link`` goes to the last step, ``link_error`` to
            every step, ``owner`` to every step (so its status URLs obey it), ``chain`` (a
            stack of steps to run after this chain's last one) goes on.
        :param last_id: the id of the last step (the chain's own task id).
        :param member_of: a group whose member this chain is (its last step counts there).
        """
        state = jobs_of(self.tasks, self._app).state()
        steps = self.unchain_tasks()
        for sig in _as_list(options.get("link")):
            steps[-1].link(sig)
        for sig in _as_list(options.get("link_error")):
            for step in steps:
                step.link_error(sig)
        owner = options.get("owner")
        if owner is not None:
            for step in steps:
                step.options.setdefault("owner", owner)
        result = chain.freeze(_with_tasks(self, steps), last_id)
        stack = [*(options.get("chain") or ()), *reversed(steps[1:])]
        if stack:
            steps[0].options["chain"] = stack
        recorded = _recorded_steps(steps)
        final = _recorded_steps(steps[-1:])
        if member_of:
            (final[0] if final else steps[-1]).options["group_id"] = member_of
        state.broker.placeholders(
            [(s.id, s.task, (member_of or "") if final and s is final[0] else "")
             for s in recorded if s.id],
            "" if owner is None else str(owner), new_task_id())
        return steps[0], result

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """Run the chain here, step by step; returns the last step's EagerResult."""
        partial_args, partial_kwargs, opts = self._partial(args, kwargs, options)
        result: Any = None
        value_args: tuple[Any, ...] = tuple(partial_args)
        value_kwargs = dict(partial_kwargs)
        for step in self.tasks:
            step_result = step.apply(value_args, value_kwargs, **opts)
            _set_parent(step_result, result)
            result = step_result
            value_args, value_kwargs = (result.get(),), {}
        return result

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.tasks) or "chain()"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _with_tasks(template: chain, steps: list[Signature]) -> chain:
    sig = chain.__new__(chain)
    Signature.__init__(sig, "flask_jobs.chain", (), {"tasks": steps}, {},
                       subtask_type="chain", app=template._app)
    return sig


def _recorded_steps(steps: list[Signature]) -> list[Signature]:
    """The steps whose result is a task record (a task's, a chord's body's): they get
    placeholders and count in the chain's counters."""
    recorded = []
    for step in steps:
        if is_plain(step):
            recorded.append(step)
        elif isinstance(step, chord) and is_plain(step.body):
            recorded.append(step.body)
    return recorded


def _set_parent(result: Any, parent: Any) -> None:
    """Link ``result`` (or, for a group's, each member's) back to ``parent``."""
    if parent is None:
        return
    if isinstance(result, GroupResult):
        result.parent = parent
        return
    node = result
    while isinstance(node, AsyncResult) and node.parent is not None:  # (a chord's body: its
        node = node.parent                                           # header comes first)
    if isinstance(node, (AsyncResult, GroupResult)) and node is not parent:
        node.parent = parent

"""``map``, ``starmap`` and ``chunks``: one task over many arguments, as in Celery.

``add.map([1, 2])`` is one message whose worker runs ``[add(1), add(2)]``; ``add.starmap(
[(1, 2), (3, 4)])`` runs ``[add(1, 2), add(3, 4)]``. ``add.chunks(pairs, 10)`` splits the
pairs into starmaps of 10 and sends them as a group (``.group()`` gives that group). The
built-in tasks ``flask_jobs.map`` and ``flask_jobs.starmap`` run them; every :class:`~flask_jobs.Jobs`
registers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from ..result import GroupResult
from ..state import Registry
from .group import group
from .signature import Signature, maybe_signature

MAP = "flask_jobs.map"
STARMAP = "flask_jobs.starmap"


class _basemap(Signature):  # noqa: N801
    _task_name = MAP

    def __init__(self, task: Any, it: Iterable[Any], **options: Any) -> None:
        app = options.pop("app", None)
        sig = maybe_signature(task, app)
        Signature.__init__(self, self._task_name, (), {"task": sig, "it": list(it)}, options,
                           subtask_type=type(self).__name__, immutable=True,
                           app=app or sig._app)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Registry | None = None) -> Signature:
        """The map of a plain dict."""
        return cls(d["kwargs"]["task"], d["kwargs"]["it"], app=app,
                   **(d.get("options") or {}))

    def __repr__(self) -> str:
        task = self.kwargs["task"]
        star = "*" if self._task_name == STARMAP else ""
        return f"[{task['task']}({star}x) for x in {self.kwargs['it']!r}]"


@Signature.register_type()
class xmap(_basemap):  # noqa: N801 - Celery's name
    """``task.map(items)``: one task calling ``task(item)`` for each item, in order."""

    _task_name = MAP


@Signature.register_type()
class xstarmap(_basemap):  # noqa: N801 - Celery's name
    """``task.starmap(items)``: one task calling ``task(*item)`` for each item, in order."""

    _task_name = STARMAP


def _parts(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    iterator = iter(it)
    while True:
        part = list(islice(iterator, n))
        if not part:
            return
        yield part


@Signature.register_type()
class chunks(Signature):  # noqa: N801 - Celery's name
    """``task.chunks(items, n)``: the items in parts of ``n``, each part a starmap task; sent
    as a group (a :class:`~flask_jobs.GroupResult` of lists)."""

    def __init__(self, task: Any, it: Iterable[Any], n: int, **options: Any) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"chunks() takes a chunk size of 1 or more, not {n!r}")
        app = options.pop("app", None)
        sig = maybe_signature(task, app)
        Signature.__init__(self, "flask_jobs.chunks", (),
                           {"task": sig, "it": list(it), "n": n}, options,
                           subtask_type="chunks", immutable=True, app=app or sig._app)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Registry | None = None) -> Signature:
        """The chunks of a plain dict."""
        kwargs = d["kwargs"]
        return cls(kwargs["task"], kwargs["it"], kwargs["n"], app=app,
                   **(d.get("options") or {}))

    def __call__(self, **options: Any) -> GroupResult:
        """Send the chunks (as Celery's ``add.chunks(items, 10)()``)."""
        return self.apply_async(**options)

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> GroupResult:
        """Send the chunks as a group of starmap tasks."""
        result: GroupResult = self.group().apply_async(args, kwargs, **{**self.options,
                                                                       **options})
        return result

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> GroupResult:
        """Run the chunks here."""
        return self.group().apply(args, kwargs, **options)

    def group(self) -> group:
        """The group of starmap tasks these chunks are sent as."""
        task, it, n = self.kwargs["task"], self.kwargs["it"], self.kwargs["n"]
        return group([xstarmap(task, part, app=self._app) for part in _parts(it, n)],
                     app=self._app)

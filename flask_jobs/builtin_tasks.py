"""The tasks every :class:`~flask_jobs.Jobs` registers for the canvas, as Celery's app has
``celery.map``, ``celery.starmap`` and the like: a worker runs them, a producer only sends them.

- ``flask_jobs.map`` (``task.map(items)``): ``[task(item) for item in items]``, in one task;
- ``flask_jobs.starmap`` (``task.starmap(items)``): ``[task(*item) for item in items]``;
- ``flask_jobs.identity``: returns its argument; a chord whose body is not one task holds it,
  and the body is linked to it (see :mod:`flask_jobs.canvas.chord`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .canvas.chord import IDENTITY
from .canvas.maps import MAP, STARMAP
from .canvas.signature import Signature, maybe_signature
from .state import Registry

Decorator = Callable[[Callable[..., Any]], Any]


def register_builtins(jobs: Registry, task: Callable[..., Decorator]) -> None:
    """Register the built-in tasks on ``jobs`` with its ``task`` decorator."""

    def target(sig: Any) -> Any:
        signature: Signature = maybe_signature(sig, jobs)
        return signature.type

    @task(name=MAP)
    def map_task(task: Any, it: list[Any]) -> list[Any]:
        """Run ``task`` for each item of ``it``, in order; returns the results."""
        body = target(task)
        return [body(item) for item in it]

    @task(name=STARMAP)
    def starmap_task(task: Any, it: list[Any]) -> list[Any]:
        """Run ``task`` for each item of ``it`` as its arguments; returns the results."""
        body = target(task)
        return [body(*item) for item in it]

    @task(name=IDENTITY)
    def identity(value: Any = None) -> Any:
        """Return ``value`` (a chord's header results, passed on to its body)."""
        return value

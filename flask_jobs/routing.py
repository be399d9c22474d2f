"""Task routing: :data:`JOBS_TASK_ROUTES` (names or globs to queues) made into matchers once."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import ImproperlyConfigured

Route = tuple[Callable[[str], bool], str]


def _glob_matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def compile_routes(routes: Any) -> tuple[Route, ...]:
    """Turn ``JOBS_TASK_ROUTES`` (a dict of name or glob -> queue or ``{"queue": q}``, or a list
    of such dicts) into ``(matcher, queue)`` pairs, in order."""
    if isinstance(routes, Mapping):
        routes = [routes]
    compiled: list[Route] = []
    for table in routes or ():
        for pattern, target in table.items():
            queue = target.get("queue") if isinstance(target, Mapping) else target
            if not isinstance(queue, str):
                raise ImproperlyConfigured(
                    f"JOBS_TASK_ROUTES[{pattern!r}] must be a queue name or {{'queue': name}}, "
                    f"not {target!r}."
                )
            matches: Callable[[str], bool]
            if any(ch in pattern for ch in "*?["):
                matches = functools.partial(_glob_matches, pattern)
            else:
                matches = pattern.__eq__
            compiled.append((matches, queue))
    return tuple(compiled)

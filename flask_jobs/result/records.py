"""A task record as read from Redis, and failures turned back into exceptions."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Sequence
from typing import Any

from .. import exceptions as _exc
from .. import states

#: The fields of a task record a result reads (see :mod:`flask_jobs.keys`), in one ``HMGET``.
FIELDS = ("state", "rtype", "result", "tb", "done", "upd", "name", "worker", "owner", "group",
          "reason", "att", "dlv", "queue", "st")
#: The final states, as stored.
READY_BYTES = frozenset(s.encode() for s in states.READY_STATES)
_dynamic_exceptions: dict[tuple[str, str], type[Exception]] = {}


def rebuild_exception(info: dict[str, Any] | None) -> BaseException:
    """Turn a stored failure description back into an exception, never importing anything.

    Builtins and flask-jobs' own exceptions come back as themselves; so does a class whose
    module the reading process has already imported. Anything else becomes a stand-in subclass
    of :class:`Exception` with the same name and module, so ``except`` by name and ``str()``
    still work, and no stored text can make this process import or run code.
    """
    if not isinstance(info, dict):
        return Exception(str(info))
    name = str(info.get("exc_type") or "Exception")
    module = str(info.get("exc_module") or "builtins")
    message = str(info.get("exc_message", ""))
    cls: Any = None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module == _exc.__name__:
        cls = getattr(_exc, name, None)
    elif module in sys.modules:  # already imported by this process: no code runs here
        cls = getattr(sys.modules[module], name, None)
    if name == "DeadLetteredError" and cls is None:
        cls = _exc.DeadLetteredError
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:  # a constructor with other arguments: fall back to a stand-in
            pass
    key = (module, name)
    if key not in _dynamic_exceptions:
        _dynamic_exceptions[key] = type(name, (Exception,), {"__module__": module})
    return _dynamic_exceptions[key](message)


class Record:
    """One read of a task record (see :mod:`flask_jobs.keys`)."""

    __slots__ = FIELDS
    state: bytes | None
    rtype: bytes | None
    result: bytes | None
    tb: bytes | None
    done: bytes | None
    upd: bytes | None
    name: bytes | None
    worker: bytes | None
    owner: bytes | None
    group: bytes | None
    reason: bytes | None
    att: bytes | None
    dlv: bytes | None
    queue: bytes | None
    st: bytes | None

    def __init__(self, values: Sequence[Any]) -> None:
        """:param values: the record's fields in the order of ``FIELDS`` (an ``HMGET``)."""
        for field, value in zip(FIELDS, values, strict=True):
            object.__setattr__(self, field, value)

    @property
    def exists(self) -> bool:
        """Whether the record was there."""
        return self.state is not None

    @property
    def state_name(self) -> str:
        """The state as text; PENDING for an unknown id (as Celery reports it)."""
        return self.state.decode() if self.state else states.PENDING

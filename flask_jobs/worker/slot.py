"""What a prefork child shares with its parent: the :class:`Slot` in shared memory.

The parent reads which task each child runs, since when and under which hard limit (to kill a
child stuck past it), and writes which task a terminate is aimed at before it signals the child,
so neither side ever stops a task that started after the request.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import time
from typing import Any

_mp = multiprocessing.get_context("fork")


class Slot:
    """What a child shares with the parent: the task it runs, its attempt, start and limit."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.task_id = _mp.RawArray(ctypes.c_char, 64)
        self.numbers = _mp.RawArray(ctypes.c_double, 3)  # attempt, started (monotonic), hard
        self.process: Any = None
        self.name = ""
        self.kill_reason: str | None = None
        self.kill_deadline: float | None = None
        #: The task a kill or terminate is aimed at; written by the parent before it signals,
        #: so neither side ever stops a task that started after the request.
        self.target = _mp.RawArray(ctypes.c_char, 64)

    def set(self, task_id: str, attempt: int, hard: float | None) -> None:
        """Called by the child when a task starts."""
        self.numbers[0] = attempt
        self.numbers[1] = time.monotonic()
        self.numbers[2] = hard or 0.0
        self.task_id.value = task_id.encode()

    def clear(self) -> None:
        """Called by the child when a task ends."""
        self.task_id.value = b""

    @property
    def running(self) -> str:
        """The id of the task the child runs, or ''."""
        return self.task_id.value.decode()

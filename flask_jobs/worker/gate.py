"""Let a suspect task run alone in its process, while other tasks run side by side.

A suspect is a task that was held by a worker process that died holding several tasks: one of
them may have killed it, and nothing says which (see ``scripts/reap.lua``). The claim script
hands a suspect out alone; a worker with several consumers (threads, gevent) runs it through
:meth:`Gate.exclusive` so that nothing else runs in the process meanwhile. If the process dies
again, the reaper then knows the suspect was the one running, and counts the delivery against it
alone. Solo workers and prefork children have one consumer and need no gate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class Gate:
    """A readers-writer lock whose writers (suspects) go first once they wait.

    Tasks enter :meth:`shared` and run together; a suspect enters :meth:`exclusive` and waits
    until the running tasks finish, while tasks that come after it wait for it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._exclusive = False
        self._waiting = 0  # suspects waiting for their turn

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Run an ordinary task (side by side with other ordinary tasks)."""
        with self._cond:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if not self._running:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Run a suspect, with no other task running in this process."""
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._running:
                    self._cond.wait()
            except BaseException:  # e.g. a shutdown's Wakeup: let the others go on
                self._waiting -= 1
                self._cond.notify_all()
                raise
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()

    def enter(self, suspect: bool) -> AbstractContextManager[None]:
        """:meth:`exclusive` for a suspect, else :meth:`shared`."""
        return self.exclusive() if suspect else self.shared()

"""Worker and beat processes started by ``flask jobs multi`` and ``flask jobs dev``.

A :class:`JobsProcess` runs ``python -m flask [--app APP] jobs <command> ...`` with its output in
a log file (``multi``: it runs on after the command returns) or relayed line by line with a
prefix (``dev``); :meth:`JobsProcess.wait_ready` waits for the line that says it is up, and
:meth:`JobsProcess.stop` for its warm shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from .embedded.process import pid_alive

#: The line a worker logs when it takes tasks, and the first line of a beat's banner.
READY_MARKERS = ("ready.", "is starting.")


def flask_argv(app_import_path: str | None, command: Sequence[str]) -> list[str]:
    """The command line of ``flask [--app APP] jobs <command>`` in this interpreter."""
    app = ["--app", app_import_path] if app_import_path else []
    return [sys.executable, "-m", "flask", *app, "jobs", *command]


def alive(pid: int) -> bool:
    """Whether process ``pid`` is alive (exists and is not a zombie)."""
    return pid_alive(pid)


class JobsProcess:
    """A ``flask jobs`` subprocess.

    :param argv: its command line (see :func:`flask_argv`).
    :param logfile: append its output here, and detach it (a session of its own): it outlives
        this process. Without one, its lines are relayed to ours after ``prefix``, and it is
        stopped with us.
    :param env: extra environment variables.
    """

    def __init__(self, argv: list[str], logfile: Path | None = None, prefix: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.logfile = logfile
        self.prefix = prefix
        self._seen: list[str] = []
        self._ready = threading.Event()
        full_env = {**os.environ, **(env or {})}
        out: IO[Any] | int
        if logfile is not None:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(logfile, "a", encoding="utf-8")  # noqa: SIM115 - kept for its life
            self._start = logfile.stat().st_size
            out = self._log
        else:
            out = subprocess.PIPE
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=logfile is not None,
                                     text=logfile is None, bufsize=1 if logfile is None else -1)
        if logfile is None:
            threading.Thread(target=self._relay, daemon=True).start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(f"{self.prefix}{line}")
            sys.stdout.flush()
            if any(m in line for m in READY_MARKERS):
                self._ready.set()

    def output(self) -> str:
        """What it printed since it started (from its log file)."""
        if self.logfile is None:
            return ""
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            f.seek(self._start)
            return f.read()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until it says it is up; False if it exited or did not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._ready.is_set() or any(m in self.output() for m in READY_MARKERS):
                return True
            self._ready.wait(0.05)  # (a deadline loop's pause, not a timing assumption)
        return False

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (a warm shutdown), then SIGKILL after ``timeout``; returns the exit code."""
        return stop_pid(self.proc.pid, timeout, self.proc)


def stop_pid(pid: int, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None,
             ) -> int | None:
    """Stop process ``pid`` with SIGTERM, wait for it to exit (its warm shutdown), SIGKILL
    it after ``timeout``; returns its exit code when it is our child, else None."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return proc.poll() if proc is not None else None
    deadline = time.monotonic() + timeout
    while (proc.poll() is None) if proc is not None else alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)  # (polling a process that is not our child: no wait() for it)
    return proc.wait() if proc is not None else None

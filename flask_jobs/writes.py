"""What a worker writes back: the write records of ``apply_writes`` in ``scripts/lib.lua``.

A worker buffers them (started, progress, final state, retry, give back, dead letter) and sends
them in batches, with its next claim or from its flusher. Each carries the delivery attempt,
the fencing token that lets Redis refuse a zombie's write. The layout is on the wire: old and
new workers share one Redis during a rolling deploy.
"""

from __future__ import annotations

from .states import PROGRESS, STARTED

#: One write of a worker (see ``apply_writes`` in ``scripts/lib.lua``): kind, task id, attempt,
#: state, result type, result, traceback, option, body. Kinds: ``S`` started, ``P`` progress or
#: a custom state, ``F`` final state, ``R`` retry, ``L`` give back unstarted, ``D`` dead letter,
#: ``X`` ignored (or replaced).
Write = tuple[str, str, int, str, str, bytes | str, str, str | int, bytes | str]


def started_write(task_id: str, attempt: int) -> Write:
    """The task began running (state ``STARTED``)."""
    return ("S", task_id, attempt, STARTED, "", "", "", "", "")


def progress_write(task_id: str, attempt: int, state: str | None, rtype: str,
                   meta: bytes) -> Write:
    """A progress report or custom state (``PROGRESS`` when ``state`` is None), its meta
    encoded as ``rtype``."""
    return ("P", task_id, attempt, state or PROGRESS, rtype, meta, "", "", "")


def final_write(task_id: str, attempt: int, state: str, rtype: str, result: bytes | str,
                traceback: str = "", ignore_result: bool = False,
                runtime_ms: int | None = None) -> Write:
    """A final state (SUCCESS, FAILURE, REVOKED) with its result or failure description.

    :param ignore_result: store no result (the script drops it, and the body).
    :param runtime_ms: how long the run took (for its event and the runtime metrics; a quick
        task's STARTED is never written, so Redis cannot tell).
    """
    return ("F", task_id, attempt, state, rtype, result, traceback,
            "i" if ignore_result else "", "" if runtime_ms is None else str(runtime_ms))


def retry_write(task_id: str, attempt: int, description: str, traceback: str,
                countdown_ms: int, body: bytes) -> Write:
    """State RETRY, and the new message queued again (``body``) after ``countdown_ms``."""
    return ("R", task_id, attempt, "RETRY", "json", description, traceback, countdown_ms, body)


def give_back_write(task_id: str, attempt: int) -> Write:
    """A claimed task that never started goes back to the front of its queue; this delivery
    does not count towards :data:`JOBS_MAX_DELIVERIES`."""
    return ("L", task_id, attempt, "", "", "", "", "", "")


def dead_letter_write(task_id: str, attempt: int, name: str, reason: str) -> Write:
    """Quarantine a task that cannot run here (undecodable, unknown name) with the reason."""
    return ("D", task_id, attempt, "", "", reason, "", name, "")


def ignored_write(task_id: str, attempt: int, replaced_by: str = "") -> Write:
    """The run raised Ignore: release the task without a state; with ``replaced_by``, that
    task's outcome becomes this one's when it has one (``Task.replace``)."""
    return ("X", task_id, attempt, "", "", "", "", replaced_by, "")

"""``Task.replace``: a running task hands its place to a signature, a chain or a group.

The replacement is sent with the running task's callbacks (``link``, ``link_error``), the rest
of its chain (which goes on after the replacement) and its owner. The task then ends with
:class:`~flask_jobs.exceptions.Ignore`, naming the replacement's result; the script that
applies that write links the two records, and when the replacement's result is final its
state and value are copied to the replaced task's record (``forward`` in lib.lua), which then
counts in its group, chord or chain as if it had finished itself. So callers holding the
replaced task's id see the replacement's result, and a crash between the two steps runs the
task again (it replaces itself again) instead of losing it.

A group becomes a chord whose body is the built-in identity task: the replaced task's result is
the list of the group's results, as in Celery.
"""

from __future__ import annotations

from typing import Any

from ..request import Context
from .chord import IDENTITY, chord
from .group import group
from .signature import Signature, maybe_signature, type_name


def send_replacement(request: Context, sig: Any, app: Any) -> str:
    """Send ``sig`` in place of the task running ``request``; returns the id whose outcome
    becomes the running task's."""
    if not isinstance(sig, Signature):
        if not isinstance(sig, dict):
            raise TypeError(f"replace() takes a signature (e.g. add.s(2)), not {type_name(sig)}")
    sig = maybe_signature(sig, app, clone=True)
    if isinstance(sig, group):
        sig = chord(sig, Signature(IDENTITY, app=app), app=app)
    for callback in request.link or ():
        sig.link(callback)
    for errback in request.link_error or ():
        sig.link_error(errback)
    options: dict[str, Any] = {}
    if request.owner is not None:
        options["owner"] = request.owner
    if request.chain:  # the rest of the chain the task is a step of goes on after it
        options["chain"] = request.chain
    result = sig.apply_async(**options)
    return str(result.id)

"""Who may read or revoke a task, and refusing cross-site requests (CSRF).

Two hooks decide (:func:`authorize`): the current owner (:meth:`Jobs.current_owner
<flask_jobs.Jobs.current_owner>` or :data:`JOBS_CURRENT_OWNER`) and the status authorizer
(:meth:`Jobs.status_authorizer <flask_jobs.Jobs.status_authorizer>` or
:data:`JOBS_STATUS_AUTHORIZER`); both must allow. The settings are read at each request, so an
app may change them at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import request
from werkzeug.exceptions import Forbidden
from werkzeug.utils import import_string

from ..state import Registry
from .lookups import Found

#: ``Sec-Fetch-Site`` values of a request that no other site made.
_CROSS_SITE_OK = frozenset({"same-origin", "same-site", "none"})

#: Hooks configured as import strings, imported once (by string) rather than at each request.
_imported: dict[str, Any] = {}


def _hook(config_key: str, value: Any,
          fallback: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """The hook configured by ``config_key`` (a callable or an import string), else ``fallback``
    (the one registered on the extension).

    :raises TypeError: the setting is neither callable nor an import string.
    """
    if isinstance(value, str):
        if value not in _imported:
            _imported[value] = import_string(value)
        value = _imported[value]
    if value is not None and not callable(value):
        raise TypeError(f"{config_key} must be a callable or an import string, not {value!r}")
    return value or fallback


def authorize(jobs: Registry, action: str, found: Found) -> None:
    """Refuse with 403 unless both rules allow ``action`` ("read" or "revoke") on ``found``.

    1. The owner rule, when a current-owner hook is configured: a task started with
       ``owner=`` is only for the user whose id the hook returns (for a group: every member's
       owner must match). Tasks without an owner are not restricted by it.
    2. The status authorizer, when configured: ``authorizer(action, result)`` must be truthy.

    Either hook may also raise an HTTP error itself (``abort(404)`` to hide existence).

    :param jobs: the extension, whose registered hooks apply when no setting names one.
    :param action: ``"read"`` (status and events) or ``"revoke"``.
    :param found: what the view read.
    :raises werkzeug.exceptions.Forbidden: a rule refuses.
    """
    settings = jobs.state().settings
    owner_hook = _hook("JOBS_CURRENT_OWNER", settings.current_owner, jobs._current_owner)
    if owner_hook is not None and found.owners:
        me = owner_hook()
        if me is None or any(str(me) != owner for owner in found.owners):
            raise Forbidden("This task belongs to another user.")
    authorizer = _hook("JOBS_STATUS_AUTHORIZER", settings.status_authorizer,
                       jobs._status_authorizer)
    if authorizer is not None and not authorizer(action, found.result):
        raise Forbidden(f"Not allowed to {action} this task.")


def refuse_cross_site() -> None:
    """Refuse a state-changing request sent by another site (CSRF), with 403.

    Browsers send ``Sec-Fetch-Site``: only ``same-origin``, ``same-site`` and ``none`` (typed
    by the user) pass. Older browsers send ``Origin`` on cross-origin POSTs: its host must be
    this request's host. Requests with neither (non-browser clients) pass.

    :raises werkzeug.exceptions.Forbidden: the request came from another site.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.lower() not in _CROSS_SITE_OK:
            raise Forbidden("Cross-site request refused.")
        return
    origin = request.headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
        raise Forbidden("Cross-origin request refused.")

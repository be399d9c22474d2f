"""The status JSON on the wire: strict, compact JSON, in a response or an SSE ``data:`` line.

Values a task stored that JSON has no word for are encoded as the app's JSON provider would
(dates, UUIDs, dataclasses), else as text; NaN and infinities become ``null``, since browsers'
``JSON.parse`` refuses them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Response, current_app


def _json_default(value: Any) -> Any:
    """Encode what :mod:`json` can't: as the app's JSON provider does, else as text or a list."""
    default = getattr(current_app.json, "default", None)
    if default is not None:
        try:
            return default(value)
        except TypeError:
            pass
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (not JSON; browsers refuse them) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(body: dict[str, Any]) -> str:
    """Compact JSON on one line (as SSE ``data:`` needs); private ``_`` keys left out.

    :param body: a status JSON (or any dict of JSON-able values).
    """
    public = {k: v for k, v in body.items() if not k.startswith("_")}
    try:
        return json.dumps(public, default=_json_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # Rare (a task reported NaN): only then pay for a second walk over the body.
        return json.dumps(_finite(public), default=_json_default, separators=(",", ":"))


def json_response(body: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """A JSON response of ``body`` (see :func:`dumps`) that no cache keeps.

    :param body: the body.
    :param status: the HTTP status code.
    :param headers: more headers to send.
    """
    response = current_app.response_class(dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def error_body(code: int, kind: str, message: str) -> dict[str, Any]:
    """The JSON body of an error answer: ``{"error": {"type", "message"}, "http_status"}``.

    :param code: the HTTP status code.
    :param kind: the error's type, e.g. ``"NotFound"``.
    :param message: what went wrong, for people.
    """
    return {"error": {"type": kind, "message": message}, "http_status": code}

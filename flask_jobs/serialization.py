"""Codecs for messages and results: JSON by default, msgpack if installed, pickle only on request.

JSON carries a few more types than plain JSON, each as a one-key-tagged object so it round-trips:

==================  ==========================================================
Python              on the wire
==================  ==========================================================
``datetime``        ``{"__jobs__": "datetime", "v": "2024-01-02T03:04:05+00:00"}``
``date``/``time``   ``{"__jobs__": "date", "v": "2024-01-02"}`` (``time`` alike)
``UUID``            ``{"__jobs__": "uuid", "v": "..."}``
``Decimal``         ``{"__jobs__": "decimal", "v": "1.10"}``
``bytes``           ``{"__jobs__": "bytes", "v": "<base64>"}``
``tuple``/``set``   a list (as in Celery), so tasks should not rely on the type
==================  ==========================================================

A message whose content type is not in :data:`JOBS_ACCEPT_CONTENT` is never decoded: the worker
dead-letters it (see :class:`~flask_jobs.exceptions.ContentDisallowed`).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import importlib.util
import json
import pickle
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import ContentDisallowed, DecodeError, EncodeError

_TAG = "__jobs__"


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "bytes": base64.b64decode,
}


def _json_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is not None and len(obj) == 2:
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(obj["v"])
    return obj


_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default)
_json_decoder = json.JSONDecoder(object_hook=_json_hook)
# Without a tagged value in the text, the decoder without a hook gives the same result, all in
# C: the hook costs a Python call per JSON object (a chain's rest has hundreds).
_plain_json_decoder = json.JSONDecoder()


def _json_dumps(value: Any) -> bytes:
    return _json_encoder.encode(value).encode()


def _json_loads(data: bytes) -> Any:
    text = data.decode() if isinstance(data, bytes) else data
    if _TAG in text:
        return _json_decoder.decode(text)
    return _plain_json_decoder.decode(text)


def _msgpack_codec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]] | None:
    """msgpack's dumps and loads if msgpack is installed, else None.

    msgpack itself is imported at the first message that uses it, not here: most apps never do,
    and every worker process would carry the module (~0.3 MB) for nothing.
    """
    if importlib.util.find_spec("msgpack") is None:
        return None

    def dumps(value: Any) -> bytes:
        import msgpack

        data: bytes = msgpack.packb(value, default=_json_default, use_bin_type=True)
        return data

    def loads(data: bytes) -> Any:
        import msgpack

        return msgpack.unpackb(data, object_hook=_json_hook, raw=False, strict_map_key=False)

    return dumps, loads


_MIME_NAMES = {
    "application/json": "json",
    "application/x-msgpack": "msgpack",
    "application/msgpack": "msgpack",
    "application/x-python-serialize": "pickle",
}


class Codecs:
    """The codecs one app may use, and the content types it accepts.

    :param accept: content type names that may be decoded (:data:`JOBS_ACCEPT_CONTENT`).
    """

    def __init__(self, accept: Iterable[str] = ("json",)) -> None:
        # Celery's accept_content takes MIME types as well as serializer names.
        self.accept = frozenset(_MIME_NAMES.get(a, a) for a in accept)
        self._dumps: dict[str, Callable[[Any], bytes]] = {"json": _json_dumps}
        self._loads: dict[str, Callable[[bytes], Any]] = {"json": _json_loads}
        packed = _msgpack_codec()
        if packed is not None:
            self._dumps["msgpack"], self._loads["msgpack"] = packed
        # pickle can run any code when decoded: only ever decoded if listed in accept.
        self._dumps["pickle"] = lambda v: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
        self._loads["pickle"] = pickle.loads
        unknown = self.accept - self._loads.keys()
        if unknown:
            raise ValueError(
                f"JOBS_ACCEPT_CONTENT lists unknown content types {sorted(unknown)}; "
                f"available: {sorted(self._loads)} (msgpack needs `pip install msgpack`)."
            )

    def check_serializer(self, name: str) -> None:
        """Raise a clear error if ``name`` cannot be used to encode."""
        if name not in self._dumps:
            hint = " (install it with `pip install msgpack`)" if name == "msgpack" else ""
            raise ValueError(f"Unknown serializer {name!r}{hint}; use one of {sorted(self._dumps)}.")
        if name not in self.accept:
            raise ValueError(
                f"Serializer {name!r} is not in JOBS_ACCEPT_CONTENT {sorted(self.accept)}, so "
                f"workers would refuse its messages. Add it to JOBS_ACCEPT_CONTENT."
            )

    def dumps(self, value: Any, serializer: str = "json") -> bytes:
        """Encode ``value``; raise :class:`EncodeError` naming the offending type."""
        try:
            return self._dumps[serializer](value)
        except KeyError:
            self.check_serializer(serializer)
            raise
        except (TypeError, ValueError, OverflowError, pickle.PicklingError) as exc:
            raise EncodeError(f"Cannot encode with serializer {serializer!r}: {exc}") from exc

    def loads(self, data: bytes, content_type: str) -> Any:
        """Decode ``data``; refuse content types that are not accepted, before decoding."""
        if content_type not in self.accept:
            raise ContentDisallowed(
                f"Refusing to decode content type {content_type!r}: not in JOBS_ACCEPT_CONTENT "
                f"{sorted(self.accept)}."
            )
        try:
            return self._loads[content_type](data)
        except Exception as exc:
            raise DecodeError(f"Cannot decode {content_type!r} data: {exc}") from exc

    def loads_result(self, data: bytes, content_type: str) -> Any:
        """Decode a stored result. Results written by our own workers in an accepted type only."""
        return self.loads(data, content_type)

"""Signatures and workflows, with Celery's names and semantics.

- :mod:`~flask_jobs.canvas.signature`: :class:`Signature` (a task call as plain data),
  :func:`signature`, partial application, callbacks;
- :mod:`~flask_jobs.canvas.group`: :class:`group` (parallel, one result);
- :mod:`~flask_jobs.canvas.chord`: :class:`chord` (a group and a callback of its results,
  counted and released in Redis: exactly once, no polling);
- :mod:`~flask_jobs.canvas.chain`: :class:`chain` (one after another; ``a | b``);
- :mod:`~flask_jobs.canvas.maps`: :class:`xmap`, :class:`xstarmap`, :class:`chunks`.
"""

from __future__ import annotations

from .chain import chain
from .chord import chord
from .group import group
from .maps import chunks, xmap, xstarmap
from .signature import Signature, chain_ids, maybe_signature, signature, subtask

__all__ = ["Signature", "chain", "chain_ids", "chord", "chunks", "group", "maybe_signature",
           "signature", "subtask", "xmap", "xstarmap"]

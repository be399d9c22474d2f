"""What a claim returns to a worker: :class:`Claimed` tasks, and the inbox payload format.

A claim (``scripts/claim.lua``) returns each task's id, attempt, delivery count, content type,
body and name; a task handed to an idle consumer at enqueue (``scripts/enqueue.lua``) comes
through its inbox as one payload with the same fields (:func:`parse_handed`).
"""

from __future__ import annotations


class Claimed:
    """A task a worker claimed: what the claim script returned for it."""

    __slots__ = ("id", "attempt", "deliveries", "ctype", "body", "name", "suspect")

    def __init__(self, id: str, attempt: int, deliveries: int, ctype: str, body: bytes,
                 name: str) -> None:
        self.id, self.attempt, self.deliveries = id, attempt, deliveries
        self.ctype, self.body, self.name = ctype, body, name
        #: It was held by a worker that died holding several tasks: run it alone (gate.py).
        self.suspect = False


def parse_handed(payload: bytes) -> Claimed:
    """A task handed to a consumer's inbox at enqueue (format in ``scripts/enqueue.lua``)."""
    head, _, rest = payload.partition(b"\n")
    attempt, deliveries, n_id, n_ctype, n_name = map(int, head.split())
    a, b = n_id, n_id + n_ctype
    return Claimed(rest[:a].decode(), attempt, deliveries, rest[a:b].decode(), rest[b + n_name:],
                   rest[b:b + n_name].decode())

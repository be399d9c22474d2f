"""Celery's crontab field syntax: :class:`crontab_parser` reads one field into a set of values.

:class:`~flask_jobs.schedules.crontab` reads each of its five fields with it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MONTHS", "WEEKDAYS", "ParseException", "crontab_parser"]

#: Day names (Sunday is 0, as in Celery) and month names; a prefix of three letters or more works.
WEEKDAYS = {d: i for i, d in enumerate("sunday monday tuesday wednesday thursday friday saturday".split())}
MONTHS = {name: i for i, name in enumerate("january february march april may june july august september "
                                           "october november december".split(), 1)}

class ParseException(ValueError):
    """A crontab field that can't be read (Celery's name; here also a :class:`ValueError`)."""


class crontab_parser:
    """Celery's parser for one crontab field: ``crontab_parser(60).parse('*/15') == {0, 15, 30, 45}``.
    Values run from ``min_`` to ``min_ + max_ - 1``. A field is a comma-separated list of ``*``,
    ``*/n``, ``a``, ``a-b`` and ``a-b/n``; a range whose end is below its start wraps round
    (``'fri-mon'``, ``'50-10'``). ``names`` maps names to numbers; by default day and month names
    work, as in Celery (:class:`crontab` takes day names only for days, month names for months)."""

    def __init__(self, max_: int = 60, min_: int = 0, names: Mapping[str, int] | None = None) -> None:
        self.max_, self.min_ = max_, min_
        self.names: Mapping[str, int] = {**WEEKDAYS, **MONTHS} if names is None else names

    def parse(self, spec: str) -> set[int]:
        """The set of values ``spec`` matches; :class:`ParseException` if it can't be read."""
        return {value for part in spec.split(",") for value in self._parse_part(part.strip())}

    def _parse_part(self, part: str) -> list[int]:
        if not part:
            raise ParseException("an empty part (a stray comma, or nothing at all)")
        body, slash, step = part.partition("/")
        if body == "*":
            values = list(range(self.min_, self.min_ + self.max_))
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = self._number(first, part), self._number(last, part)
            values = (list(range(low, high + 1)) if low <= high else
                      list(range(low, self.min_ + self.max_)) + list(range(self.min_, high + 1)))
        elif slash:
            raise ParseException(f"{part!r}: a step needs '*' or a range before it: '*/{step}', 'a-b/{step}'")
        else:
            values = [self._number(body, part)]
        if slash:
            if not (step.isascii() and step.isdigit()) or int(step) == 0:
                raise ParseException(f"{part!r}: the step after '/' must be a whole number above 0")
            values = values[::int(step)]
        return values

    def _number(self, text: str, part: str) -> int:
        if text.isascii() and text.isdigit():
            value = int(text)
        else:
            found = [n for name, n in self.names.items() if len(text) >= 3 and name.startswith(text.lower())]
            if not found:
                what = "a number or a name" if self.names else "a number"
                raise ParseException(f"{text!r} in {part!r} is not {what}" if text else
                                     f"{part!r}: a number is missing (negative numbers aren't allowed)")
            value = found[0]
        if not self.min_ <= value < self.min_ + self.max_:
            raise ParseException(f"{value} is out of range {self.min_}-{self.min_ + self.max_ - 1}")
        return value

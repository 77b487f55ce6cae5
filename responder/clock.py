"""One injectable clock (Mailman's ``DateFactory``): tests jump ahead instead of sleeping.

Every timestamp Deskhand stores is an aware UTC datetime (SQLModel refuses naive ones);
``now()`` is the only place that reads the system time.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        """Current time, aware, in UTC."""
        base = self._frozen or datetime.now(timezone.utc)
        return base + self._offset

    def advance(self, **delta: float) -> None:
        self._offset += timedelta(**delta)

    def freeze(self, at: datetime | None = None) -> None:
        self._frozen = at or self.now()
        self._offset = timedelta(0)

    def reset(self) -> None:
        self._offset, self._frozen = timedelta(0), None


clock = Clock()


def utcnow() -> datetime:
    return clock.now()


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)

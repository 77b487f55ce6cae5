"""One injectable clock (Mailman's ``DateFactory``): tests jump ahead instead of sleeping.

Every timestamp Deskhand stores is an aware UTC datetime (SQLModel refuses naive ones);
``now()`` is the only place that reads the system time.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Iterator


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


_shared = Clock()
_private: ContextVar[Clock | None] = ContextVar("deskhand_private_clock", default=None)


class _CurrentClock:
    """``clock``: the private clock of the running context if there is one, else the shared one."""

    def __getattr__(self, name: str):
        return getattr(_private.get() or _shared, name)


clock = _CurrentClock()


@contextmanager
def private_clock() -> Iterator[Clock]:
    """A clock for this thread/task alone: ``eval`` and Try it freeze and advance it while the
    daemon's jobs in other threads keep real time."""
    token = _private.set(Clock())
    try:
        yield _private.get()
    finally:
        _private.reset(token)


def utcnow() -> datetime:
    return (_private.get() or _shared).now()


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)

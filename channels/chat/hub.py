"""Waking the chat panels' long polls when something for their visitor happened in this process.

The send job calls ``notify(sender)`` after it recorded a reply to a chat visitor, the process
job after it routed their message, the API after it stored one (from any thread). The long poll
of that visitor's panel (``responder/web/chat_api.py``) listens from before its first read and
reads the database again at once. A reply sent by another daemon on the same PostgreSQL wakes
nobody here: the poll also reads the database every 12 s on its own (``chat_api.RECHECK_S``),
so it is seen then. One asyncio.Event per waiting request, dropped when it returns, so 200 open
panels hold 200 small objects.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading


class Hub:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    def notify(self, sender: str) -> None:
        """Safe from any thread: wake the panels of ``sender`` now listening in this process."""
        with self._lock:
            events = list(self._waiting.get(sender, ()))
        loop = self.loop
        if not events or loop is None or loop.is_closed():
            return
        for event in events:
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: nobody is waiting
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def listening(self, sender: str):
        """Listen for ``sender``'s news from here on; enter it BEFORE reading the database, so a
        reply sent between the read and the wait still wakes the wait (``Listener.wait``)."""
        self.loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._waiting.setdefault(sender, set()).add(event)
        try:
            yield Listener(event)
        finally:
            with self._lock:
                events = self._waiting.get(sender)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiting[sender]

    async def wait(self, sender: str, timeout: float) -> bool:
        """True when notified within ``timeout`` seconds, False when the time ran out."""
        with self.listening(sender) as listener:
            return await listener.wait(timeout)

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(events) for events in self._waiting.values())


class Listener:
    def __init__(self, event: asyncio.Event):
        self.event = event

    async def wait(self, timeout: float) -> bool:
        """True when notified (since listening began, or within ``timeout`` seconds); clears it."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        self.event.clear()
        return True

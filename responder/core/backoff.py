"""Backoff for a server that can't be reached (IMAP or SMTP): when the jobs try it again.

Used by ``responder.ops.jobs`` around every mailbox poll and every SMTP run. A refused login or a
server down for the night costs one log line per try, at 10 s, 20 s, 40 s… up to 5 minutes
apart, instead of a connection attempt every ``poll_interval_s``.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from responder.core.clock import utcnow

SERVER_BACKOFF_FIRST, SERVER_BACKOFF_CAP = timedelta(seconds=10), timedelta(minutes=5)


class ServerBackoff:
    """Consecutive failures to reach one server (IMAP or SMTP), and when to try it again.

    The first failure costs nothing: the next scheduled run (or IDLE's kick) tries again, since a
    restart is over in a second. From the second on, runs are skipped for 10 s, 20 s, 40 s… up to
    5 minutes, so a wrong password or a server down for the night is not hit every
    ``poll_interval_s``. Times come from the clock, so tests jump ahead instead of sleeping.
    """

    def __init__(self) -> None:
        self.failures = 0
        self.next_try: datetime | None = None

    def is_due(self) -> bool:
        now = utcnow()
        # A clock set back (tests reset it) must not park the server for longer than the cap.
        return self.next_try is None or now >= self.next_try or self.next_try - now > SERVER_BACKOFF_CAP

    def failed(self) -> timedelta:
        self.failures += 1
        delay = (timedelta(0) if self.failures == 1
                 else min(SERVER_BACKOFF_FIRST * 2 ** (self.failures - 2), SERVER_BACKOFF_CAP))
        self.next_try = utcnow() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.next_try = 0, None

    def describe(self, delay: timedelta) -> str:
        if not delay:
            return "trying again at the next run"
        return f"next try in {delay.total_seconds():.0f} s ({self.failures} failures in a row)"


_backoffs: dict[str, ServerBackoff] = {}


def server_backoff(key: str) -> ServerBackoff:
    """The record for one server (``imap:user@host:port/box``, ``smtp:host:port``), shared by all
    contexts in the process: it describes the server, not the caller."""
    return _backoffs.setdefault(key, ServerBackoff())

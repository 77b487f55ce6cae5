"""IMAP adapter (imapclient): fetch raw mail by UID, set flags, and wait for new mail with IDLE.

A thin edge: no database and no decisions. ``responder.ops.jobs.poll_mailbox`` drives it: it asks
for the mailbox state (UIDVALIDITY, UIDNEXT), fetches raw messages after the stored cursor with
``BODY.PEEK[]`` (RFC 3501 §6.4.5: PEEK leaves ``\\Seen`` alone), and sets flags only after the
rows are committed. Mail is never deleted or moved.
"""
from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable, Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from responder.core.errors import ConfigError

log = logging.getLogger("deskhand.imap")

# Keyword set on every original once its row is committed (RFC 3501 §2.3.2 keywords).
STORED_KEYWORD = b"$Deskhand"
ANSWERED = b"\\Answered"
# Fetch at most this many bytes of one message; larger ones are stored truncated with a note.
MAX_MESSAGE_BYTES = 25 * 1024 * 1024
IMAP_ERRORS = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)
# An IDLE connection that lived this long was healthy: its loss starts the backoff afresh. A
# server that accepts and drops at once keeps doubling it instead of being hit every second.
HEALTHY_AFTER_S = 60


class LoginRefused(LoginError):
    """The server refused the user name or password; the message names the settings to fix."""


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes
    internaldate: datetime | None
    flags: tuple[bytes, ...]


@dataclass(frozen=True)
class MailboxState:
    uidvalidity: int
    uidnext: int
    exists: int
    keywords_allowed: bool


class ImapMailbox:
    def __init__(self, email_settings, *, timeout: float = 60.0):
        self.cfg = email_settings
        self.timeout = timeout
        self.client: IMAPClient | None = None
        self.state: MailboxState | None = None

    @property
    def key(self) -> str:
        return f"{self.cfg.username}@{self.cfg.imap_host}:{self.cfg.imap_port}/{self.cfg.mailbox}"

    def connect(self) -> MailboxState:
        context = None
        if self.cfg.imap_ssl:
            context = ssl.create_default_context()
            if not self.cfg.tls_verify:
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        client = IMAPClient(self.cfg.imap_host, port=self.cfg.imap_port, ssl=self.cfg.imap_ssl,
                            ssl_context=context, timeout=self.timeout, use_uid=True)
        client.normalise_times = False  # keep INTERNALDATE's zone: we store aware UTC
        try:
            client.login(self.cfg.username, self.cfg.password())
            info = client.select_folder(self.cfg.mailbox, readonly=False)
        except LoginError as exc:
            _quietly(client.logout)
            raise LoginRefused(
                f"the IMAP server {self.cfg.imap_host}:{self.cfg.imap_port} refused the login for "
                f"{self.cfg.username} ({exc}): check [email] username and the password in "
                f"${self.cfg.password_env} ([email] password_env; Gmail, iCloud, Fastmail and Yahoo "
                "need an app password)") from None
        except BaseException:
            _quietly(client.logout)
            raise
        self.client = client
        permanent = info.get(b"PERMANENTFLAGS", ())
        self.state = MailboxState(uidvalidity=int(info[b"UIDVALIDITY"]),
                                  uidnext=int(info.get(b"UIDNEXT", 0) or 0),
                                  exists=int(info.get(b"EXISTS", 0)),
                                  keywords_allowed=b"\\*" in permanent)
        return self.state

    def close(self) -> None:
        if self.client is not None:
            _quietly(self.client.logout)
            self.client = None

    def __enter__(self) -> "ImapMailbox":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def uids_after(self, last_uid: int) -> list[int]:
        # "N:*" always matches the highest UID even when it is below N (RFC 3501 §6.4.8).
        found = self.client.search(["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in found if uid > last_uid)

    def uids_since(self, day: date) -> list[int]:
        return sorted(self.client.search(["SINCE", day]))

    def fetch(self, uids: list[int]) -> Iterator[FetchedMail]:
        if not uids:
            return
        sizes = self.client.fetch(uids, [b"RFC822.SIZE"])
        small = [u for u in uids if sizes.get(u, {}).get(b"RFC822.SIZE", 0) <= MAX_MESSAGE_BYTES]
        big = [u for u in uids if u not in small and u in sizes]
        rows = self.client.fetch(small, [b"BODY.PEEK[]", b"INTERNALDATE", b"FLAGS"]) if small else {}
        if big:  # headers plus the first part only: recorded, never silently dropped
            rows.update(self.client.fetch(big, [f"BODY.PEEK[]<0.{MAX_MESSAGE_BYTES}>".encode(),
                                                b"INTERNALDATE", b"FLAGS"]))
        for uid in uids:
            data = rows.get(uid)
            if data is None:  # expunged by someone else meanwhile
                continue
            raw = data.get(b"BODY[]") or data.get(b"BODY[]<0>") or b""
            yield FetchedMail(uid, bytes(raw), data.get(b"INTERNALDATE"), tuple(data.get(b"FLAGS", ())))

    def add_flags(self, uids: list[int], flags: list[bytes]) -> None:
        if not uids:
            return
        if not self.state.keywords_allowed:
            flags = [f for f in flags if f.startswith(b"\\")]
        if flags:
            self.client.add_flags(uids, flags)

    def flags(self, uids: list[int]) -> dict[int, tuple[bytes, ...]]:
        return {uid: tuple(d.get(b"FLAGS", ())) for uid, d in self.client.fetch(uids, [b"FLAGS"]).items()}


class IdleWatcher(threading.Thread):
    """Holds an IMAP IDLE connection (RFC 2177) and calls ``on_new_mail`` when mail arrives.

    Re-issues IDLE every 9 minutes (servers drop idle clients after 30) and reconnects with
    backoff (1 s doubling to 5 minutes) after errors. After a reconnect it calls ``on_new_mail``
    once, because mail that arrived while the line was down raises no IDLE event. The poll job
    still runs on its interval, so a broken IDLE only slows replies down; it never loses mail.
    """

    def __init__(self, email_settings, on_new_mail: Callable[[], None]):
        super().__init__(name="imap-idle", daemon=True)
        self.cfg = email_settings
        self.on_new_mail = on_new_mail
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        backoff, lost = 1.0, False
        while not self.stopping.is_set():
            connected_at = None
            try:
                with ImapMailbox(self.cfg, timeout=30) as box:
                    if not box.client.has_capability("IDLE"):
                        log.info("the IMAP server has no IDLE; new mail is found by polling")
                        return
                    connected_at = time.monotonic()
                    if lost:
                        log.info("IMAP IDLE connected again")
                        self.on_new_mail()  # whatever came while we were away
                    self._idle(box.client)
            except (LoginRefused, ConfigError) as exc:
                log.warning("IMAP IDLE: %s; trying again in %.0f s", exc, backoff)
            except IMAP_ERRORS as exc:
                log.warning("IMAP IDLE connection lost (%s); reconnecting in %.0f s",
                            str(exc) or type(exc).__name__, backoff)
            except Exception:  # a bug here must not kill the thread: polling still works
                log.exception("IMAP IDLE failed; reconnecting in %.0f s", backoff)
            if self.stopping.is_set():
                return
            lost = True
            if connected_at is not None and time.monotonic() - connected_at >= HEALTHY_AFTER_S:
                backoff = 1.0
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 300)

    def _idle(self, client: IMAPClient) -> None:
        while not self.stopping.is_set():
            client.idle()
            try:
                news = self._wait(client)
            except BaseException:
                _quietly(client.idle_done)  # the line is gone: the error raised is what matters
                raise
            client.idle_done()
            if news:
                self.on_new_mail()

    def _wait(self, client: IMAPClient) -> bool:
        """Wait in IDLE up to 9 minutes; True when the server reports new mail."""
        started = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() - started < 540:
            responses = client.idle_check(timeout=1)
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                return True
            # imapclient's idle_check swallows EOF and resets and returns [] at once, forever:
            # without this check a dropped line would spin here blind for the full 9 minutes.
            if not responses and is_dropped(client.socket()):
                raise ConnectionResetError("the IMAP server closed the IDLE connection")
        return False


def is_dropped(sock: socket.socket) -> bool:
    """True when the peer closed or reset the TCP connection (nothing is read from it)."""
    try:
        # Peek on a duplicate of the descriptor: works under TLS too and leaves the stream alone.
        with socket.socket(fileno=os.dup(sock.fileno())) as raw:
            return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing waiting: alive
    except OSError:
        return True


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:
        pass

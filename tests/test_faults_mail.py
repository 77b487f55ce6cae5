"""Mail faults injected on real servers: the daemon reconnects, backs off, misses no mail and
sends no reply twice.

IMAP runs through ``tests/faultproxy.py`` to Dovecot and SMTP through it to aiosmtpd, so the
faults are real TCP events (resets mid-FETCH and mid-IDLE, a refused or 421-answering server,
a reply lost after DATA, broken TLS). The code under test is the daemon's own: ``poll_mailbox``,
``IdleWatcher`` and the send job (``send_outbox``), and in the last test ``Daemon.run`` with all of them.
A changed UIDVALIDITY is covered in ``test_email_loop.py`` and not repeated here:
``test_uidvalidity_change_resyncs_without_reanswering``.
"""
from __future__ import annotations

import asyncio
import collections
import threading
from email.utils import make_msgid
from types import SimpleNamespace

import pytest
from daemons import cursor_ready, wait_until
from faultproxy import FaultProxy
from helpers import (
    PASSWORD_ENV,
    customer_mail,
    make_context,
    run_until_idle,
    write_settings,
)
from servers import SmtpCapture
from sqlmodel import select

from channels.email.imap import ANSWERED, STORED_KEYWORD, IdleWatcher
from responder.core.clock import clock, utcnow
from responder.core.db import Database
from responder.core.models import Message, Outbox
from responder.core.settings import load_settings
from responder.ops.context import Context
from responder.ops.daemon import Daemon
from responder.ops.jobs import poll_mailbox
from responder.ops.sending import send_outbox
from responder.owner import digest
from responder.send import outbox

# Questions the sample shop answers by itself, one sender each (no burst, cap or loop rule).
QUESTIONS = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
             "What are your candles made of?", "Do you sell gift cards?"]
# Quoted history (stripped before drafting): ~1.5 KB per mail, so a FETCH is worth cutting.
PADDING = "\n\nOn Monday, Maya wrote:\n" + "> Thank you for your order from Wick & Willow Candle Co.!\n" * 25


def imap_via(proxy: FaultProxy, dovecot) -> SimpleNamespace:
    return SimpleNamespace(host=proxy.host, port=proxy.port, tls=False, username=dovecot.username)


def smtp_at(host: str, port: int, *, starttls: bool = False, implicit_tls: bool = False) -> SimpleNamespace:
    return SimpleNamespace(host=host, port=port, starttls=starttls, implicit_tls=implicit_tls)


def question(n: int, tag: str) -> bytes:
    return customer_mail(QUESTIONS[n % len(QUESTIONS)] + PADDING, sender=f"buyer{n}@customer.test",
                         message_id=f"<{tag}{n}@customer.test>", subject=f"question {n}")


def answered(smtp: SmtpCapture) -> collections.Counter:
    """How many replies each original got, by the Message-ID they answer."""
    return collections.Counter(m.message()["In-Reply-To"] for m in smtp.messages)


def inbound(ctx) -> list[Message]:
    with ctx.db.transaction() as session:
        return session.exec(select(Message).where(Message.direction == "in")).all()


def outbox_rows(ctx) -> list[Outbox]:
    with ctx.db.transaction() as session:
        return session.exec(select(Outbox)).all()


def outbox_row(ctx, row_id: int) -> Outbox:
    with ctx.db.transaction() as session:
        return session.get(Outbox, row_id)


def queue_reply(ctx, recipient: str) -> int:
    """A reply in the outbox, as routing leaves it (``outbox.enqueue``)."""
    with ctx.db.transaction() as session:
        row = outbox.enqueue(session=session, draft_id=None, thread_id=None, channel="email",
                             recipient=recipient, subject="Re: Question about shipping",
                             body_text="Shipping is a flat $5.", message_id=make_msgid("r", domain="example.test"))
        return row.id


def send(ctx) -> int:
    return asyncio.run(send_outbox(ctx, "email"))


def digest_text(ctx) -> str:
    with ctx.db.transaction() as session:
        return digest.build(session, ctx.settings).text


class Kicks:
    """``on_new_mail`` for the IDLE thread: counts its calls."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= n, timeout), f"{self.count} kicks, wanted {n}"


@pytest.fixture
def imap(tmp_path, monkeypatch, dovecot, smtp_capture):
    """A context whose mailbox is reached through a fault proxy; the first poll sets the cursor."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    with FaultProxy(dovecot.host, dovecot.port) as proxy:
        path = write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}",
                              dovecot=imap_via(proxy, dovecot), smtp=smtp_capture, email_extra="fetch_batch = 2")
        ctx = make_context(path)
        assert poll_mailbox(ctx) == 0
        yield ctx, proxy
        ctx.stopping.set()
        ctx.db.dispose()


@pytest.fixture
def outbox_ctx(tmp_path):
    """Build a context for SMTP-only tests: ``outbox_ctx(smtp_endpoint, extra)``. The send job and
    the digest read only settings and the database, so no knowledge index or drafter is built."""
    made = []

    def build(smtp, email_extra: str = "", database_url: str | None = None):
        path = write_settings(tmp_path, database_url=database_url or f"sqlite:///{tmp_path / 'd.sqlite3'}",
                              smtp=smtp, email_extra=email_extra)
        settings = load_settings(path)
        db = Database(settings.database_url)
        db.migrate()
        made.append(Context(settings=settings, db=db, drafter=None, retriever=None))
        return made[-1]

    yield build
    clock.reset()
    for ctx in made:
        ctx.db.dispose()


# --- IMAP ----------------------------------------------------------------------------------------

MID_FETCH = {  # fault -> (inject, rows the cut poll still commits); fetch_batch = 2, ~1.9 KB per mail
    "reset at the 3rd BODY[]": (lambda proxy: proxy.cut_on(b"BODY[]", nth=3), 2),  # 2nd batch's first
    "reset after 4500 bytes": (lambda proxy: proxy.cut_after_bytes(4500), 0),  # inside the 2nd body
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", list(MID_FETCH))
def test_connection_dropped_mid_fetch_loses_nothing(imap, dovecot, smtp_capture, caplog, fault):
    ctx, proxy = imap
    inject, committed = MID_FETCH[fault]
    for n in range(5):
        dovecot.append(question(n, "fetch"))
    inject(proxy)

    stored = poll_mailbox(ctx)  # the daemon's poll: a warning and a backoff, not an exception
    assert proxy.cuts == 1 and proxy.armed == 0, "the fault fired"
    assert stored == committed and len(inbound(ctx)) == committed, "only whole batches are committed"
    assert "cannot read the mailbox" in caplog.text

    run_until_idle(ctx)
    rows = inbound(ctx)
    assert len(rows) == 5 and len({m.provider_id for m in rows}) == 5, "each mail stored once"
    assert answered(smtp_capture) == {f"<fetch{n}@customer.test>": 1 for n in range(5)}, "answered once each"
    assert all(STORED_KEYWORD in f and ANSWERED in f for f in dovecot.fetch_flags().values())


@pytest.mark.timeout(90)
def test_idle_dropped_and_server_restarted_miss_nothing(imap, dovecot, smtp_capture, caplog):
    ctx, proxy = imap
    kicks = Kicks()
    watcher = IdleWatcher(ctx.settings.email, kicks)
    watcher.start()
    try:
        proxy.wait_seen(b"+ idling", timeout=15)
        # The line drops mid-IDLE, and mail lands before the watcher is back: IDLE will never
        # announce it, so the reconnect itself must kick a poll.
        proxy.refuse()
        proxy.cut_all()
        dovecot.append(question(0, "idle"))
        proxy.wait_for(lambda p: p.refused >= 1, 15, "the watcher to notice the drop and reconnect")
        proxy.accept()
        kicks.wait_for(1, timeout=20)
        run_until_idle(ctx)
        assert answered(smtp_capture) == {"<idle0@customer.test>": 1}

        # Dovecot restarts. A poll while it is down fails in one log line; IDLE comes back alone.
        idling = proxy.count_seen(b"+ idling")
        dovecot.stop()
        assert poll_mailbox(ctx) == 0
        dovecot.restart()
        proxy.wait_seen(b"+ idling", count=idling + 1, timeout=30)
        before = kicks.count
        dovecot.append(question(1, "idle"))
        kicks.wait_for(before + 1, timeout=15)  # IDLE's EXISTS
        run_until_idle(ctx)
        assert watcher.is_alive()
    finally:
        watcher.stop()
        watcher.join(timeout=10)
    assert answered(smtp_capture) == {"<idle0@customer.test>": 1, "<idle1@customer.test>": 1}
    assert len(inbound(ctx)) == 2
    assert "IMAP IDLE connection lost" in caplog.text and "cannot read the mailbox" in caplog.text


@pytest.mark.timeout(90)
def test_refused_login_is_named_backed_off_and_recovers_without_restart(tmp_path, monkeypatch, dovecot,
                                                                       smtp_capture, caplog):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    with FaultProxy(dovecot.host, dovecot.port) as polls, FaultProxy(dovecot.host, dovecot.port) as idles:
        path = write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}",
                              dovecot=imap_via(polls, dovecot), smtp=smtp_capture)
        ctx = make_context(path)
        poll_mailbox(ctx)  # the cursor: mail from now on is answered
        monkeypatch.setenv(PASSWORD_ENV, "a-revoked-app-password")
        kicks = Kicks()
        watcher = IdleWatcher(ctx.settings.email.model_copy(update={"imap_port": idles.port}), kicks)
        watcher.start()
        try:
            before = polls.connections
            for _ in range(60):  # the scheduler's tick every second for a minute, on the test clock
                assert poll_mailbox(ctx) == 0
                clock.advance(seconds=1)
            attempts = polls.connections - before
            assert 3 <= attempts <= 5, f"{attempts} logins in 60 s: backed off (0, 1, 11, 31 s), not 60"
            [line, *_] = [r.getMessage() for r in caplog.records if "cannot read the mailbox" in r.getMessage()]
            assert "refused the login" in line and "[email] username" in line and f"${PASSWORD_ENV}" in line
            idles.wait_for(lambda p: p.connections >= 2, 15, "the IDLE thread to try again")
            assert watcher.is_alive() and "IMAP IDLE: the IMAP server" in caplog.text

            dovecot.append(question(0, "login"))  # arrives while we are locked out
            monkeypatch.setenv(PASSWORD_ENV, dovecot.password)  # read afresh at every connect
            clock.advance(minutes=5)  # the backoff's cap
            assert poll_mailbox(ctx) == 1
            kicks.wait_for(1, timeout=30)  # IDLE logged in again (and kicked a poll)
            run_until_idle(ctx)
        finally:
            clock.reset()
            watcher.stop()
            watcher.join(timeout=10)
            ctx.db.dispose()
    assert answered(smtp_capture) == {"<login0@customer.test>": 1}


# --- SMTP ----------------------------------------------------------------------------------------

REFUSALS = {  # fault -> (inject, status after the first try)
    "421 greeting": (lambda smtp, proxy: proxy.answer_and_close(b"421 4.3.2 Too busy, try later\r\n"), "queued"),
    "421 at MAIL": (lambda smtp, proxy: smtp.fail_next(421, "4.3.2 Shutting down", stage="mail"), "retry"),
    "451 at DATA": (lambda smtp, proxy: smtp.fail_next(451, stage="data"), "retry"),
    "553 at RCPT": (lambda smtp, proxy: smtp.fail_next(553, "5.1.3 Bad recipient address syntax",
                                                       stage="rcpt"), "failed"),
    "550 at DATA": (lambda smtp, proxy: smtp.fail_next(550, stage="data"), "failed"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", list(REFUSALS))
def test_smtp_refusals_are_retried_or_failed_and_shown(outbox_ctx, smtp_capture, caplog, fault):
    inject, status = REFUSALS[fault]
    code = fault[:3]
    with FaultProxy(smtp_capture.host, smtp_capture.port) as proxy:
        ctx = outbox_ctx(smtp_at(proxy.host, proxy.port))
        row_id = queue_reply(ctx, "pat@customer.test")
        inject(smtp_capture, proxy)
        send(ctx)
        row = outbox_row(ctx, row_id)
        assert row.status == status and smtp_capture.messages == []
        if status == "queued":  # refused before any row was claimed: nothing to retry or fail
            assert row.attempts == 0 and "cannot send replies now" in caplog.text and code in caplog.text
            send(ctx)  # a second refusal backs the server off: the next run doesn't even connect
            turned_away = proxy.refused
            send(ctx)
            assert proxy.refused == turned_away == 2 and "next try in 10 s" in caplog.text
        else:
            assert code in row.last_error
        if status == "retry":  # with backoff: a run before it is due leaves the row alone
            assert (row.next_attempt_at - utcnow()).total_seconds() > 20
            send(ctx)
            assert outbox_row(ctx, row_id).status == "retry" and smtp_capture.messages == []
        proxy.clear()
        clock.advance(hours=1)
        send(ctx)
        send(ctx)
    captured = [m.rcpt_tos for m in smtp_capture.messages]
    if status == "failed":
        assert captured == [] and outbox_row(ctx, row_id).status == "failed"
        shown = digest_text(ctx)
        assert "pat@customer.test" in shown and "(failed" in shown and code in shown, "the owner sees it"
    else:
        assert captured == [("pat@customer.test",)] and outbox_row(ctx, row_id).status == "sent"


def _reset_mid_send(ctx, proxy, smtp_capture, stage: str) -> None:
    first, second = queue_reply(ctx, "first@customer.test"), queue_reply(ctx, "second@customer.test")
    # The server reads the chunk holding the pattern and answers; the answer is lost, the line reset.
    proxy.cut_on(b"\r\n.\r\n" if stage == "after DATA" else b"RCPT TO", from_server=False, swallow_reply=True)
    send(ctx)
    assert proxy.cuts == 1
    row = outbox_row(ctx, first)
    if stage == "after DATA":
        assert [m.rcpt_tos for m in smtp_capture.messages] == [("first@customer.test",)], "the server took it"
        assert row.status == "unknown" and "may have been delivered" in row.last_error
    else:
        assert row.status == "retry" and smtp_capture.messages == []
    assert outbox_row(ctx, second).status == "queued", "nothing more on a dead connection"
    for _ in range(3):  # long after every backoff
        clock.advance(hours=2)
        send(ctx)
    sent_to = collections.Counter(t for m in smtp_capture.messages for t in m.rcpt_tos)
    assert sent_to == {"first@customer.test": 1, "second@customer.test": 1}, "each reply out once"
    assert outbox_row(ctx, second).status == "sent"
    if stage == "after DATA":
        assert outbox_row(ctx, first).status == "unknown"
        shown = digest_text(ctx)
        assert "first@customer.test" in shown and "(unknown" in shown, "the owner sees it"
    else:
        assert outbox_row(ctx, first).status == "sent"


@pytest.mark.timeout(60)
def test_connection_reset_after_data_is_unknown_never_resent(outbox_ctx, database_url, smtp_capture):
    """The server had the whole message when the line dropped: maybe delivered, so ``unknown``."""
    with FaultProxy(smtp_capture.host, smtp_capture.port) as proxy:
        ctx = outbox_ctx(smtp_at(proxy.host, proxy.port), database_url=database_url)
        _reset_mid_send(ctx, proxy, smtp_capture, "after DATA")


@pytest.mark.timeout(60)
def test_connection_reset_before_data_is_retried(outbox_ctx, smtp_capture):
    """Dropped at RCPT the server has nothing yet: an ordinary retry, sent once later."""
    with FaultProxy(smtp_capture.host, smtp_capture.port) as proxy:
        ctx = outbox_ctx(smtp_at(proxy.host, proxy.port))
        _reset_mid_send(ctx, proxy, smtp_capture, "at RCPT")


TLS_CASES = {  # case -> what the log line tells the owner to check
    "untrusted certificate": "certificate is not trusted",
    "implicit TLS on a plain port": 'smtp_tls ("ssl" is for port 465',
    "handshake cut off": "handshake failed or was cut off",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(TLS_CASES))
def test_tls_failure_waits_then_sends_once(outbox_ctx, monkeypatch, caplog, case):
    if case == "implicit TLS on a plain port":
        server = SmtpCapture().start()
        endpoint, extra = smtp_at(server.host, server.port, implicit_tls=True), "tls_verify = false"
    else:
        server = SmtpCapture(starttls=True).start()
        endpoint, extra = smtp_at(server.host, server.port, starttls=True), ""
    proxy = FaultProxy(server.host, server.port).start()
    try:
        if case == "handshake cut off":  # reset at the client's TLS hello, right after STARTTLS
            endpoint, extra = smtp_at(proxy.host, proxy.port, starttls=True), "tls_verify = false"
            proxy.cut_on(b"\x16\x03", from_server=False)
        ctx = outbox_ctx(endpoint, extra)
        row_id = queue_reply(ctx, "tls@customer.test")
        send(ctx)
        row = outbox_row(ctx, row_id)
        assert row.status == "queued" and row.attempts == 0 and server.messages == [], "nothing marked failed"
        line = next(r.getMessage() for r in caplog.records if "cannot send replies now" in r.getMessage())
        assert f"TLS with the SMTP server {endpoint.host}:{endpoint.port} failed" in line and TLS_CASES[case] in line

        # The server is fixed.
        if case == "untrusted certificate":  # its certificate now chains to a trusted CA
            monkeypatch.setenv("SSL_CERT_FILE", str(server.certfile))
        elif case == "implicit TLS on a plain port":  # the port speaks TLS from the first byte
            server.close()
            server = SmtpCapture(implicit_tls=True, port=endpoint.port).start()
        send(ctx)
        send(ctx)
        assert [m.rcpt_tos for m in server.messages] == [("tls@customer.test",)] and server.messages[0].tls
        assert outbox_row(ctx, row_id).status == "sent"
    finally:
        proxy.close()
        server.close()


# --- the daemon ----------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_the_daemon_rides_out_every_mail_fault_in_a_row(tmp_path, monkeypatch, dovecot, smtp_capture, caplog):
    """``Daemon.run`` (scheduler, poll/process/send workers, IDLE thread) on a thread of this
    process: the daemon as ``run.py`` starts it, without a second interpreter to load the
    embedding model (the process itself is covered in ``test_daemon.py``)."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    with FaultProxy(dovecot.host, dovecot.port) as imap, FaultProxy(smtp_capture.host, smtp_capture.port) as smtp:
        ctx = make_context(write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}",
                                          dovecot=imap_via(imap, dovecot), smtp=smtp_at(smtp.host, smtp.port),
                                          email_extra="poll_interval_s = 2"))
        daemon, loop = Daemon(ctx), asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(daemon.run(),), daemon=True)
        thread.start()
        try:
            wait_until(lambda: cursor_ready(ctx.db), 30, "the daemon's first poll")
            imap.wait_seen(b"+ idling", timeout=30)

            def deliver_and_wait(n: int, what: str) -> None:
                dovecot.append(question(n, "daemon"))
                wait_until(lambda: answered(smtp_capture)[f"<daemon{n}@customer.test>"] >= 1, 40, what)

            imap.cut_on(b"BODY[]")
            deliver_and_wait(0, "a reply after the FETCH was cut")
            imap.cut_all()
            deliver_and_wait(1, "a reply after IDLE was cut")
            dovecot.restart()
            deliver_and_wait(2, "a reply after Dovecot restarted")
            smtp.cut_on(b"\r\n.\r\n", from_server=False, swallow_reply=True)
            deliver_and_wait(3, "the reply whose answer is lost")
            wait_until(lambda: any(r.status == "unknown" for r in outbox_rows(ctx)), 20, "an unknown reply")
        finally:
            loop.call_soon_threadsafe(daemon.stop)
            thread.join(timeout=30)
        assert not thread.is_alive()
        loop.close()
        rows = inbound(ctx)
        statuses = collections.Counter(r.status for r in outbox_rows(ctx))
        ctx.db.dispose()
    assert len(rows) == 4 and len({m.provider_id for m in rows}) == 4, "each mail stored once"
    assert answered(smtp_capture) == {f"<daemon{n}@customer.test>": 1 for n in range(4)}, "no reply twice"
    assert statuses == {"sent": 3, "unknown": 1}
    assert "cannot read the mailbox" in caplog.text and "IMAP IDLE connection lost" in caplog.text

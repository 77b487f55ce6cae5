"""The test servers themselves, exercised through the real clients (imapclient, aiosmtplib)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import uuid
from email.message import EmailMessage

import aiosmtplib
import pytest
import servers
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError
from servers import SmtpCapture, insecure_client_ssl_context


def raw_message(subject: str = "Where is my order?", body: str = "Order 1042 has not arrived.") -> bytes:
    return (
        "From: Customer <customer@example.test>\r\n"
        "To: Shop Support <shop@example.test>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n"
        "Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


def email_message(to: str | list[str] = "customer@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Shop Support <shop@example.test>"
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = "Re: Where is my order?"
    msg.set_content("It ships tomorrow.\n")
    return msg


# ----------------------------------------------------------------------------- Dovecot


def test_dovecot_append_fetch_and_flags(dovecot):
    raw = raw_message()
    uid1 = dovecot.append(raw)
    uid2 = dovecot.append(raw_message("Refund"), flags=[b"\\Flagged", "$Deskhand"])
    assert (uid1, uid2) == (1, 2)
    assert dovecot.message_count() == 2
    assert dovecot.uids() == [1, 2]
    assert dovecot.fetch_raw(uid1) == raw

    with dovecot.connect() as client:
        client.select_folder("INBOX")
        assert client.search(["UNSEEN"]) == [1, 2]
        # BODY.PEEK[] must not mark the message as read ...
        data = client.fetch([uid1], ["BODY.PEEK[]", "FLAGS"])
        assert data[uid1][b"BODY[]"] == raw
        assert b"\\Seen" not in data[uid1][b"FLAGS"]
        assert b"\\Seen" not in dovecot.flags(uid1)
        # ... while BODY[] does.
        client.fetch([uid1], ["BODY[]"])
        assert b"\\Seen" in dovecot.flags(uid1)
        client.add_flags([uid1], [b"\\Answered"])

    flags = dovecot.fetch_flags()
    assert set(flags) == {1, 2}
    assert {b"\\Seen", b"\\Answered"} <= set(flags[1])
    assert {b"\\Flagged", b"$Deskhand"} <= set(flags[2])

    dovecot.set_flags(uid2, [b"\\Deleted"])
    assert dovecot.flags(uid2) == (b"\\Deleted",)


def test_dovecot_other_mailbox(dovecot):
    dovecot.create_mailbox("Archive")
    assert dovecot.append(raw_message(), mailbox="Archive") == 1
    assert dovecot.message_count("Archive") == 1
    assert dovecot.message_count() == 0


def test_dovecot_rejects_wrong_password_without_delay(dovecot):
    started = time.monotonic()
    for _ in range(3):
        client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
        try:
            with pytest.raises(LoginError):
                client.login(dovecot.username, "wrong")
        finally:
            client.shutdown()
    # Dovecot's default would be >= 6 s (2 s per failure); its timer granularity is 0.5 s.
    assert time.monotonic() - started < 3
    with dovecot.connect():
        pass


def test_dovecot_idle_gets_exists_push(dovecot):
    dovecot.append(raw_message("first"))
    with dovecot.connect() as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        try:
            assert watcher.idle_check(timeout=0.2) == []
            dovecot.append(raw_message("second"))  # another connection
            responses = watcher.idle_check(timeout=10)
        finally:
            watcher.idle_done()
    assert (2, b"EXISTS") in responses, responses


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "killed"])
def test_dovecot_restart_keeps_data_uids_and_port(dovecot, graceful):
    dovecot.append(raw_message("one"))
    dovecot.append(raw_message("two"))
    dovecot.set_flags(2, [b"\\Seen"])
    port, uidvalidity = dovecot.port, dovecot.uidvalidity()

    dovecot.restart(graceful=graceful)

    assert dovecot.running and dovecot.port == port
    assert dovecot.uidvalidity() == uidvalidity
    assert dovecot.uids() == [1, 2]
    assert dovecot.flags(2) == (b"\\Seen",)
    assert dovecot.append(raw_message("three")) == 3


def test_dovecot_stopped_refuses_connections(dovecot):
    dovecot.stop()
    assert not dovecot.running
    with pytest.raises(OSError):
        socket.create_connection((dovecot.host, dovecot.port), timeout=2).close()
    dovecot.start()
    assert dovecot.message_count() == 0


def test_dovecot_uidvalidity_change(dovecot):
    dovecot.append(raw_message())
    old = dovecot.uidvalidity()
    with dovecot.connect() as client:
        client.select_folder("INBOX")
        new = dovecot.set_uidvalidity()
        # Dovecot drops sessions that have the mailbox selected.
        with pytest.raises((IMAPClientAbortError, OSError)):
            client.noop()
    assert new == old + 1
    assert dovecot.uidvalidity() == new
    with dovecot.connect() as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"] == new
    assert dovecot.uids() == [1]
    assert dovecot.append(raw_message("after")) == 2
    assert dovecot.set_uidvalidity(4242) == 4242
    assert dovecot.uidvalidity() == 4242


def test_dovecot_renumber_uids(dovecot):
    raws = [raw_message(f"message {i}") for i in range(3)]
    for raw in raws:
        dovecot.append(raw)
    dovecot.set_flags(2, [b"\\Seen", b"$Replied"])
    old = dovecot.uidvalidity()
    port = dovecot.port

    mapping = dovecot.renumber_uids()

    assert mapping == {1: 4, 2: 5, 3: 6}
    assert dovecot.port == port and dovecot.running
    assert dovecot.uidvalidity() == old + 1
    assert dovecot.uids() == [4, 5, 6]
    assert [dovecot.fetch_raw(uid) for uid in (4, 5, 6)] == raws
    assert set(dovecot.flags(5)) == {b"\\Seen", b"$Replied"}
    assert dovecot.append(raw_message("new")) == 7

    dovecot.create_mailbox("Archive")
    dovecot.append(raw_message(), mailbox="Archive")
    assert dovecot.renumber_uids("Archive", uidvalidity=99, first_uid=1000) == {1: 1000}
    assert dovecot.uidvalidity("Archive") == 99
    assert dovecot.uids("Archive") == [1000]
    assert dovecot.uids() == [4, 5, 6, 7]


def test_dovecot_tls(dovecot_tls):
    assert dovecot_tls.tls
    # Verifying context: the certificate is trusted and matches 127.0.0.1.
    uid = dovecot_tls.append(raw_message())
    assert dovecot_tls.uids() == [uid]
    client = IMAPClient(
        dovecot_tls.host, port=dovecot_tls.port, ssl=True,
        ssl_context=insecure_client_ssl_context(), timeout=10,
    )
    with client:
        client.login(dovecot_tls.username, dovecot_tls.password)
        assert client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 1
    # An unverified default context rejects the self-signed certificate.
    with pytest.raises(ssl.SSLError):
        IMAPClient(dovecot_tls.host, port=dovecot_tls.port, ssl=True, timeout=10)


def test_missing_dovecot_skips_or_fails_in_ci(monkeypatch):
    monkeypatch.setattr(servers, "dovecot_binary", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Dovecot is not installed"):
        servers.require_dovecot()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        servers.require_dovecot()


# ----------------------------------------------------------------------------- SMTP


def send(capture: SmtpCapture, message: EmailMessage | None = None, **kwargs):
    kwargs.setdefault("start_tls", False)
    return asyncio.run(
        aiosmtplib.send(
            message or email_message(),
            hostname=capture.host,
            port=capture.port,
            timeout=10,
            **kwargs,
        )
    )


def test_smtp_capture_plain(smtp_capture):
    send(smtp_capture, email_message(["a@example.test", "b@example.test"]))
    send(smtp_capture, sender="bounces@shop.example.test", recipients=["c@example.test"])
    first, second = smtp_capture.wait_for(2, timeout=5)
    assert first.mail_from == "shop@example.test"
    assert first.rcpt_tos == ("a@example.test", "b@example.test")
    assert first.tls is False and first.auth_login is None
    assert b"Subject: Re: Where is my order?" in first.data
    assert first.message()["Subject"] == "Re: Where is my order?"
    assert first.message().get_content().strip() == "It ships tomorrow."
    assert (second.mail_from, second.rcpt_tos) == ("bounces@shop.example.test", ("c@example.test",))


def test_smtp_capture_starttls(smtp_capture_starttls):
    capture = smtp_capture_starttls
    # Verification disabled, as with a self-signed relay certificate.
    send(capture, start_tls=True, tls_context=insecure_client_ssl_context())
    # Verification enabled against the test certificate.
    send(capture, start_tls=True, tls_context=capture.ssl_context())
    messages = capture.wait_for(2)
    assert all(m.tls for m in messages)


def test_smtp_capture_starttls_is_required(smtp_capture_starttls):
    with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
        send(smtp_capture_starttls, start_tls=False)
    assert exc.value.code == 530
    assert smtp_capture_starttls.messages == []


def test_smtp_capture_implicit_tls():
    with SmtpCapture(implicit_tls=True) as capture:
        send(capture, use_tls=True, tls_context=capture.ssl_context())
        (message,) = capture.wait_for(1)
        assert message.tls


def test_smtp_capture_auth():
    with SmtpCapture(credentials=("deskhand", "hunter2")) as capture:
        send(capture, username="deskhand", password="hunter2")
        assert capture.wait_for(1)[0].auth_login == "deskhand"
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            send(capture, username="deskhand", password="wrong")
        assert len(capture.messages) == 1


@pytest.mark.parametrize(
    ("code", "stage", "exc_type"),
    [
        (451, "data", aiosmtplib.SMTPDataError),
        (550, "data", aiosmtplib.SMTPDataError),
        (451, "rcpt", aiosmtplib.SMTPRecipientsRefused),
        (550, "rcpt", aiosmtplib.SMTPRecipientsRefused),
        (421, "mail", aiosmtplib.SMTPSenderRefused),
        (553, "mail", aiosmtplib.SMTPSenderRefused),
    ],
)
def test_smtp_capture_forced_failures(smtp_capture, code, stage, exc_type):
    smtp_capture.fail_next(code, count=2, stage=stage)
    for _ in range(2):
        with pytest.raises(exc_type) as exc:
            send(smtp_capture)
        if isinstance(exc.value, aiosmtplib.SMTPRecipientsRefused):
            assert [r.code for r in exc.value.recipients] == [code]
        else:
            assert exc.value.code == code
    assert smtp_capture.messages == []
    assert [r[:2] for r in smtp_capture.rejections] == [(code, stage)] * 2
    # The queue is used up: the next attempt goes through.
    send(smtp_capture)
    assert len(smtp_capture.wait_for(1)) == 1


def test_smtp_capture_custom_reply_and_wait_timeout(smtp_capture):
    smtp_capture.fail_next(452, "4.2.2 Mailbox full")
    with pytest.raises(aiosmtplib.SMTPDataError) as exc:
        send(smtp_capture)
    assert (exc.value.code, exc.value.message) == (452, "4.2.2 Mailbox full")
    with pytest.raises(TimeoutError, match="got 0"):
        smtp_capture.wait_for(1, timeout=0.2)


def test_smtp_capture_stop_and_start(smtp_capture):
    smtp_capture.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        send(smtp_capture)
    smtp_capture.start()
    send(smtp_capture)
    assert len(smtp_capture.wait_for(1)) == 1

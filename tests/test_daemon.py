"""The daemon as a real process: IDLE-driven replies, clean SIGTERM, and exactly-once handling
of a 500-message mailbox across a SIGKILL and restart.
"""
from __future__ import annotations

import collections
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from sqlmodel import col, func, select

from helpers import PASSWORD_ENV, ROOT, customer_mail, write_settings
from responder.db import Database
from responder.models import Draft, Message, Outbox
from servers import free_port
from test_email_loop import AUTO_REPLY, BOUNCE, LIST_MAIL

QUESTIONS = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
             "What are your candles made of?", "Do you sell gift cards?", "Can I talk to a real person?",
             "What's the airspeed velocity of an unladen swallow?"]


def start_daemon(config, log_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_daemon_answers_with_idle_and_stops_cleanly(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    port = free_port()
    # A long poll interval: only IDLE can make the reply this quick.
    config = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                            web_port=port, email_extra="poll_interval_s = 600")
    proc = start_daemon(config, tmp_path / "daemon.log")
    try:
        db = Database(database_url)
        wait_until(lambda: _cursor_ready(db), 60, "the daemon's first poll")
        dovecot.append(customer_mail("How much is shipping?"))
        smtp_capture.wait_for(1, timeout=30)
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5))
        assert health["routes"] == {"auto": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    log = (tmp_path / "daemon.log").read_text()
    assert "stopped" in log and "jamie@customer.test" not in log and "j***@customer.test" in log
    db.dispose()


def test_daemon_without_a_mailbox_says_what_to_configure(tmp_path):
    port = free_port()
    config = write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}", web_port=port)
    proc = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: _http_ok(port), 60, "the web server")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    log = (tmp_path / "daemon.log").read_text()
    assert "email is off: set [email] imap_host and username" in log and PASSWORD_ENV in log


def test_500_mixed_messages_exactly_once_across_sigkill(tmp_path, monkeypatch, dovecot, smtp_capture,
                                                         database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    automated = {AUTO_REPLY: "jamie@customer.test", LIST_MAIL: "digest@lists.candles.test",
                 BOUNCE: "mailer-daemon@mx.customer.test"}
    with dovecot.connect() as client:
        for n in range(500):
            if n % 10 == 9:  # 50 automated: out-of-office, list mail, bounces
                raw = list(automated)[n % 3].replace(b"-1@", f"-{n}@".encode())
            else:
                raw = customer_mail(QUESTIONS[n % len(QUESTIONS)], sender=f"customer{n}@shoppers.test",
                                    message_id=f"<m{n}@shoppers.test>", subject=f"question {n}")
            client.append("INBOX", raw)
    config = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                            email_extra="answer_backlog_days = 1\nfetch_batch = 25")
    db = Database(database_url)
    proc = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: len(smtp_capture.messages) >= 60, 180, "the first replies")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc = start_daemon(config, tmp_path / "daemon.log")
        wait_until(lambda: _all_done(db, 500), 300, "all 500 messages to be handled")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    with db.transaction() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        drafts = session.exec(select(Draft)).all()
        outbox = session.exec(select(Outbox)).all()
    assert len(inbound) == 500, "every message stored once"
    assert collections.Counter(d.message_id for d in drafts).most_common(1)[0][1] == 1
    assert {m.id for m in inbound} == {d.message_id for d in drafts}, "every message has one route"
    replies = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp_capture.messages]
    per_original = collections.Counter(r["In-Reply-To"] for r in replies)
    assert per_original.most_common(1)[0][1] == 1, "no reply sent twice"
    recipients = {t for m in smtp_capture.messages for t in m.rcpt_tos}
    assert not recipients & {a.lower() for a in automated.values()}, "no reply to automated mail"
    assert not [m for m in inbound if m.sender.startswith(("digest@", "mailer-daemon"))
                and m.id in {d.message_id for d in drafts if d.route != "ignore"}]
    sent = [o for o in outbox if o.status == "sent"]
    unsure = [o for o in outbox if o.status in ("sending", "unknown")]
    assert len(sent) <= len(replies) <= len(sent) + len(unsure) and len(unsure) <= 1
    assert {o.status for o in outbox} <= {"sent", "sending", "unknown"}
    db.dispose()


def _cursor_ready(db) -> bool:
    from responder.models import MailboxCursor
    try:
        with db.transaction() as session:
            return session.exec(select(MailboxCursor)).first() is not None
    except Exception:
        return False  # not migrated yet


def _all_done(db, total: int) -> bool:
    try:
        with db.transaction() as session:
            processed = session.exec(select(func.count()).select_from(Message).where(
                Message.direction == "in", Message.status == "processed")).one()
            waiting = session.exec(select(func.count()).select_from(Outbox).where(
                col(Outbox.status).in_(["queued", "retry"]))).one()
        return processed == total and waiting == 0
    except Exception:
        return False


def _http_ok(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False


def test_editing_a_price_changes_the_next_answer_without_a_restart(tmp_path, monkeypatch, dovecot,
                                                                     smtp_capture):
    import shutil

    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    knowledge = tmp_path / "knowledge"
    shutil.copytree(ROOT / "knowledge", knowledge)
    config = write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}", dovecot=dovecot,
                            smtp=smtp_capture, knowledge_dir=knowledge)
    db = Database(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    proc = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: _cursor_ready(db), 90, "the daemon's first poll")
        dovecot.append(customer_mail("How much is the Amber Noir candle?", sender="a@customer.test"))
        [first] = smtp_capture.wait_for(1, timeout=30)
        assert "$48.00" in first.message().get_body(("plain",)).get_content()
        catalog = knowledge / "catalog.csv"
        catalog.write_text(catalog.read_text().replace("WW-104,Amber Noir,48.00", "WW-104,Amber Noir,52.00"))
        time.sleep(3)  # the refresh job looks every second ([knowledge] refresh_s = 1)
        dovecot.append(customer_mail("How much is the Amber Noir candle?", sender="b@customer.test"))
        second = smtp_capture.wait_for(2, timeout=30)[1]
        body = second.message().get_body(("plain",)).get_content()
        assert "$52.00" in body and "$48.00" not in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        db.dispose()
    with Database(f"sqlite:///{tmp_path / 'd.sqlite3'}").transaction() as session:
        versions = [d.knowledge_version for d in session.exec(select(Draft).order_by(Draft.id)).all()]
    assert len(versions) == 2 and versions[0] != versions[1] and all(versions)

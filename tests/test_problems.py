"""Nothing waits forever: a send that failed and a message that could not be processed stay in
the digest, however old, until the owner retries or dismisses them (`run.py problems`). Real
Dovecot, the SMTP capture refusing with 550, SQLite and PostgreSQL."""
from __future__ import annotations

import argparse

import pytest
from helpers import (
    PASSWORD_ENV,
    FlakyDrafter,
    customer_mail,
    make_context,
    run_until_idle,
    write_settings,
)
from sqlmodel import select

from responder.cli import owner_cmds
from responder.core.clock import clock
from responder.core.models import Message, Outbox
from responder.core.settings import load_settings
from responder.decide import limits
from responder.draft import make_drafter
from responder.ops.jobs import poll_mailbox
from responder.owner import digest, problems


@pytest.fixture(autouse=True)
def _real_time():
    yield
    clock.reset()


def cli(settings, capsys, action, kind=None, problem_id=None, as_json=False) -> str:
    args = argparse.Namespace(action=action, kind=kind, id=problem_id, json=as_json)
    status = owner_cmds.cmd_problems(settings, args)
    out = capsys.readouterr().out
    assert status == 0, out
    return out


def test_failed_send_and_quarantined_message_stay_in_the_digest_until_dealt_with(
        tmp_path, monkeypatch, dovecot, smtp_capture, database_url, capsys):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                          extra='[digest]\nto = "owner@example.test"\n')
    settings = load_settings(path)
    drafter = FlakyDrafter(make_drafter(settings))
    ctx = make_context(path, drafter=drafter)
    poll_mailbox(ctx)
    dovecot.append(customer_mail("How much is shipping? EXPLODE", sender="bad@customer.test"))
    dovecot.append(customer_mail("How much is shipping?", sender="gone@customer.test"))
    smtp_capture.fail_next(550, "5.1.1 no such user", stage="rcpt")
    clock.freeze(clock.now())
    for _ in range(3):
        run_until_idle(ctx)
        clock.advance(minutes=10)
    with ctx.db.transaction() as session:
        bad = session.exec(select(Message).where(Message.direction == "in").order_by(Message.id)).first()
        [failed] = session.exec(select(Outbox).where(Outbox.recipient == "gone@customer.test")).all()
    assert bad.status == "quarantined" and failed.status == "failed"

    # Ten days later both are still in the morning digest, with their reasons.
    clock.advance(days=10)
    with ctx.db.transaction() as session:
        mail = digest.build(session, settings)
    assert "SENDS THAT FAILED" in mail.text and "no such user" in mail.text and "gone@customer.test" in mail.text
    assert "MESSAGES THAT COULD NOT BE PROCESSED" in mail.text and "the drafting backend crashed" in mail.text
    assert "1 failed send, 1 message that could not be processed" in mail.subject
    assert "Messages that could not be processed" in mail.html
    listed = cli(settings, capsys, "list")
    assert f"#{failed.id}" in listed and f"#{bad.id}" in listed and "quarantined" in listed

    # The owner fixes the bug and retries the message: it is answered; the bounce is dismissed.
    drafter.fixed = True
    assert "queued again" in cli(settings, capsys, "retry", "message", bad.id)
    cli(settings, capsys, "dismiss", "send", failed.id)
    run_until_idle(ctx)
    with ctx.db.transaction() as session:
        assert session.get(Message, bad.id).status == "processed"
        mail = digest.build(session, settings)
    assert [m.rcpt_tos for m in smtp_capture.messages][-1] == ("bad@customer.test",)
    assert "SENDS THAT FAILED" not in mail.text and "COULD NOT BE PROCESSED" not in mail.text
    assert "no problems" in cli(settings, capsys, "list")
    ctx.db.dispose()


def test_unknown_send_is_resent_only_when_the_owner_says_so(tmp_path, monkeypatch, dovecot, smtp_capture,
                                                             database_url, capsys):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture)
    ctx = make_context(path)
    poll_mailbox(ctx)
    dovecot.append(customer_mail("How much is shipping?"))
    poll_mailbox(ctx)
    from responder.ops.jobs import process_pending
    from responder.ops.sending import claim_outbound
    process_pending(ctx)
    claim_outbound(ctx, "email")  # handed to SMTP, then the process "dies": the lease runs out
    clock.freeze(clock.now())
    clock.advance(minutes=6)
    run_until_idle(ctx)
    with ctx.db.transaction() as session:
        [row] = session.exec(select(Outbox)).all()
    assert row.status == "unknown" and smtp_capture.messages == [], "never re-sent by itself"
    with ctx.db.transaction() as session:
        assert "may or may not have gone out" in digest.build(session, ctx.settings).text
    with pytest.raises(ValueError), ctx.db.transaction() as session:  # only quarantined messages
        processed = session.exec(select(Message)).first()
        problems.retry(session, "message", processed.id, actor="test")
    cli(ctx.settings, capsys, "retry", "send", row.id)
    run_until_idle(ctx)
    assert len(smtp_capture.messages) == 1
    ctx.db.dispose()


def test_alerts_of_the_last_day_are_in_the_digest(tmp_path, database_url):
    from helpers import make_context as ctx_for
    path = write_settings(tmp_path, database_url=database_url, extra='[digest]\nto = "owner@example.test"\n')
    ctx = ctx_for(path)
    with ctx.db.transaction() as session:
        limits.tell_owner(session, ctx.settings, kind="hourly", key="2026-11-25T10", subject="cap",
                          body="Deskhand sent 60 automatic replies in the last hour.")
    with ctx.db.transaction() as session:
        mail = digest.build(session, ctx.settings)
    assert "ALERTS (last 24 hours)" in mail.text and "60 automatic replies in the last hour" in mail.text
    clock.freeze(clock.now())
    clock.advance(days=2)
    with ctx.db.transaction() as session:
        assert "ALERTS" not in digest.build(session, ctx.settings).text
    ctx.db.dispose()


def test_the_command_line(tmp_path, database_url):
    import json
    import subprocess
    import sys

    from helpers import ROOT
    path = write_settings(tmp_path, database_url=database_url)
    ctx = make_context(path)
    with ctx.db.transaction() as session:
        session.add(Message(channel="sms", direction="in", provider_id="SMx", sender="+15550100001",
                            text="hello", status="quarantined", last_error="ValueError: broken"))

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(path), "problems", *args],
                              capture_output=True, text=True, timeout=120)
    listed = run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["kind"], row["status"], row["error"]) == ("message", "quarantined", "ValueError: broken")
    missing = run("retry", "send", "999")
    assert missing.returncode == 1 and "no send 999" in missing.stdout
    assert run("dismiss", "message", str(row["id"])).returncode == 0
    assert "no problems" in run().stdout
    ctx.db.dispose()

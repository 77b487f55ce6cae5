"""The whole hostile corpus through the real mail loop (issue 7: hostile input), on SQLite and
PostgreSQL: every item of tests/malformed_mail.py appended to a real Dovecot between normal customer
questions, then the real jobs (poll, process, send; tests/helpers.py ``run_until_idle``) against an
aiosmtpd capture.

What must hold: nothing raises out of a job; every appended message is stored (one row per UID) and
ends processed (one draft: answered, held with reasons, or ignored with a reason) or quarantined
with a readable ``last_error``; the normal questions are answered; every reply that leaves goes to
exactly one recipient, the one address its sender may be answered at, carries only our headers, and
nothing ever goes to the attacker's address.

Dovecot refuses a zero-byte APPEND and hands NUL bytes out as 0x80, so those two shapes reach
intake only through test_fuzz_mime.py (which stores them directly); here they are what a real
mailbox delivers. The loop breaker and the hourly cap are set out of reach: forty questions alike
would rightly pause automatic sending, which is not what this test is about.
"""
from __future__ import annotations

import email
import email.policy
import re

import pytest
from helpers import (
    PASSWORD_ENV,
    customer_mail,
    make_context,
    rows,
    run_until_idle,
    write_settings,
)
from malformed_mail import CORPUS, EVIL
from sqlmodel import select

from responder.core.clock import clock
from responder.core.db import Database
from responder.core.models import (
    Draft,
    MailboxCursor,
    Message,
    MessageStatus,
    Outbox,
    Route,
)
from responder.intake.store import store_inbound_email
from responder.ops.jobs import poll_mailbox

OUR_HEADERS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
               "x-auto-response-suppress", "mime-version", "content-type"}
NORMAL = [("Hi! How much is shipping to Texas?", "ana@customer.test", Route.AUTO),
          ("How long do I have to return a candle I don't like?", "ben@customer.test", None),
          ("I want to talk to a real person please, not a bot.", "cleo@customer.test", Route.HANDOFF),
          ("What is your shipping cost to Texas please?", "dev@customer.test", Route.AUTO)]
LIMITS = "[routing]\nloop_threshold = 100000\nmax_auto_replies_per_hour = 0\n"


@pytest.fixture
def loop(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture, extra=LIMITS)
    ctx = make_context(path)
    poll_mailbox(ctx)  # first start: sets the cursor, so only mail from now on is answered
    yield ctx, dovecot, smtp_capture
    clock.reset()
    ctx.db.dispose()




def header_names(data: bytes) -> list[str]:
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    return [line.split(b":", 1)[0].decode().lower() for line in re.split(rb"\r?\n", head) if line[:1] not in b" \t"]


@pytest.mark.timeout(240)
def test_the_hostile_corpus_flows_through_the_real_loop(loop):
    ctx, dovecot, smtp = loop
    normal = [customer_mail(text, sender=f"Customer <{sender}>", subject=f"Question {n}")
              for n, (text, sender, _) in enumerate(NORMAL)]
    hostile = [item for item in CORPUS.values() if item.raw]  # Dovecot refuses zero bytes
    order = [("normal", normal[0], NORMAL[0]), ("normal", normal[1], NORMAL[1])]
    order += [("hostile", item.raw, item) for item in hostile[:len(hostile) // 2]]
    order += [("normal", normal[2], NORMAL[2])]
    order += [("hostile", item.raw, item) for item in hostile[len(hostile) // 2:]]
    order += [("normal", normal[3], NORMAL[3])]
    uids = {dovecot.append(raw): (kind, what) for kind, raw, what in order}

    run_until_idle(ctx, rounds=30)  # nothing raises out of poll, process or send
    for _ in range(4):  # a message whose processing fails is retried after 10 s, 60 s: jump there
        if not rows(ctx, Message, Message.status == MessageStatus.RECEIVED):
            break
        clock.advance(minutes=6)
        run_until_idle(ctx, rounds=30)

    inbound = {m.uid: m for m in rows(ctx, Message, Message.direction == "in")}
    assert sorted(inbound) == sorted(uids)  # every message stored, once
    [cursor] = rows(ctx, MailboxCursor)
    assert cursor.last_uid == max(uids)  # the poller moved past every one of them
    drafts = {d.message_id: d for d in rows(ctx, Draft)}
    for uid, message in inbound.items():
        kind, what = uids[uid]
        label = what.name if kind == "hostile" else what[1]
        if message.status == MessageStatus.QUARANTINED:
            assert kind == "hostile", label
            assert message.last_error and "\x00" not in message.last_error and len(message.last_error) > 10, label
            continue
        assert message.status == MessageStatus.PROCESSED, (label, message.status, message.last_error)
        draft = drafts[message.id]
        assert draft.route in Route.ALL and (draft.route == Route.AUTO or draft.reasons), (label, draft.route)
        if kind == "normal":
            expected = what[2]
            assert draft.route == expected if expected else draft.route in (Route.AUTO, Route.REVIEW), \
                (label, draft.route, draft.reasons)
            assert message.sender == what[1]
        elif what.reply_to is None:
            assert draft.route == Route.IGNORE and message.sender == "", (label, draft.route)
        elif message.sender:
            assert message.sender == what.reply_to, label
        if kind == "hostile" and what.name == "nested_1000":  # read only in part: never auto
            assert draft.route != Route.AUTO and any("could only be read in part" in r for r in draft.reasons), \
                (label, draft.route, draft.reasons)

    # Every reply: one recipient, the one its sender may be answered at; only our headers.
    allowed = {item.reply_to for item in hostile if item.reply_to} | {sender for _, sender, _ in NORMAL}
    assert smtp.messages, "nothing was answered"
    for captured in smtp.messages:
        assert len(captured.rcpt_tos) == 1 and captured.rcpt_tos[0] in allowed, captured.rcpt_tos
        names = header_names(captured.data)
        assert set(names) <= OUR_HEADERS and len(names) == len(set(names)), names
        reply = email.message_from_bytes(captured.data, policy=email.policy.default)
        assert [a.addr_spec for a in reply["To"].addresses] == list(captured.rcpt_tos)
        assert EVIL not in captured.rcpt_tos[0]
    answered = {c.rcpt_tos[0] for c in smtp.messages}
    assert {"ana@customer.test", "dev@customer.test", "cleo@customer.test"} <= answered  # cleo: holding reply
    for row in rows(ctx, Outbox):
        assert row.status in ("sent", "queued") or row.last_error, (row.recipient, row.status)
        assert row.recipient in allowed | {ctx.settings.owner_address}, row.recipient


def test_a_row_the_database_refuses_is_kept_quarantined_and_the_batch_goes_on(database_url):
    """Intake's last resort: when the database refuses the row as it came (here a mailbox name it
    can't encode), the message is kept as raw bytes, quarantined with the reason, and the rest of
    the batch (the same transaction) is stored as usual: nothing lost, no poll loop stuck on a UID."""
    db = Database(database_url)
    db.migrate()
    raw = CORPUS["inject_display_name"].raw
    try:
        with db.transaction() as session:
            refused = store_inbound_email(session=session, raw=raw, mailbox="INBOX\udcff", uidvalidity=7, uid=1)
            good = store_inbound_email(session=session, raw=customer_mail("How much is shipping?"),
                                       mailbox="INBOX", uidvalidity=7, uid=2)
            again = store_inbound_email(session=session, raw=raw, mailbox="INBOX\udcff", uidvalidity=7, uid=1)
        assert refused is not None and good is not None and again is None
        with db.transaction() as session:
            kept = session.exec(select(Message).where(Message.id == refused.id)).one()
            assert kept.status == MessageStatus.QUARANTINED and kept.raw == raw
            assert kept.last_error.startswith("could not be stored as it came") and "\x00" not in kept.last_error
            assert session.exec(select(Message).where(Message.id == good.id)).one().status == MessageStatus.RECEIVED
    finally:
        db.dispose()

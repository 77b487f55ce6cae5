"""Privacy on SQLite and PostgreSQL, with the real pipeline, SMTP capture and the Twilio fake.

`python run.py forget CUSTOMER` (as a subprocess) erases one customer everywhere: every table is
read back whole (text, JSON and raw columns) and holds neither their address, their number, their
name nor their words, while two other customers keep every row they had (the one whose text named
the forgotten address keeps the message, with the address replaced). The retention job erases
conversations older than ``[privacy] retention_days``, with the shared clock moved back to write
old ones, and keeps recent ones and numbers that texted STOP.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from itertools import count
from types import SimpleNamespace

import pytest
from fakes.twilio_api import FakeTwilio
from helpers import ROOT, customer_mail, write_settings
from servers import SmtpCapture
from sqlmodel import SQLModel, select

from responder.core.clock import as_utc, clock, utcnow
from responder.core.db import Database
from responder.core.models import (
    Customer,
    CustomerLink,
    Digest,
    Draft,
    Identity,
    Lesson,
    Message,
    Outbox,
    Thread,
)
from responder.core.settings import load_settings
from responder.intake.store import store_inbound_email, store_inbound_text
from responder.ops import privacy, retention
from responder.ops.context import Context, build_context
from responder.ops.jobs import process_pending
from responder.ops.sending import send_outbox
from responder.owner import approvals, digest, feedback
from responder.understand import customers

pytestmark = pytest.mark.timeout(240)
OWNER = "maya@shop.test"
SHOP_NUMBER = "+15550100000"
PAT_EMAIL, PAT_PHONE, PAT_NAME = "pat.lee@customer.test", "+14155550199", "Pat Zeppelinski"
# Everything that would point at Pat, lowercased: address, number (with and without "+"), name, words.
PAT_TRACES = (PAT_EMAIL, PAT_PHONE, PAT_PHONE[1:], "zeppelinski", "zeppelin")
QUINN, ROB = "quinn@other.test", "+14155550123"
_ids = count(1)


@pytest.fixture(scope="module")
def servers():
    with SmtpCapture() as smtp, FakeTwilio() as twilio:
        yield SimpleNamespace(smtp=smtp, twilio=twilio)


def settings_file(folder, database_url, servers, extra: str = ""):
    return write_settings(folder, database_url=database_url, smtp=servers.smtp, extra=(
        f'[digest]\nto = "{OWNER}"\n[approvals]\nnotify = "all"\n'
        f'[twilio]\naccount_sid = "{servers.twilio.account_sid}"\nsms_from = "{SHOP_NUMBER}"\n'
        f'api_base_url = "{servers.twilio.base_url}"\n[privacy]\nretention_days = 30\n{extra}'))


@pytest.fixture(scope="module")
def base(tmp_path_factory, servers):
    """The embedding model and drafter, loaded once for the module."""
    folder = tmp_path_factory.mktemp("privacy")
    url = f"sqlite:///{folder / 'base.sqlite3'}"
    ctx = build_context(load_settings(settings_file(folder, url, servers)))
    yield ctx
    ctx.db.dispose()


@pytest.fixture
def shop(base, servers, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", servers.twilio.auth_token)
    monkeypatch.setenv("DESKHAND_SECRET", "privacy-test-secret-0123456789")
    config = settings_file(tmp_path, database_url, servers)
    ctx = Context(settings=load_settings(config), db=Database(database_url), drafter=base.drafter,
                  retriever=base.retriever)
    ctx.db.migrate()
    try:
        yield SimpleNamespace(ctx=ctx, config=config, servers=servers)
    finally:
        clock.reset()
        ctx.db.dispose()


# --- writing history through the real pipeline --------------------------------------------------

def email_in(ctx, text: str, *, sender: str, subject: str = "A question", headers: dict | None = None) -> Draft | None:
    with ctx.db.transaction() as session:
        message = store_inbound_email(session=session, raw=customer_mail(text, sender=sender, subject=subject,
                                                                         headers=headers),
                                      mailbox="INBOX", uidvalidity=1, uid=next(_ids))
        message_id = message.id
    process_pending(ctx)
    return draft_of(ctx, message_id)


def text_in(ctx, text: str, *, sender: str) -> Draft | None:
    with ctx.db.transaction() as session:
        message_id = store_inbound_text(session=session, channel="sms", sender=sender, text=text,
                                        provider_id=f"SM{next(_ids):032x}").id
    process_pending(ctx)
    return draft_of(ctx, message_id)


def draft_of(ctx, message_id: int) -> Draft | None:
    with ctx.db.transaction() as session:
        return session.exec(select(Draft).where(Draft.message_id == message_id)).first()


def send_all(ctx) -> None:
    asyncio.run(send_outbox(ctx, "email"))
    asyncio.run(send_outbox(ctx, "texts"))


def customer_id(ctx, kind: str, value: str) -> int:
    with ctx.db.transaction() as session:
        return session.exec(select(Identity.customer_id).where(Identity.kind == kind, Identity.value == value)).one()


def populate(ctx, shop_twilio) -> dict:
    """Pat by email and SMS (linked), Quinn by email, Rob by SMS naming Pat's address; digests."""
    pat = f"{PAT_NAME} <{PAT_EMAIL}>"
    auto = email_in(ctx, "Hi! How much is shipping to Texas?", sender=pat)
    assert auto.route == "auto"
    held = email_in(ctx, "Can I speak to a person? My zeppelin candle arrived broken.", sender=pat,
                    subject="Broken candle")
    assert held.route == "handoff"
    edited = email_in(ctx, "Do you ship live goldfish to Antarctica by zeppelin?", sender=pat, subject="Shipping")
    assert edited.route in ("review", "handoff")
    sms = text_in(ctx, "Do you ship to Canada?", sender=PAT_PHONE)
    assert sms.route == "auto"
    with ctx.db.transaction() as session:
        approvals.approve(session, ctx.settings, edited.id, actor="owner (web)",
                          text="We ship to Antarctica for $95 by sea, never by zeppelin.")
    shop_twilio.fail_next(503, 20503, "Service unavailable")  # Pat's SMS reply waits for a retry
    send_all(ctx)  # the automatic replies, the holding note, the approved reply, owner mail
    by_email, by_phone = customer_id(ctx, "email", PAT_EMAIL), customer_id(ctx, "phone", PAT_PHONE)
    with ctx.db.transaction() as session:
        feedback.record_vote(session, auto.id, "down", "the zeppelin answer missed my question")
        customers.link_pair(session, session.get(Customer, by_email), session.get(Customer, by_phone),
                            actor="owner (cli)")
    # Pat's out-of-office reply: stored outside any thread, with no customer.
    ooo = email_in(ctx, "I'm away until Monday.", sender=pat, subject="Out of office",
                   headers={"Auto-Submitted": "auto-replied"})
    assert ooo.route == "ignore"

    quinn_auto = email_in(ctx, "Hi! How much is shipping to Texas?", sender=f"Quinn <{QUINN}>")
    quinn_held = email_in(ctx, "Can I speak to a person about my order?", sender=f"Quinn <{QUINN}>",
                          subject="My order")
    assert quinn_auto.route == "auto" and quinn_held.route == "handoff"
    rob = text_in(ctx, f"my email is {PAT_EMAIL}", sender=ROB)  # asks for a code to Pat's address
    assert rob.route == "auto"
    send_all(ctx)
    with ctx.db.transaction() as session:
        sent_digest = digest.enqueue(session, ctx.settings)
    send_all(ctx)
    with ctx.db.transaction() as session:  # tomorrow's digest, not sent yet
        waiting_digest = digest.enqueue(session, ctx.settings, now=utcnow() + timedelta(days=1))
    return dict(pat=customer_id(ctx, "email", PAT_EMAIL), quinn=customer_id(ctx, "email", QUINN),
                rob=customer_id(ctx, "phone", ROB), held=held.id, rob_message=rob.message_id,
                sent_digest=sent_digest.id, waiting_digest=waiting_digest.id)


# --- reading everything back --------------------------------------------------------------------

def every_row(ctx) -> list[tuple[str, dict]]:
    """(table, row as a dict) for every row of every table."""
    with ctx.db.transaction() as session:
        return [(table.name, dict(row)) for table in SQLModel.metadata.sorted_tables
                for row in session.execute(select(table)).mappings()]


def flat(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False).lower()
    return str(value).lower()


def traces_of(ctx, customer: int) -> list[str]:
    found = []
    for table, row in every_row(ctx):
        for column, value in row.items():
            if column == "customer_id" and value == customer or table == "customer" and column == "id" and \
                    value == customer:
                found.append(f"{table}.{column} = {customer}")
            found += [f"{table}.{column} has {t!r}" for t in PAT_TRACES if t in flat(value)]
    return found


def rows_of(ctx, customer: int) -> dict:
    """Everything that belongs to one customer, for before/after comparison."""
    with ctx.db.transaction() as session:
        threads = session.exec(select(Thread.id).where(Thread.customer_id == customer)).all()
        drafts = session.exec(select(Draft.id).where(Draft.thread_id.in_(threads))).all()  # type: ignore[union-attr]
        return {"customer": session.get(Customer, customer).model_dump(),
                "identities": [i.model_dump() for i in session.exec(select(Identity).where(
                    Identity.customer_id == customer).order_by(Identity.id))],
                "threads": [session.get(Thread, t).model_dump() for t in sorted(threads)],
                "messages": [m.model_dump() for m in session.exec(select(Message).where(
                    Message.customer_id == customer).order_by(Message.id))],
                "drafts": [session.get(Draft, d).model_dump() for d in sorted(drafts)],
                "outbox": [o.model_dump() for o in session.exec(select(Outbox).where(
                    Outbox.thread_id.in_(threads)).order_by(Outbox.id))]}  # type: ignore[union-attr]


def forget(config, who: str, *args: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "forget", who, *args],
                          input=answer, capture_output=True, text=True, timeout=180, cwd=ROOT)


# --- forget --------------------------------------------------------------------------------------

def test_every_table_is_accounted_for():
    assert {t.name for t in SQLModel.metadata.sorted_tables} <= set(privacy.TABLES), \
        "a new table: say in responder.ops.privacy.TABLES what forget and retention do with it"


def test_forget_erases_one_customer_everywhere_and_nobody_else(shop):
    ctx = shop.ctx
    ids = populate(ctx, shop.servers.twilio)
    before = traces_of(ctx, ids["pat"])
    for expected in ("message.raw", "outbox.body_text", "identity.value", "customerlink.email", "feedback.comment",
                     "lesson.addition"):
        assert any(t.startswith(expected) for t in before), f"the scenario should leave Pat in {expected}"
    quinn_before = rows_of(ctx, ids["quinn"])

    refused = forget(shop.config, PAT_PHONE, answer="no\n")  # asks first; anything but yes keeps all
    assert refused.returncode == 1 and "Nothing was erased" in refused.stdout
    assert "messages" in refused.stdout and "drafts" in refused.stdout
    assert traces_of(ctx, ids["pat"]) == before

    done = forget(shop.config, PAT_PHONE, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Erased customer #{ids['pat']}" in done.stdout
    for erased in ("lessons (pending)", "1 outbox rows (unsent, cancelled)", "feedback votes", "link requests"):
        assert erased in done.stdout
    assert traces_of(ctx, ids["pat"]) == []

    # The others keep every row; Rob's text keeps its place with Pat's address taken out.
    assert rows_of(ctx, ids["quinn"]) == quinn_before
    with ctx.db.transaction() as session:
        rob_message = session.get(Message, ids["rob_message"])
        assert rob_message.text == f"my email is {privacy.FORGOTTEN}"
        assert session.get(Customer, ids["rob"]) is not None
        assert session.exec(select(CustomerLink)).all() == []
        assert session.exec(select(Lesson)).all() == []
        sent = session.exec(select(Digest).where(Digest.outbox_id == ids["sent_digest"])).one()
        waiting = session.exec(select(Digest).where(Digest.outbox_id == ids["waiting_digest"])).one()
        # The sent digest: its number for Pat's draft now leads nowhere; its body is a note.
        assert 0 in sent.draft_ids and ids["held"] not in sent.draft_ids
        assert "asked to be forgotten" in session.get(Outbox, ids["sent_digest"]).body_text
        # The unsent one was written again, without Pat and still listing Quinn's held draft.
        rewritten = session.get(Outbox, ids["waiting_digest"])
        assert rewritten.status == "queued" and "Quinn" in rewritten.body_text and "Quinn" in rewritten.body_html
        assert ids["held"] not in waiting.draft_ids and 0 not in waiting.draft_ids
    audit = (shop.config.parent / "data" / "privacy.log").read_text().splitlines()
    assert len(audit) == 1 and json.loads(audit[0])["customer"] == ids["pat"]
    assert not any(t in audit[0].lower() for t in PAT_TRACES)

    # The knowledge index (SQLite) is built from the knowledge folder alone: no vector or text of Pat's.
    index_files = [f for f in ctx.retriever.index.path.rglob("*") if f.is_file()]
    assert index_files and not [f for f in index_files if any(t.encode() in f.read_bytes().lower()
                                                               for t in PAT_TRACES)]

    with ctx.db.transaction() as session:
        assert privacy.find(session, PAT_EMAIL) is None and privacy.find(session, PAT_PHONE) is None


def test_forget_by_customer_id_in_process_counts_what_it_erases(shop):
    ctx = shop.ctx
    held = email_in(ctx, "Can I speak to a person please?", sender="Ann <ann@customer.test>")
    email_in(ctx, "Hi! How much is shipping to Texas?", sender="Ann <ann@customer.test>")
    ann = customer_id(ctx, "email", "ann@customer.test")
    with ctx.db.transaction() as session:
        planned = privacy.forget_customer(session, privacy.find(session, f"#{ann}"), dry_run=True)
    assert planned.counts["messages"] == 2 and planned.counts["drafts"] == 2 and planned.counts["customers"] == 1
    assert draft_of(ctx, held.message_id) is not None  # a dry run erases nothing
    with ctx.db.transaction() as session:
        erased = privacy.forget_customer(session, session.get(Customer, ann), settings=ctx.settings)
    assert erased.counts == planned.counts
    with ctx.db.transaction() as session:
        assert session.exec(select(Message)).all() == [] and session.exec(select(Draft)).all() == []
        assert session.exec(select(Customer)).all() == [] and session.exec(select(Identity)).all() == []


# --- retention -----------------------------------------------------------------------------------

def test_retention_purges_old_conversations_and_keeps_recent_ones(shop, monkeypatch):
    ctx = shop.ctx
    monkeypatch.setattr(privacy, "BATCH", 2)  # several transactions
    clock.advance(days=-40)
    for n in range(3):  # three customers heard from only long ago
        email_in(ctx, "Hi! How much is shipping to Texas?", sender=f"old{n}@customer.test")
    email_in(ctx, "What are your candles made of?", sender="both@customer.test", subject="Wax")
    text_in(ctx, "STOP", sender="+14155550177")
    send_all(ctx)
    clock.reset()
    email_in(ctx, "Do you sell gift cards?", sender="both@customer.test", subject="Gift cards")
    email_in(ctx, "Hi! How much is shipping to Texas?", sender="new@customer.test")
    send_all(ctx)
    ctx.settings.privacy.retention_days = 0
    assert retention.purge_expired(ctx) == 0  # 0: kept forever
    ctx.settings.privacy.retention_days = 30

    assert retention.purge_expired(ctx) == 5
    with ctx.db.transaction() as session:
        addresses = {i.value for i in session.exec(select(Identity))}
        threads = session.exec(select(Thread)).all()
        messages = session.exec(select(Message)).all()
        stop = session.exec(select(Identity).where(Identity.value == "+14155550177")).one()
    assert addresses == {"both@customer.test", "new@customer.test", "+14155550177"}
    assert len(threads) == 2 and {t.subject for t in threads} == {"Gift cards", "A question"}
    assert all(as_utc(m.received_at) > utcnow() - timedelta(days=1) for m in messages)
    assert stop.opted_out_at is not None  # STOP is still honoured if they text again
    assert retention.purge_expired(ctx) == 0
    log = (shop.config.parent / "data" / "privacy.log").read_text()
    assert '"action": "retention"' in log and "customer.test" not in log

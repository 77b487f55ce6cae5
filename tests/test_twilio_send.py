"""Sending texts through Twilio: the send job (responder.ops.sending) and its rules (channels.base), the channel (channels.twilio.send)
and the owner's handoff text, against the loopback Twilio fake driven through the real ``twilio``
client, on real SQLite and PostgreSQL. Rows are built directly or by the pipeline
(``store_inbound_text`` + ``process_pending``); the test reads what the fake received and the rows.
"""
from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone

import pytest
from fakes.twilio_api import FakeTwilio, count_segments
from helpers import make_context, rows, write_settings
from sqlmodel import select
from twilio.base.exceptions import TwilioRestException

from channels.base import (
    OPTED_OUT,
    Outbound,
    SendFacts,
    decide_before_send,
    shorten_at_sentence,
)
from channels.email.compose import new_message_id
from channels.twilio.client import make_client
from channels.twilio.send import TwilioSender, classify
from responder.core.clock import clock
from responder.core.db import Database
from responder.core.errors import PermanentError, TransientError
from responder.core.models import (
    Customer,
    Draft,
    DraftEvent,
    Identity,
    Message,
    Outbox,
    Route,
    Thread,
)
from responder.core.settings import Settings, load_settings
from responder.core.text import sms_segments
from responder.intake.store import store_inbound_text
from responder.ops.context import Context
from responder.ops.jobs import process_pending
from responder.ops.sending import send_outbox
from responder.owner import approvals
from responder.owner.owner_mail import notify_held
from responder.send import outbox

TOKEN_ENV = "DESKHAND_TEST_TWILIO_TOKEN"


def send_text_outbox(ctx) -> int:
    """One run of the send job for texts, as the daemon's texts worker runs it."""
    return asyncio.run(send_outbox(ctx, "texts"))


SHOP_SMS, SHOP_WA, OWNER_PHONE = "+15550100000", "+15550100001", "+15550109999"
JAMIE = "+14155550100"
CALLBACK = "https://help.example.test/twilio/status"
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
LONG = ("Our candles are poured by hand in small batches in Vermont from a soy and coconut wax blend. "
        "Each one has a cotton wick and burns clean for about forty hours when trimmed to a quarter inch. "
        "We also make an unscented version for sensitive noses and for the dinner table. "
        "Every order ships in recycled packaging within two business days of the order.")


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def fake():
    with FakeTwilio() as server:
        yield server


@pytest.fixture(scope="module")
def brains(tmp_path_factory):
    """The retriever and drafter of the sample shop, built once (the model takes seconds to load)."""
    folder = tmp_path_factory.mktemp("brains")
    ctx = make_context(write_settings(folder, database_url=f"sqlite:///{folder / 'x.sqlite3'}"))
    yield ctx.retriever, ctx.drafter
    ctx.db.dispose()


@pytest.fixture
def shop(tmp_path, database_url, fake, monkeypatch):
    """``shop(twilio_extra="", extra="", pipeline=False) -> Context`` on the fake and the test database."""
    monkeypatch.setenv(TOKEN_ENV, fake.auth_token)
    made: list[Database] = []

    def make(twilio_extra: str = "", extra: str = "", brains=None) -> Context:
        twilio = (f'[twilio]\naccount_sid = "{fake.account_sid}"\nauth_token_env = "{TOKEN_ENV}"\n'
                  f'sms_from = "{SHOP_SMS}"\nwhatsapp_from = "{SHOP_WA}"\napi_base_url = "{fake.base_url}"\n'
                  f'public_url = "https://help.example.test/"\n{twilio_extra}\n')
        settings = load_settings(write_settings(tmp_path, database_url=database_url, extra=twilio + extra))
        db = Database(database_url)
        db.migrate()
        made.append(db)
        retriever, drafter = brains or (None, None)
        return Context(settings=settings, db=db, drafter=drafter, retriever=retriever)
    yield make
    for db in made:
        db.dispose()
    clock.reset()




def customer_message(session, channel: str, *, number: str = JAMIE, sender: str | None = None,
                     text: str = "Do you ship to Canada?", received_at: datetime | None = None) -> Message:
    """A customer with a phone identity, a chat thread and one processed inbound text."""
    identity = session.exec(select(Identity).where(Identity.kind == "phone", Identity.value == number)).first()
    if identity is None:
        customer = Customer(name="Jamie Rivera")
        session.add(customer)
        session.flush()
        identity = Identity(customer_id=customer.id, kind="phone", value=number)
        session.add(identity)
        session.flush()
    thread = Thread(customer_id=identity.customer_id, channel=channel)
    session.add(thread)
    session.flush()
    message = Message(channel=channel, direction="in", provider_id="SM" + secrets.token_hex(16),
                      thread_id=thread.id, customer_id=identity.customer_id, sender=sender or number, text=text,
                      new_text=text, status="processed", received_at=received_at or NOW)
    session.add(message)
    session.flush()
    return message


def drafted(session, message: Message, text: str, *, route: str = Route.AUTO, kind: str = "reply",
            enqueue: bool = True) -> Draft:
    """The draft for ``message``; for an automatic route also its outbox row (as the pipeline does)."""
    draft = Draft(message_id=message.id, thread_id=message.thread_id, route=route, text=text,
                  status="queued" if route == Route.AUTO else "pending", reasons=[] if route == Route.AUTO
                  else ["no knowledge above 0.55 similarity"])
    session.add(draft)
    session.flush()
    if enqueue:
        outbox.enqueue(session=session, draft_id=draft.id, thread_id=message.thread_id, channel=message.channel,
                       kind=kind, recipient=message.sender, subject="", body_text=text,
                       message_id=new_message_id("shop@example.test"))
    return draft


# --- the fake and the client -----------------------------------------------------------------------

def twilio_settings(tmp_path, monkeypatch, *, token: str, account_sid: str, api_base_url: str,
                    sms_from: str = "", whatsapp_from: str = "") -> Settings:
    """Real settings, as a shop owner writes them, with the auth token in its variable."""
    monkeypatch.setenv(TOKEN_ENV, token)
    extra = (f'[twilio]\naccount_sid = "{account_sid}"\nauth_token_env = "{TOKEN_ENV}"\n'
             f'api_base_url = "{api_base_url}"\nsms_from = "{sms_from}"\nwhatsapp_from = "{whatsapp_from}"\n')
    folder = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*')))}"
    folder.mkdir()
    return load_settings(write_settings(folder, database_url=f"sqlite:///{folder / 'unused.sqlite3'}", extra=extra))


def test_the_fake_refuses_wrong_credentials_through_the_real_client(fake, tmp_path, monkeypatch):
    def settings(token):
        return twilio_settings(tmp_path, monkeypatch, token=token, account_sid=fake.account_sid,
                               api_base_url=fake.base_url)
    with pytest.raises(TwilioRestException) as refused:
        make_client(settings("not-the-token")).messages.create(to=JAMIE, from_=SHOP_SMS, body="Hello")
    assert refused.value.status == 401 and refused.value.code == 20003
    assert fake.created == [] and len(fake.posts()) == 1
    # The right token works, and what the client sent is what the fake recorded.
    message = make_client(settings(fake.auth_token)).messages.create(to=JAMIE, from_=SHOP_SMS, body="Hello")
    assert message.sid.startswith("SM") and len(message.sid) == 34 and message.status == "queued"
    assert fake.wait_for(1) == [{"To": JAMIE, "From": SHOP_SMS, "Body": "Hello"}]
    assert classify(refused.value).__class__ is TransientError  # a wrong token waits to be fixed


def test_lists_inbound_messages_page_by_page_through_the_client(fake, tmp_path, monkeypatch):
    client = make_client(twilio_settings(tmp_path, monkeypatch, token=fake.auth_token, account_sid=fake.account_sid,
                                         api_base_url=fake.base_url))
    for n in range(5):
        fake.add_inbound(f"whatsapp:{JAMIE}", f"whatsapp:{SHOP_WA}", f"message {n}",
                         date_sent=NOW + timedelta(minutes=n), media_urls=["https://x.test/p.jpg"] if n == 2 else ())
    fake.add_inbound("+14155550199", SHOP_SMS, "another number")
    listed = client.messages.list(to=f"whatsapp:{SHOP_WA}", page_size=2)
    assert [m.body for m in listed] == [f"message {n}" for n in (4, 3, 2, 1, 0)]  # three pages, newest first
    assert {m.direction for m in listed} == {"inbound"}
    [media] = client.messages(listed[2].sid).media.list()
    assert media.content_type == "image/jpeg" and media.uri.endswith(".json")


def test_unreachable_twilio_is_transient(fake, tmp_path, monkeypatch):
    closed = FakeTwilio()  # never started: its port is closed
    port_url = closed.base_url
    closed.server.server_close()
    settings = twilio_settings(tmp_path, monkeypatch, token=fake.auth_token, account_sid=fake.account_sid,
                               api_base_url=port_url, sms_from=SHOP_SMS)
    item = Outbound(outbox_id=1, recipient=JAMIE, subject="", body_text="Hi", message_id="<x@y>")
    with pytest.raises(TransientError, match="could not reach Twilio"):
        TwilioSender(settings).deliver_now(item, channel="sms")
    with pytest.raises(PermanentError, match="whatsapp_from is empty"):
        TwilioSender(settings).deliver_now(item, channel="whatsapp")


# --- the rules, as plain data --------------------------------------------------------------------

def facts(**changes) -> SendFacts:
    base = dict(channel="sms", kind="reply", automatic=True, body="Yes, we do.", opted_out=False,
                last_inbound_at=NOW, now=NOW + timedelta(hours=1), max_segments=2, template_sid="")
    return SendFacts(**{**base, **changes})


def test_rules_decide_before_sending():
    assert decide_before_send(facts()) == []
    [stop] = decide_before_send(facts(opted_out=True, kind="holding", automatic=False))
    assert not stop.send and stop.reason == OPTED_OUT and not stop.to_owner
    [late] = decide_before_send(facts(channel="whatsapp", now=NOW + timedelta(hours=25)))
    assert not late.send and late.to_owner and late.reason.startswith("outside WhatsApp's 24-hour window")
    assert "25 h ago" in late.reason
    [templated] = decide_before_send(facts(channel="whatsapp", now=NOW + timedelta(hours=25), template_sid="HX1"))
    assert templated.send and templated.template == "HX1"
    [short] = decide_before_send(facts(body=LONG))
    assert short.send and short.body == LONG.split(" Every order")[0] and sms_segments(short.body) <= 2
    [held] = decide_before_send(facts(body=LONG, automatic=False))
    assert not held.send and held.to_owner and "shorten it and approve it again" in held.reason


def test_daily_caps_and_new_words_are_checked_again_before_sending():
    capped = dict(thread_cap=4, sender_cap=8)
    assert decide_before_send(facts(thread_sent_today=3, sender_sent_today=7, **capped)) == []
    [thread] = decide_before_send(facts(thread_sent_today=4, **capped))
    assert not thread.send and thread.to_owner and "4 automatic messages already went to this conversation" in thread.reason
    [sender] = decide_before_send(facts(channel="email", kind="holding", sender_sent_today=8, **capped))
    assert not sender.send and "this customer" in sender.reason and "(cap 8)" in sender.reason
    # The owner's own approved words are not capped, and no cap is no cap.
    assert decide_before_send(facts(automatic=False, thread_sent_today=9, **capped)) == []
    assert decide_before_send(facts(thread_sent_today=99)) == []
    [moved] = decide_before_send(facts(channel="email", automatic=False, wrote_since=2))
    assert not moved.send and moved.to_owner and "wrote 2 more messages after you approved" in moved.reason
    assert decide_before_send(facts(automatic=True, wrote_since=2)) == []  # the pipeline answers those


def test_shortening_keeps_whole_sentences_and_never_drops_a_caveat():
    assert shorten_at_sentence(LONG, 2) == LONG.rsplit(" Every order", 1)[0]
    assert shorten_at_sentence(LONG, 1) == LONG.split(" Each one")[0]
    caveat = LONG.replace("Every order ships", "However, orders to Alaska ship")
    assert shorten_at_sentence(caveat, 2) is None
    assert shorten_at_sentence("word " * 80, 2) is None  # no sentence boundary at all
    emoji = "Yes 🙂 we ship to Canada for $18. " * 2 + "Delivery takes 7 to 14 business days from the order date."
    assert sms_segments(emoji) > 1 and sms_segments(shorten_at_sentence(emoji, 1)) == 1  # UCS-2 counted


# --- the send job against the fake -----------------------------------------------------------------

def test_sms_reply_is_sent_with_status_callback(shop, fake):
    ctx = shop()
    with ctx.db.transaction() as session:
        draft_id = drafted(session, customer_message(session, "sms"), "Yes, we ship to Canada for $18.").id
    assert send_text_outbox(ctx) == 1
    [created] = fake.created
    assert created == {"To": JAMIE, "From": SHOP_SMS, "Body": "Yes, we ship to Canada for $18.",
                       "StatusCallback": CALLBACK}
    [row] = rows(ctx, Outbox)
    assert row.status == "sent" and row.attempts == 1 and row.last_error is None
    assert row.provider_id in fake.messages and fake.messages[row.provider_id]["to"] == JAMIE
    [out] = rows(ctx, Message, Message.direction == "out")
    assert out.text == "Yes, we ship to Canada for $18." and out.channel == "sms"
    assert rows(ctx, Draft)[0].id == draft_id and rows(ctx, Draft)[0].status == "queued"
    assert send_text_outbox(ctx) == 0 and len(fake.posts()) == 1  # sent once


def test_texting_off_or_token_missing_sends_nothing(shop, fake, monkeypatch):
    ctx = shop()
    with ctx.db.transaction() as session:
        drafted(session, customer_message(session, "sms"), "Yes.")
    monkeypatch.delenv(TOKEN_ENV)
    assert send_text_outbox(ctx) == 0
    ctx.settings.twilio.account_sid = ""
    monkeypatch.setenv(TOKEN_ENV, fake.auth_token)
    assert send_text_outbox(ctx) == 0
    assert fake.posts() == [] and rows(ctx, Outbox)[0].status == "queued"


@pytest.mark.parametrize("status, code", [(429, 20429), (500, 20500), (503, 503)])
def test_busy_or_broken_twilio_is_retried_after_backoff(shop, fake, status, code):
    ctx = shop()
    clock.freeze(NOW)
    with ctx.db.transaction() as session:
        drafted(session, customer_message(session, "sms"), "Yes, we do.")
    fake.fail_next(status, code, "Too Many Requests" if status == 429 else "Internal error")
    assert send_text_outbox(ctx) == 1
    [row] = rows(ctx, Outbox)
    assert row.status == "retry" and str(code) in row.last_error and fake.created == []
    assert send_text_outbox(ctx) == 0  # not due yet: no second request
    assert len(fake.posts()) == 1
    clock.advance(seconds=31)
    assert send_text_outbox(ctx) == 1
    [row] = rows(ctx, Outbox)
    assert row.status == "sent" and row.attempts == 2 and len(fake.created) == 1


def test_lost_answer_is_looked_up_not_sent_twice(shop, fake):
    ctx = shop()
    with ctx.db.transaction() as session:
        drafted(session, customer_message(session, "sms", number=JAMIE), "Created, answer lost.")
        drafted(session, customer_message(session, "sms", number="+14155550101"), "Never created.")
    fake.drop_next(after_create=True)   # Twilio made the message, its answer never came
    fake.drop_next()                    # the connection died before Twilio made anything
    assert send_text_outbox(ctx) == 2
    first, second = rows(ctx, Outbox)
    assert first.status == "sent" and first.provider_id == next(iter(fake.messages))
    assert second.status == "retry" and "Twilio has no such message" in second.last_error
    assert len(fake.created) == 1


def test_invalid_number_fails_permanently_with_the_code(shop, fake):
    ctx = shop()
    with ctx.db.transaction() as session:
        drafted(session, customer_message(session, "sms"), "Yes, we do.")
        drafted(session, customer_message(session, "sms", number="+1234", sender="+1234"), "Not a number.")
    fake.fail_next(400, 21211, "Invalid 'To' Phone Number: +14155550100")
    assert send_text_outbox(ctx) == 2
    twilio_refused, ours = rows(ctx, Outbox)
    assert twilio_refused.status == "failed" and "21211" in twilio_refused.last_error
    assert "not a valid phone number" in twilio_refused.last_error
    assert ours.status == "failed" and "is not a phone number" in ours.last_error
    assert len(fake.posts()) == 1  # the second was refused before asking Twilio
    assert send_text_outbox(ctx) == 0


def test_21610_marks_the_number_opted_out_and_nothing_goes_there_again(shop, fake):
    ctx = shop()
    fake.opt_out(JAMIE)
    with ctx.db.transaction() as session:
        first = customer_message(session, "sms")
        drafted(session, first, "Yes, we do.")
        held_id = drafted(session, customer_message(session, "sms", text="And to Mexico?"), "We do.",
                          route=Route.REVIEW, enqueue=False).id
    assert send_text_outbox(ctx) == 1
    [row] = rows(ctx, Outbox)
    assert row.status == "failed" and row.last_error.startswith(OPTED_OUT) and "21610" in row.last_error
    [identity] = rows(ctx, Identity)
    assert identity.opted_out_at is not None
    # The owner approves a held draft to that number later: it is never attempted.
    with ctx.db.transaction() as session:
        approvals.approve(session, ctx.settings, held_id, actor="owner (web)")
    assert send_text_outbox(ctx) == 1
    assert len(fake.posts()) == 1 and fake.created == []
    second = rows(ctx, Outbox)[1]
    assert second.status == "failed" and second.last_error == OPTED_OUT and second.attempts == 1


def test_whatsapp_inside_the_window_is_free_text(shop, fake):
    ctx = shop('whatsapp_template_sid = "HX0123456789abcdef0123456789abcdef"')
    clock.freeze(NOW + timedelta(hours=2))
    with ctx.db.transaction() as session:
        # Intake stores the sender as it came; the approved reply goes to that raw address.
        message = customer_message(session, "whatsapp", sender=f"whatsapp:{JAMIE}", received_at=NOW)
        draft_id = drafted(session, message, "We ship to Canada for $18.", route=Route.REVIEW, enqueue=False).id
        approvals.approve(session, ctx.settings, draft_id, actor="owner (web)")
    assert send_text_outbox(ctx) == 1
    assert fake.created == [{"To": f"whatsapp:{JAMIE}", "From": f"whatsapp:{SHOP_WA}",
                             "Body": "We ship to Canada for $18.", "StatusCallback": CALLBACK}]
    assert rows(ctx, Outbox)[0].status == "sent" and rows(ctx, Draft)[0].status == "sent"


def test_whatsapp_after_the_window_uses_the_template(shop, fake):
    ctx = shop('whatsapp_template_sid = "HX0123456789abcdef0123456789abcdef"')
    clock.freeze(NOW + timedelta(hours=25))
    with ctx.db.transaction() as session:
        drafted(session, customer_message(session, "whatsapp", received_at=NOW), "We ship to Canada for $18.")
    assert send_text_outbox(ctx) == 1
    [created] = fake.created
    assert created["ContentSid"] == "HX0123456789abcdef0123456789abcdef" and "Body" not in created
    assert created["To"] == f"whatsapp:{JAMIE}"
    [row] = rows(ctx, Outbox)
    assert row.status == "sent" and row.extra["template"] == {"content_sid": "HX0123456789abcdef0123456789abcdef"}
    assert row.extra["unsent_text"] == "We ship to Canada for $18." and "24-hour window" in row.extra["changed"]
    assert "template" in row.body_text  # the thread's history says what the customer got


def test_whatsapp_after_the_window_without_template_goes_back_to_the_owner(shop, fake):
    ctx = shop()
    clock.freeze(NOW + timedelta(hours=25))
    with ctx.db.transaction() as session:
        draft_id = drafted(session, customer_message(session, "whatsapp", received_at=NOW), "We ship to Canada.").id
    assert send_text_outbox(ctx) == 1
    assert fake.posts() == []
    [row] = rows(ctx, Outbox)
    assert row.status == "failed" and row.last_error.startswith("outside WhatsApp's 24-hour window")
    with ctx.db.transaction() as session:
        draft = session.get(Draft, draft_id)
        assert (draft.route, draft.status) == (Route.REVIEW, "pending") and row.last_error in draft.reasons
        assert draft in approvals.pending(session)
        assert [e.action for e in approvals.events(session, draft_id)] == ["returned"]


def test_a_returned_draft_can_be_approved_again(shop, fake):
    ctx = shop()
    clock.freeze(NOW + timedelta(hours=25))
    with ctx.db.transaction() as session:
        draft_id = drafted(session, customer_message(session, "whatsapp", received_at=NOW), "We ship.").id
    send_text_outbox(ctx)
    with ctx.db.transaction() as session:  # the customer writes again: the window is open
        customer_message(session, "whatsapp", received_at=NOW + timedelta(hours=25))
        approvals.approve(session, ctx.settings, draft_id, actor="owner (web)", force=True)
    assert send_text_outbox(ctx) == 1 and fake.created[0]["Body"] == "We ship."


@pytest.mark.parametrize("template", ["", "HX0123456789abcdef0123456789abcdef"])
def test_63016_from_twilio_is_handled_like_the_window(shop, fake, template):
    ctx = shop(f'whatsapp_template_sid = "{template}"')
    clock.freeze(NOW + timedelta(hours=1))  # inside the window as far as we know; Twilio disagrees
    with ctx.db.transaction() as session:
        draft_id = drafted(session, customer_message(session, "whatsapp", received_at=NOW), "We ship.").id
    fake.fail_next(400, 63016, "Failed to send freeform message because you are outside the allowed window.")
    assert send_text_outbox(ctx) == 1
    [row] = rows(ctx, Outbox)
    [draft] = rows(ctx, Draft)
    if template:
        assert len(fake.posts()) == 2 and fake.created[0]["ContentSid"] == template
        assert row.status == "sent" and row.attempts == 1 and draft.status == "queued"
    else:
        assert len(fake.posts()) == 1 and fake.created == []
        assert row.status == "failed" and "outside WhatsApp's 24-hour window" in row.last_error
        assert "63016" in row.last_error
        assert (draft.id, draft.status, draft.route) == (draft_id, "pending", Route.REVIEW)


def test_long_sms_is_shortened_or_held(shop, fake):
    ctx = shop()
    with ctx.db.transaction() as session:
        auto_id = drafted(session, customer_message(session, "sms"), LONG).id
        owner_draft = drafted(session, customer_message(session, "sms", number="+14155550101"), "Short draft.",
                              route=Route.REVIEW, enqueue=False)
        approvals.approve(session, ctx.settings, owner_draft.id, actor="owner (web)", text=LONG)
        run_on_id = drafted(session, customer_message(session, "sms", number="+14155550102"),
                            "and " * 100 + "that is all").id
    assert send_text_outbox(ctx) == 3
    [created] = fake.created
    assert created["To"] == JAMIE and LONG.startswith(created["Body"]) and created["Body"].endswith(".")
    assert count_segments(created["Body"]) <= 2 < count_segments(LONG)  # the fake's own count agrees
    shortened, owners, run_on = rows(ctx, Outbox)
    assert shortened.status == "sent" and shortened.extra["original_text"] == LONG
    assert shortened.draft_id == auto_id
    assert owners.status == "failed" and "shorten it and approve it again" in owners.last_error
    assert run_on.status == "failed" and "can't be shortened safely" in run_on.last_error
    with ctx.db.transaction() as session:
        assert session.get(Draft, owner_draft.id).status == "pending"
        returned = session.get(Draft, run_on_id)
        assert (returned.status, returned.route) == ("pending", Route.REVIEW)
        assert any("can't be shortened safely" in r for r in returned.reasons)


# --- the owner's handoff text ---------------------------------------------------------------------

@pytest.mark.parametrize("notify, route, texted", [("handoff", Route.HANDOFF, True), ("all", Route.REVIEW, False),
                                                   ("none", Route.HANDOFF, False)])
def test_owner_is_texted_about_a_handoff(shop, fake, notify, route, texted):
    ctx = shop(f'owner_sms = "{OWNER_PHONE}"', f'[approvals]\nnotify = "{notify}"\n')
    with ctx.db.transaction() as session:
        message = customer_message(session, "sms", text="I want to talk to a real person about my broken "
                                   "candle jar, it arrived in pieces and I need it for a gift on Friday 😡")
        draft = drafted(session, message, "", route=route, enqueue=False)
        notify_held(session, ctx.settings, draft)
        notify_held(session, ctx.settings, draft)  # one per draft
    assert send_text_outbox(ctx) == (1 if texted else 0)
    if not texted:
        assert fake.posts() == [] and rows(ctx, Outbox) == []
        return
    [row] = rows(ctx, Outbox)
    assert (row.kind, row.channel, row.recipient, row.automatic) == ("notify_sms", "sms", OWNER_PHONE, False)
    [created] = fake.created
    assert created["To"] == OWNER_PHONE and created["From"] == SHOP_SMS
    body = created["Body"]
    assert body.startswith('Deskhand: Jamie Rivera needs you: "I want to talk to a real person')
    assert body.endswith(f"Queue: http://127.0.0.1:0/queue/{draft.id}") and count_segments(body) <= 2
    assert row.status == "sent"


def test_pipeline_replies_by_sms_and_whatsapp_and_texts_the_owner(shop, fake, brains):
    ctx = shop(f'owner_sms = "{OWNER_PHONE}"', brains=brains)
    with ctx.db.transaction() as session:
        store_inbound_text(session=session, channel="sms", sender=JAMIE, text="How much is shipping to Texas?",
                           provider_id="SM" + "1" * 32)
        store_inbound_text(session=session, channel="whatsapp", sender="whatsapp:+14155550111",
                           text="Do you ship to Canada?", provider_id="SM" + "2" * 32)
        store_inbound_text(session=session, channel="sms", sender="+14155550122",
                           text="I want to talk to a real person, this is the third time I ask!!",
                           provider_id="SM" + "3" * 32)
    assert process_pending(ctx) == 3
    assert send_text_outbox(ctx) == 4
    sent = {(c["To"], c["From"]): c["Body"] for c in fake.created}
    assert "$7" in sent[(JAMIE, SHOP_SMS)]
    assert "Canada" in sent[("whatsapp:+14155550111", f"whatsapp:{SHOP_WA}")]
    assert "Maya" in sent[("+14155550122", SHOP_SMS)]  # the holding note
    assert "needs you" in sent[(OWNER_PHONE, SHOP_SMS)]
    assert {r.status for r in rows(ctx, Outbox)} == {"sent"}
    assert all(c["StatusCallback"] == CALLBACK for c in fake.created)
    events = rows(ctx, DraftEvent)
    assert events == []  # nothing was returned to the owner

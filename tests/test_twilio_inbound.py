"""Inbound SMS/WhatsApp from Twilio, on SQLite and PostgreSQL: signed webhooks (signatures made
with the twilio library's own ``RequestValidator``, including Twilio's documented example),
idempotent storing on MessageSid, media, STOP/START/HELP, bad input, a flood from one number,
delivery status callbacks, and polling mode against the loopback Twilio REST fake.

Requests go through FastAPI's TestClient to ``create_app``; processing is the real pipeline
(``responder.ops.jobs.process_pending``) with the offline drafter. Nothing is mocked.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from browser import make_web
from helpers import write_settings
from sqlmodel import func, select
from texts import (
    CUSTOMER,
    PUBLIC,
    SHOP,
    TOKEN,
    TOKEN_ENV,
    TWIML,
    new_sid,
    signed_post,
    sms_form,
)
from twilio.request_validator import RequestValidator

from channels.twilio.webhook import (
    FormParams,
    WebhookRefused,
    decode_form,
    is_forward,
    signature_error,
)
from responder.core.clock import clock
from responder.core.errors import ConfigError, TransientError
from responder.core.models import Draft, Identity, Message, Outbox
from responder.core.settings import load_settings
from responder.decide import optout
from responder.ops.context import Context, build_context
from responder.ops.jobs import process_pending
from responder.understand import customers

HELP_TEXT = "{store}: text us your question any time. Reply STOP to opt out."
@pytest.fixture(scope="module")
def twilio_base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twilio")
    extra = (f'[twilio]\naccount_sid = "AC{"0" * 31}1"\nauth_token_env = "{TOKEN_ENV}"\nsms_from = "{SHOP}"\n'
             f'whatsapp_from = "{SHOP}"\npublic_url = "{PUBLIC}"\nhelp_text = "{HELP_TEXT}"\n')
    url = f"sqlite:///{folder / 'base.sqlite3'}"
    ctx = build_context(load_settings(write_settings(folder, database_url=url, extra=extra)))
    yield ctx
    ctx.db.dispose()


@pytest.fixture(autouse=True)
def token_and_clock(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    yield
    clock.reset()


@pytest.fixture
def web(twilio_base, database_url):
    with make_web(twilio_base, database_url) as w:
        yield w


def with_settings(base: Context, **twilio) -> Context:
    settings = base.settings.model_copy(update={"twilio": base.settings.twilio.model_copy(update=twilio)})
    return Context(settings=settings, db=base.db, drafter=base.drafter, retriever=base.retriever)


def count(ctx, model) -> int:
    with ctx.db.transaction() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def messages(ctx) -> list[Message]:
    with ctx.db.transaction() as session:
        rows = session.exec(select(Message).order_by(Message.id)).all()
        session.expunge_all()
        return rows


def process_all(ctx) -> None:
    while process_pending(ctx):
        pass


def draft_of(ctx, message_id: int) -> Draft:
    with ctx.db.transaction() as session:
        draft = session.exec(select(Draft).where(Draft.message_id == message_id)).one()
        session.expunge(draft)
        return draft


def outbox_rows(ctx) -> list[Outbox]:
    with ctx.db.transaction() as session:
        rows = session.exec(select(Outbox).order_by(Outbox.id)).all()
        session.expunge_all()
        return rows


# --- the signature, pure ----------------------------------------------------------------------

def test_twilios_documented_example_vector():
    # docs "Webhooks security": auth token 12345, this URL and these parameters.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    assert RequestValidator("12345").compute_signature(url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    form = decode_form("&".join(f"{k}={v.replace('+', '%2B')}" for k, v in params.items()).encode())
    assert signature_error(token="12345", url=url, params=form, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=") is None
    assert signature_error(token="54321", url=url, params=form, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert signature_error(token="12345", url=url.replace("foo=1", "foo=2"), params=form,
                           signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert signature_error(token="12345", url=url, params=form, signature=None) == "no X-Twilio-Signature header"
    assert "shared key" in signature_error(token="12345", url=url, params=form,
                                           signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
                                           settings_header="key=webhooks_sharedkey_x,algorithm=HMAC_SHA256")


def test_repeated_fields_are_signed_like_twilio_does():
    form = decode_form(b"Body=a&Body=b&From=%2B1415")
    assert form == FormParams({"Body": ["a", "b"], "From": ["+1415"]})
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/sms", {"From": "+1415", "Body": "a"})
    assert signature_error(token=TOKEN, url=PUBLIC + "/twilio/sms", params=form, signature=signature)


@pytest.mark.parametrize("body", [b"Body=%E9t%E9&MessageSid=SM1", b"Body=\xff\xfe&MessageSid=SM1",
                                  b"Body=%ED%A0%80&MessageSid=SM1"])
def test_a_form_that_is_not_utf8_is_refused(body):
    with pytest.raises(WebhookRefused) as refused:
        decode_form(body)
    assert refused.value.status == 400 and "UTF-8" in refused.value.reason


def test_status_order_never_goes_backwards():
    assert is_forward("", "queued") and is_forward("queued", "sent") and is_forward("sent", "delivered")
    assert is_forward("delivered", "read") and is_forward("sent", "undelivered")
    assert not is_forward("delivered", "sent") and not is_forward("delivered", "queued")
    assert not is_forward("failed", "delivered") and not is_forward("delivered", "undelivered")


@pytest.mark.parametrize("text,word", [("STOP", "stop"), (" stop. ", "stop"), ("Unsubscribe", "stop"),
                                       ("cancel!", "stop"), ("END", "stop"), ("quit", "stop"), ("StopAll", "stop"),
                                       ("opt-out", "stop"), ("START", "start"), ("unstop", "start"), ("Yes", "start"),
                                       ("HELP", "help"), ("info?", "help"), ("stop sending me ads", None),
                                       ("Can you help me find a candle?", None), ("", None), ("👍", None)])
def test_keywords(text, word):
    assert optout.keyword(text) == word


# --- inbound webhooks ------------------------------------------------------------------------

def test_a_signed_sms_is_stored_and_answered_at_once_with_empty_twiml(web):
    form = sms_form()
    response = signed_post(web.client, "/twilio/sms", form)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == TWIML
    [row] = messages(web.ctx)
    assert (row.channel, row.direction, row.provider_id, row.sender, row.recipient, row.text, row.status) == \
        ("sms", "in", form["MessageSid"], CUSTOMER, SHOP, form["Body"], "received")
    assert count(web.ctx, Draft) == 0  # drafting happens in the process job, never in the request
    process_all(web.ctx)
    draft = draft_of(web.ctx, row.id)
    assert draft.route in ("auto", "review", "handoff")


def test_unsigned_wrongly_signed_or_tampered_requests_are_refused(web, caplog):
    caplog.set_level(logging.WARNING, logger="deskhand.twilio")
    form = sms_form()
    assert web.client.post("/twilio/sms", data=form).status_code == 403
    assert signed_post(web.client, "/twilio/sms", form, token="not-the-token").status_code == 403
    # Signed for the inner URL the proxy forwards to, not the public one Twilio calls.
    assert signed_post(web.client, "/twilio/sms", form, url="http://testserver/twilio/sms").status_code == 403
    assert signed_post(web.client, "/twilio/sms", form, url=PUBLIC + "/twilio/whatsapp").status_code == 403
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/sms", form)
    tampered = {**form, "Body": "Refund me $500"}
    assert web.client.post("/twilio/sms", data=tampered, headers={"X-Twilio-Signature": signature}).status_code == 403
    assert count(web.ctx, Message) == 0
    assert sum("refused Twilio request" in r.getMessage() for r in caplog.records) == 5
    assert "no X-Twilio-Signature header" in caplog.records[0].getMessage()


def test_the_query_string_is_part_of_the_signed_url(web):
    form = sms_form()
    response = signed_post(web.client, "/twilio/sms?shop=1", form, url=PUBLIC + "/twilio/sms?shop=1")
    assert response.status_code == 200
    assert signed_post(web.client, "/twilio/sms?shop=2", sms_form(), url=PUBLIC + "/twilio/sms?shop=1"
                       ).status_code == 403
    assert count(web.ctx, Message) == 1


def test_without_a_public_url_every_webhook_is_refused(twilio_base, database_url, caplog):
    caplog.set_level(logging.WARNING, logger="deskhand.twilio")
    base = with_settings(twilio_base, public_url="")
    assert not base.settings.web.public_url
    with make_web(base, database_url) as w:
        for url in ("http://testserver/twilio/sms", PUBLIC + "/twilio/sms"):
            assert signed_post(w.client, "/twilio/sms", sms_form(), url=url).status_code == 403
        assert count(w.ctx, Message) == 0
    assert "set [twilio] public_url" in caplog.records[-1].getMessage()


def test_without_the_auth_token_every_webhook_is_refused(web, monkeypatch, caplog):
    monkeypatch.delenv(TOKEN_ENV)
    caplog.set_level(logging.WARNING, logger="deskhand.twilio")
    assert signed_post(web.client, "/twilio/sms", sms_form()).status_code == 403
    assert count(web.ctx, Message) == 0
    assert TOKEN_ENV in caplog.records[-1].getMessage()


def test_the_same_message_sid_twice_is_stored_once(web):
    form = sms_form("Do you have the Amber Noir candle in stock?")
    first, second = signed_post(web.client, "/twilio/sms", form), signed_post(web.client, "/twilio/sms", form)
    assert (first.status_code, first.text) == (second.status_code, second.text) == (200, TWIML)
    assert count(web.ctx, Message) == 1
    process_all(web.ctx)
    assert count(web.ctx, Draft) == 1
    assert signed_post(web.client, "/twilio/sms", form).status_code == 200  # a retry after processing
    process_all(web.ctx)
    assert (count(web.ctx, Message), count(web.ctx, Draft)) == (1, 1)


def test_a_webhook_stores_its_message_in_one_insert(web):
    """The webhook answers Twilio after its transaction: a duplicate check and one INSERT with the
    recipient and media in it (an UPDATE after the insert was one more round trip on PostgreSQL)."""
    from sqlalchemy import event

    statements: list[str] = []
    listener = lambda *args: statements.append(args[2].split()[0].upper())  # noqa: E731 (statement)
    event.listen(web.ctx.db.engine, "before_cursor_execute", listener)
    try:
        form = sms_form("A photo of the lid", NumMedia="1", MediaUrl0="https://api.twilio.com/m/ME9",
                        MediaContentType0="image/jpeg")
        assert signed_post(web.client, "/twilio/sms", form).status_code == 200
    finally:
        event.remove(web.ctx.db.engine, "before_cursor_execute", listener)
    assert [s for s in statements if s != "BEGIN"] == ["SELECT", "INSERT"]  # SQLite: BEGIN IMMEDIATE
    stored = messages(web.ctx)[-1]
    assert (stored.recipient, stored.attachments) == (SHOP, [{"url": "https://api.twilio.com/m/ME9",
                                                              "content_type": "image/jpeg"}])


def test_a_new_message_wakes_the_process_job_and_a_retry_does_not(web):
    kicks: list[int] = []
    web.app.state.deskhand.on_inbound = lambda: kicks.append(1)  # the daemon passes on_inbound
    form = sms_form()
    for _ in range(3):
        assert signed_post(web.client, "/twilio/sms", form).status_code == 200
    assert kicks == [1]


def test_every_media_item_is_recorded_and_whatsapp_is_one_customer_with_sms(web):
    media = {"NumMedia": "3", "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME0",
             "MediaContentType0": "image/jpeg", "MediaUrl1": "https://api.twilio.com/.../Media/ME1",
             "MediaContentType1": "image/png", "MediaUrl2": "https://api.twilio.com/.../Media/ME2",
             "MediaContentType2": "application/pdf", "ProfileName": "Jamie"}
    form = sms_form("My candle arrived like this, see photos", sender="whatsapp:" + CUSTOMER,
                    to="whatsapp:" + SHOP, **media)
    assert signed_post(web.client, "/twilio/whatsapp", form).status_code == 200
    assert signed_post(web.client, "/twilio/sms", sms_form("and one more thing")).status_code == 200
    wa, sms = messages(web.ctx)
    assert (wa.channel, wa.sender, wa.recipient) == ("whatsapp", CUSTOMER, SHOP)
    assert wa.attachments == [{"url": media["MediaUrl0"], "content_type": "image/jpeg"},
                              {"url": media["MediaUrl1"], "content_type": "image/png"},
                              {"url": media["MediaUrl2"], "content_type": "application/pdf"}]
    assert sms.channel == "sms" and sms.attachments == []
    process_all(web.ctx)
    wa, sms = messages(web.ctx)
    assert wa.customer_id == sms.customer_id  # one number, one customer, on both channels


def test_a_photo_without_text_goes_to_review(web):
    form = sms_form("", NumMedia="2", MediaUrl0="https://api.twilio.com/m/ME0", MediaContentType0="image/jpeg",
                    MediaUrl1="https://api.twilio.com/m/ME1", MediaContentType1="image/jpeg")
    assert signed_post(web.client, "/twilio/sms", form).status_code == 200
    process_all(web.ctx)
    [row] = messages(web.ctx)
    draft = draft_of(web.ctx, row.id)
    assert draft.route == "review" and draft.status == "pending"
    assert any("a photo or file without text: please look" in r and "2 attachment(s)" in r for r in draft.reasons)
    assert [o for o in outbox_rows(web.ctx) if o.recipient == CUSTOMER] == []


def test_stop_start_and_help(web):
    def say(text: str, sender: str = CUSTOMER, path: str = "/twilio/sms") -> Draft:
        assert signed_post(web.client, path, sms_form(text, sender=sender)).status_code == 200
        clock.advance(seconds=30)  # not a burst
        process_all(web.ctx)
        return draft_of(web.ctx, messages(web.ctx)[-1].id)

    def opted_out() -> bool:
        with web.ctx.db.transaction() as session:
            return customers.is_opted_out(session, CUSTOMER)

    def to_customer() -> list[Outbox]:
        return [o for o in outbox_rows(web.ctx) if o.recipient == CUSTOMER]

    clock.freeze(datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc))
    draft = say("STOP")
    assert opted_out()
    assert (draft.route, draft.reasons) == ("ignore", [optout.STOP_REASON]) and draft.text == ""
    assert to_customer() == []
    draft = say("How much is shipping to Texas?")  # can't be answered by text: the owner sees it
    assert draft.route == "review" and draft.reasons == [optout.OPTED_OUT_REASON]
    draft = say("Hello??")
    assert draft.route == "ignore" and "already held" in draft.reasons[0]
    assert say("HELP").route == "ignore"  # an opted-out number gets no help text either
    assert to_customer() == []
    draft = say("Start")
    assert not opted_out() and draft.reasons == [optout.START_REASON]
    draft = say("help")
    assert draft.route == "auto"
    [help_reply] = to_customer()
    assert help_reply.body_text == "Wick & Willow Candle Co.: text us your question any time. Reply STOP to opt out."
    assert help_reply.channel == "sms" and not draft.no_match
    assert say("HELP").route == "ignore" and len(to_customer()) == 1  # once a day
    assert say("Yes").route != "ignore"  # "yes" from a subscribed number is an answer, not START
    # STOP on WhatsApp stops the number on SMS too (one identity, kind "phone").
    draft = say("stop.", sender="whatsapp:" + CUSTOMER, path="/twilio/whatsapp")
    assert draft.route == "ignore" and opted_out()
    with web.ctx.db.transaction() as session:
        assert session.exec(select(func.count()).select_from(Identity)).one() == 1


def test_bad_input_gets_a_clear_status_and_never_a_crash(web):
    form = sms_form()
    del form["MessageSid"], form["SmsSid"], form["SmsMessageSid"]
    response = signed_post(web.client, "/twilio/sms", form)
    assert response.status_code == 400 and response.text == "missing MessageSid"
    response = signed_post(web.client, "/twilio/sms", sms_form(sid="SM1/../x"))
    assert response.status_code == 400 and response.text == "MessageSid is not a Twilio message id"
    bad = "MessageSid=SM1&From=%2B14155550100&Body=caf%E9".encode()
    response = web.client.post("/twilio/sms", content=bad, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    assert response.status_code == 400 and "UTF-8" in response.text
    response = web.client.post("/twilio/sms", content=b'{"Body": "hi"}', headers={
        "Content-Type": "application/json", "X-Twilio-Signature": "x"})
    assert response.status_code == 415
    huge = sms_form("x" * 70_000)
    assert signed_post(web.client, "/twilio/sms", huge).status_code == 413
    assert count(web.ctx, Message) == 0


def test_odd_but_real_messages_are_stored_whole_and_routed(web):
    long_body = ("Bonjour! Je voudrais savoir si la bougie Amber Noir est disponible. ✨ " * 30)[:1600]
    assert len(long_body) == 1600
    cases = [sms_form(long_body, sender="+33612345678"),
             sms_form("😍🕯️🔥", sender="+447700900123"),
             sms_form("WIN A PRIZE", sender="PROMO-TXT"),          # an alphanumeric sender, not a phone
             sms_form("Is the Lavender candle in stock?", sender="+15005550006", Unknown="x", AddOns='{"a":1}')]
    for form in cases:
        assert signed_post(web.client, "/twilio/sms", form).status_code == 200
    long_row, emoji, promo, extra = messages(web.ctx)
    assert long_row.text == long_body
    assert emoji.text == "😍🕯️🔥"
    assert promo.sender == "PROMO-TXT"  # stored so nothing is lost; the pipeline ignores it
    process_all(web.ctx)
    assert draft_of(web.ctx, long_row.id).route in ("auto", "review", "handoff")
    emoji_draft = draft_of(web.ctx, emoji.id)
    assert emoji_draft.route == "ignore" and emoji_draft.reasons[0] == "emoji only: no reply needed"
    promo_draft = draft_of(web.ctx, promo.id)
    assert promo_draft.route == "ignore" and "is not a phone number" in promo_draft.reasons[0]
    assert draft_of(web.ctx, extra.id).route in ("auto", "review", "handoff")
    assert not [o for o in outbox_rows(web.ctx) if o.recipient in ("PROMO-TXT", "+447700900123")]


def test_a_flood_from_one_number_is_stored_whole_and_answered_once_or_so(web):
    routing = web.ctx.settings.routing
    clock.freeze(datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc))
    for n in range(100):  # 100 webhooks in 50 seconds
        form = sms_form(f"Hi, how much is shipping to Texas? ({n})")
        assert signed_post(web.client, "/twilio/sms", form).text == TWIML
        clock.advance(seconds=0.5)
    assert count(web.ctx, Message) == 100
    process_all(web.ctx)
    clock.advance(seconds=routing.burst_window_s + 2)
    process_all(web.ctx)
    rows = messages(web.ctx)
    assert all(m.status == "processed" for m in rows)
    drafts = [draft_of(web.ctx, m.id) for m in rows]
    throttled = [d for d in drafts if d.route == "throttled"]
    answered = [d for d in drafts if d.route != "throttled"]
    assert all(any("part of a burst" in r for r in d.reasons) for d in throttled)
    assert len(answered) <= routing.burst_limit + 1 and len(throttled) >= 100 - routing.burst_limit - 1
    assert all(d.route == "auto" or d.reasons for d in answered)
    replies = [o for o in outbox_rows(web.ctx) if o.recipient == CUSTOMER]
    assert len(replies) <= len(answered) < 10


# --- delivery status callbacks ---------------------------------------------------------------

def status_form(sid: str, status: str, **more) -> dict:
    return {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status, "To": CUSTOMER,
            "From": SHOP, "AccountSid": "AC" + "0" * 31 + "1", "ApiVersion": "2010-04-01", **more}


def test_status_callbacks_update_the_outbox_and_never_go_backwards(web):
    sids = [new_sid(), new_sid()]
    with web.ctx.db.transaction() as session:
        for n, sid in enumerate(sids):
            session.add(Outbox(channel="sms", recipient=CUSTOMER, body_text="Shipping to Texas is $8.",
                               message_id=f"<t{n}@shop.example.test>", status="sent", provider_id=sid))

    def state(sid: str) -> tuple[str, str | None]:
        [row] = [o for o in outbox_rows(web.ctx) if o.provider_id == sid]
        return row.delivery_status, row.delivery_error

    for status in ("queued", "sent", "delivered", "sent", "queued"):  # the last two arrive late
        assert signed_post(web.client, "/twilio/status", status_form(sids[0], status)).status_code == 200
    assert state(sids[0]) == ("delivered", None)
    assert signed_post(web.client, "/twilio/status", status_form(sids[1], "sent")).status_code == 200
    form = status_form(sids[1], "undelivered", ErrorCode="30007")
    assert signed_post(web.client, "/twilio/status", form).status_code == 200
    assert state(sids[1]) == ("undelivered", "30007: the carrier filtered the message")
    assert signed_post(web.client, "/twilio/status", status_form(sids[1], "delivered")).status_code == 200
    assert state(sids[1])[0] == "undelivered"
    # Unsigned: refused, nothing changes. Unknown sid: 200 (Twilio would retry), nothing changes.
    assert web.client.post("/twilio/status", data=status_form(sids[0], "failed")).status_code == 403
    assert signed_post(web.client, "/twilio/status", status_form(new_sid(), "failed")).status_code == 200
    assert signed_post(web.client, "/twilio/status", status_form(sids[0], "exploded")).status_code == 400
    assert state(sids[0]) == ("delivered", None)


def test_a_21610_status_marks_the_number_opted_out(web):
    assert signed_post(web.client, "/twilio/sms", sms_form("Is the Amber Noir in stock?")).status_code == 200
    process_all(web.ctx)
    sid = new_sid()
    with web.ctx.db.transaction() as session:
        session.add(Outbox(channel="sms", recipient=CUSTOMER, body_text="Yes!", message_id="<x@shop.example.test>",
                           status="sent", provider_id=sid))
    form = status_form(sid, "failed", ErrorCode="21610", ErrorMessage="Attempt to send to unsubscribed recipient")
    assert signed_post(web.client, "/twilio/status", form).status_code == 200
    with web.ctx.db.transaction() as session:
        assert customers.is_opted_out(session, CUSTOMER)


# --- polling mode, against the loopback Twilio REST fake, through the real client ----------------

@pytest.fixture
def polling(twilio_base, database_url, monkeypatch):
    from fakes.twilio_api import FakeTwilio
    with FakeTwilio() as fake:
        monkeypatch.setenv(TOKEN_ENV, fake.auth_token)
        base = with_settings(twilio_base, mode="poll", account_sid=fake.account_sid, api_base_url=fake.base_url)
        with make_web(base, database_url) as w:
            yield SimpleNamespace(fake=fake, ctx=w.ctx, client=w.client)


def test_polling_stores_each_inbound_message_once(polling):
    from responder.intake.twilio_poll import poll_twilio
    fake, ctx = polling.fake, polling.ctx
    fake.add_inbound(CUSTOMER, SHOP, "Sent before Deskhand started: never answered",
                     date_sent=datetime.now(timezone.utc) - timedelta(minutes=5))
    assert poll_twilio(ctx) == 0  # first start: from now on only
    first = fake.add_inbound(CUSTOMER, SHOP, "Do you ship to Canada?")
    photo = fake.add_inbound("whatsapp:+447700900123", "whatsapp:" + SHOP, "Is this one still available?",
                             media_urls=("https://cdn.example.test/candle.jpg", ("image/png", b"\x89PNG")))
    fake.add_inbound(SHOP, CUSTOMER, "an outbound text is not intake")  # to the customer: not listed for SHOP
    assert poll_twilio(ctx) == 2
    assert poll_twilio(ctx) == 0  # the same listing again stores nothing
    sms, wa = messages(ctx)
    assert (sms.channel, sms.provider_id, sms.sender, sms.recipient, sms.text) == \
        ("sms", first["sid"], CUSTOMER, SHOP, "Do you ship to Canada?")
    assert (wa.channel, wa.provider_id, wa.sender) == ("whatsapp", photo["sid"], "+447700900123")
    assert [a["content_type"] for a in wa.attachments] == ["image/jpeg", "image/png"]
    assert all(a["url"].startswith(fake.base_url + "/2010-04-01/Accounts/") and not a["url"].endswith(".json")
               for a in wa.attachments)
    # The webhook path for a message the poll already stored: answered, not stored again.
    form = sms_form("Do you ship to Canada?", sid=first["sid"])
    signature = RequestValidator(fake.auth_token).compute_signature(PUBLIC + "/twilio/sms", form)
    response = polling.client.post("/twilio/sms", data=form, headers={"X-Twilio-Signature": signature})
    assert (response.status_code, response.text) == (200, TWIML)
    assert count(ctx, Message) == 2
    process_all(ctx)
    assert draft_of(ctx, wa.id).route in ("auto", "review", "handoff")


def test_polling_reads_every_page_and_loses_nothing_when_a_page_fails(polling):
    import requests
    from twilio.http.http_client import TwilioHttpClient

    from channels.twilio.client import make_client
    from responder.intake.twilio_poll import poll_twilio

    class LosesConnectionOnRequest(TwilioHttpClient):
        """The real HTTP client; request number ``n`` of this poll meets a dropped connection."""
        def __init__(self, n: int):
            super().__init__(timeout=5)
            self.n, self.calls = n, 0

        def request(self, *args, **kwargs):
            self.calls += 1
            if self.calls == self.n:
                raise requests.ConnectionError("connection reset by peer")
            return super().request(*args, **kwargs)

    fake, ctx = polling.fake, polling.ctx
    assert poll_twilio(ctx) == 0
    t0 = datetime.now(timezone.utc)
    sids = [fake.add_inbound(f"+1415555{n:04d}", SHOP, f"Question number {n}", date_sent=t0 + timedelta(seconds=n)
                             )["sid"] for n in range(230)]
    fake.fail_next(500, 20500, "Internal Server Error", on="list")
    with pytest.raises(TransientError, match="500"):
        poll_twilio(ctx)
    client = make_client(ctx.settings)
    client.http_client = LosesConnectionOnRequest(3)  # pages of 100: the third page is lost
    with pytest.raises(TransientError, match="connection reset"):
        poll_twilio(ctx, client=client)
    assert client.http_client.calls == 3
    assert count(ctx, Message) == 0  # all or nothing: the cursor did not move either
    assert poll_twilio(ctx) == 230
    assert poll_twilio(ctx) == 0
    rows = messages(ctx)
    assert sorted(m.provider_id for m in rows) == sorted(sids)
    assert [m.text for m in rows][:2] == ["Question number 0", "Question number 1"]  # oldest first
    assert rows[-1].received_at.replace(tzinfo=timezone.utc) == (t0 + timedelta(seconds=229)).replace(microsecond=0)


def test_polling_with_a_wrong_token_says_so(polling, monkeypatch):
    from responder.intake.twilio_poll import poll_twilio
    assert poll_twilio(polling.ctx) == 0
    polling.fake.add_inbound(CUSTOMER, SHOP, "hello?")
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    with pytest.raises(ConfigError, match="401"):
        poll_twilio(polling.ctx)
    assert count(polling.ctx, Message) == 0


def test_webhook_mode_does_not_poll(twilio_base, database_url):
    from responder.intake.twilio_poll import poll_twilio
    with make_web(twilio_base, database_url) as w:
        assert w.ctx.settings.twilio.mode == "webhook"
        assert poll_twilio(w.ctx) == 0


def test_a_photo_with_words_waits_for_the_owner_who_sees_the_links(web):
    from browser import login, set_password

    form = sms_form("Is this <b>crack</b> normal?", NumMedia="1", MediaUrl0="https://api.twilio.com/m/ME9",
                    MediaContentType0="image/jpeg")
    assert signed_post(web.client, "/twilio/sms", form).status_code == 200
    process_all(web.ctx)
    [row] = messages(web.ctx)
    draft = draft_of(web.ctx, row.id)
    assert draft.route == "review"
    assert "1 photo(s) or file(s) the bot can't see: please look" in draft.reasons
    set_password(web.ctx)
    login(web.client)
    page = web.client.get(f"/queue/{draft.id}").text
    assert 'href="https://api.twilio.com/m/ME9"' in page and "(image/jpeg)" in page
    assert "&lt;b&gt;crack&lt;/b&gt;" in page and "<b>crack</b>" not in page

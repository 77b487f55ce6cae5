"""Order questions end to end through the pipeline, with the order file the README tells an owner
to write (``[orders] source = "file"``): answered to the order's own customer, never to anyone else.

Each test stores real customer messages (raw email, texts), runs the process job and reads the
drafts, the outbox and the order checks. Orders are dated relative to the test's clock, so their
state (not shipped, on its way, delivered, late) doesn't drift with the calendar. The Shopify and
WooCommerce sources are driven the same way through their loopback fakes in
``test_orders_sources_e2e.py``; the email and SMS loops on real servers in ``test_order_loops.py``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
import re
from datetime import timedelta

import pytest
from corpora import needs_corpora
from helpers import ROOT, customer_mail, make_context, rows, write_settings
from orders_data import export, order

from responder.core.clock import clock, utcnow
from responder.core.models import (
    Alert,
    Draft,
    Message,
    OrderCheck,
    Outbox,
    OutboxKind,
    Route,
)
from responder.intake.store import store_inbound_email, store_inbound_text
from responder.ops.jobs import process_pending

# The pipeline's behaviour is the same on either database: most tests run on SQLite only; those
# that count rows, raise alerts or erase them (unique keys, foreign keys) run on PostgreSQL too.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
README_ORDERS = '[orders]\nsource = "file"\nfile = "orders.csv"\n'
_ids = itertools.count(1)

PRIYA = dict(email="priya.shah@example.com", phone="+13125550163", tracking="9400111899223100067890",
             url="https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111899223100067890")


def sample_orders(now):
    return [
        order("1042", PRIYA["email"], phone=PRIYA["phone"], name="Priya Shah", placed=now - timedelta(days=3),
              items=(("Amber Noir", 1, "48.00", "WW-104"),), shipped=now - timedelta(days=2), carrier="USPS",
              tracking=PRIYA["tracking"], url=PRIYA["url"], eta=now + timedelta(days=2)),
        order("1043", "sam.okafor@example.com", phone="+16175550188", name="Sam Okafor",
              placed=now - timedelta(hours=5), items=(("Cedar & Smoke", 2, "32.00", "WW-101"),), shipping="0.00"),
        order("1041", "jamie.rivera@example.com", phone="+15125550147", name="Jamie Rivera",
              placed=now - timedelta(days=20), shipped=now - timedelta(days=19), carrier="USPS",
              tracking="9400111899223100012345", url="https://tools.usps.com/t/9400111899223100012345",
              delivered=now - timedelta(days=16)),
        order("1044", "lena.fischer@example.com", name="Lena Fischer", placed=now - timedelta(days=9),
              items=(("Sea Salt & Fig", 1, "32.00", "WW-103"),), financial="refunded",
              cancelled=now - timedelta(days=9), refunded="39.00", refunded_at=now - timedelta(days=8)),
        order("1046", "noor.haddad@example.com", phone="+14155550123", name="Noor Haddad",
              placed=now - timedelta(days=30), shipped=now - timedelta(days=29), carrier="UPS",
              tracking="1Z999AA10123456784", url="https://www.ups.com/track?tracknum=1Z999AA10123456784"),
    ]


# What no one but the order's own customer may read.
PRIVATE = {"1042": ["Amber Noir", PRIYA["tracking"], "Priya", "USPS", "55.00", "Secret Lane"],
           "1043": ["Cedar & Smoke", "Sam", "64.00", "Secret Lane"]}


@pytest.fixture
def shop(tmp_path, database_url):
    clock.freeze()
    (tmp_path / "orders.csv").write_text(export(sample_orders(utcnow())), encoding="utf-8")
    path = write_settings(tmp_path, database_url=database_url, extra=README_ORDERS)
    ctx = make_context(path)
    yield ctx
    ctx.db.dispose()


@contextlib.contextmanager
def shopify_shop(tmp_path, database_url, monkeypatch, *, token: str | None = None, extra: str = ""):
    """The loopback Shopify fake and a context on it, with the README's Shopify lines."""
    from fakes.shopify_admin import FakeShopify

    with FakeShopify() as fake:
        monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", token or fake.token)
        path = write_settings(tmp_path, database_url=database_url,
                              extra=f'[orders]\nsource = "shopify"\nshop_url = "{fake.base_url}"\n'
                                    f'api_version = "{fake.api_version}"\n{extra}')
        ctx = make_context(path)
        try:
            clock.freeze()
            yield fake, ctx
        finally:
            ctx.db.dispose()


def email_in(ctx, sender: str, body: str, subject: str = "My order", **headers) -> Message:
    clock.advance(seconds=15)  # one message at a time: no burst (3 in 10 s)
    raw = customer_mail(body, sender=sender, subject=subject, headers=headers or None)
    with ctx.db.transaction() as session:
        return store_inbound_email(session=session, raw=raw, mailbox="INBOX", uidvalidity=1, uid=next(_ids))


def text_in(ctx, sender: str, body: str, channel: str = "sms") -> Message:
    clock.advance(seconds=15)
    with ctx.db.transaction() as session:
        return store_inbound_text(session=session, channel=channel, sender=sender, text=body,
                                  provider_id=f"SM{next(_ids):032d}")


def answer(ctx, message: Message) -> Draft:
    process_pending(ctx)
    [draft] = rows(ctx, Draft, Draft.message_id == message.id)
    return draft


def to_customers(ctx) -> list[Outbox]:
    return [o for o in rows(ctx, Outbox) if o.kind in (OutboxKind.REPLY, OutboxKind.HOLDING)]


def test_the_orders_own_customer_gets_the_tracking_link(shop):
    draft = answer(shop, email_in(shop, "Priya Shah <Priya.Shah@Example.com>", "Hi, where is my order?"))
    assert draft.route == Route.AUTO, draft.reasons
    assert "#1042" in draft.text and PRIYA["url"] in draft.text and "USPS" in draft.text
    assert "estimated delivery date" in draft.text
    assert any(r.startswith("order #1042: shipped") for r in draft.reasons)  # the owner's summary
    [check] = rows(shop, OrderCheck)
    assert check.outcome == "verified" and "order's email" in check.detail


@SQLITE
@pytest.mark.parametrize("body, state", [
    ("where is my order #1043?", "hasn't shipped yet"),
    ("has order 1044 been refunded?", "refund of $39.00"),
])
def test_each_state_in_the_shops_words(shop, body, state):
    sender = "sam.okafor@example.com" if "1043" in body else "lena.fischer@example.com"
    draft = answer(shop, email_in(shop, sender, body))
    assert draft.route == Route.AUTO, draft.reasons
    assert state in draft.text
    if "1043" in body:  # the dispatch time is the FAQ's own sentence
        assert "ship within 2 business days" in draft.text
    else:  # and the bank's time is the FAQ's too
        assert "5–10 business days" in draft.text


@SQLITE
def test_a_guessed_number_gets_a_request_for_both_details_and_nothing_of_the_order(shop):
    draft = answer(shop, email_in(shop, "mallory@attacker.test", "Where is order #1042?"))
    assert draft.route == Route.AUTO
    assert "order number and the email address" in draft.text
    for word in PRIVATE["1042"]:
        assert word not in draft.text
    [check] = rows(shop, OrderCheck)
    assert check.outcome == "mismatch" and check.order_number == "1042"


@SQLITE
def test_a_wrong_email_and_a_missing_order_get_the_same_words(shop):
    """Never say which one was wrong: an existing number with the wrong email reads exactly like a
    number that doesn't exist."""
    wrong_email = answer(shop, email_in(shop, "a@attacker.test", "Has order #1042 shipped? It was placed with "
                                                                  "priya@example.net"))
    no_order = answer(shop, email_in(shop, "b@attacker.test", "Has order #9999 shipped? It was placed with "
                                                               "priya.shah@example.com"))
    assert wrong_email.text == no_order.text and "couldn't match" in wrong_email.text
    for draft in (wrong_email, no_order):
        assert not any(w in draft.text for w in PRIVATE["1042"])


@SQLITE
def test_the_number_and_the_email_it_was_placed_with_prove_it(shop):
    """Shopify's own order status page asks for the same two things."""
    first = answer(shop, text_in(shop, "+15550001111", "where is my order?"))
    assert "order number and the email address" in first.text
    second = answer(shop, text_in(shop, "+15550001111", "1042 priya.shah@example.com"))
    assert second.route == Route.AUTO, second.reasons
    assert "#1042" in second.text and PRIYA["url"] in second.text
    assert [c.outcome for c in rows(shop, OrderCheck)] == ["asked", "verified"]


@SQLITE
def test_an_order_number_texted_from_another_phone_reveals_nothing(shop):
    draft = answer(shop, text_in(shop, "+16175550199", "where's my order #1043"))
    assert "order number and the email address" in draft.text
    assert not any(w in draft.text for w in PRIVATE["1043"])
    own = answer(shop, text_in(shop, "+1 (617) 555-0188", "where's my order"))
    assert own.route == Route.AUTO and "#1043" in own.text and "Cedar & Smoke" in own.text


@SQLITE
def test_whatsapp_from_the_orders_phone_is_answered(shop):
    draft = answer(shop, text_in(shop, "whatsapp:+13125550163", "any news on my order?? where is my package",
                                 channel="whatsapp"))
    assert draft.route == Route.AUTO, draft.reasons
    assert "#1042" in draft.text


def test_many_guesses_stop_the_lookups_and_tell_the_owner_once(shop):
    guesses = ["Where is order #1040?", "what about order 1041", "Status of #1042 please", "order #1043 where is it",
               "#1044?"]
    replies = [answer(shop, email_in(shop, "mallory@attacker.test", text)) for text in guesses]
    checks = rows(shop, OrderCheck)
    assert [c.outcome for c in checks] == ["mismatch"] * 3 + ["limited"] * 2
    assert all(d.route == Route.HANDOFF and "paused" in " ".join(d.reasons) for d in replies[3:])
    assert [a.kind for a in rows(shop, Alert)] == ["orders"]  # told once
    for draft in replies:
        for words in PRIVATE.values():
            assert not any(w in draft.text for w in words)
    sent = to_customers(shop)
    assert len(sent) >= 3
    for out in sent:
        assert not any(w in out.body_text for words in PRIVATE.values() for w in words)


@SQLITE
def test_a_forged_reply_to_never_receives_the_order(shop):
    """From names the order's customer, Reply-To the attacker: the reply goes to the From address
    (``channels.email.autoreply.reply_address``), so the attacker reads nothing."""
    message = email_in(shop, "priya.shah@example.com", "where is my order?", **{"Reply-To": "mallory@attacker.test"})
    draft = answer(shop, message)
    assert draft.route == Route.AUTO
    assert {o.recipient for o in to_customers(shop)} == {"priya.shah@example.com"}


@SQLITE
def test_requests_go_to_the_owner_with_the_orders_summary(shop):
    draft = answer(shop, email_in(shop, "sam.okafor@example.com", "Please cancel my order #1043, I ordered twice"))
    assert draft.route == Route.HANDOFF
    summary = next(r for r in draft.reasons if r.startswith("order #1043"))
    assert re.search(r"not shipped yet, \$64\.00, placed 5 h ago, cancellable", summary), summary
    assert any(r.startswith("a cancellation: the bot doesn't act on orders") for r in draft.reasons)
    [holding] = [o for o in to_customers(shop) if o.kind == OutboxKind.HOLDING]
    assert "about order #1043 to Maya" in holding.body_text and "Cedar" not in holding.body_text
    # Someone else asking the same: the holding reply names no order.
    other = answer(shop, email_in(shop, "mallory@attacker.test", "Please cancel order #1043"))
    assert other.route == Route.HANDOFF and "no order could be matched" in " ".join(other.reasons)
    [second] = [o for o in to_customers(shop) if o.kind == OutboxKind.HOLDING and o.recipient.startswith("mallory")]
    assert "1043" not in second.body_text and "look up your order" in second.body_text


@SQLITE
@pytest.mark.parametrize("sender, body, why", [
    ("jamie.rivera@example.com", "My order #1041 never arrived", "shows as delivered"),
    ("noor.haddad@example.com", "where is my order?", "is late"),
    ("priya.shah@example.com", "Where is my refund for order 1042?", "shows none"),
])
def test_what_the_record_cant_settle_goes_to_the_owner(shop, sender, body, why):
    draft = answer(shop, email_in(shop, sender, body))
    assert draft.route == Route.HANDOFF, draft.reasons
    assert why in " ".join(draft.reasons)


@SQLITE
def test_an_outage_holds_the_draft_and_tells_the_owner_once(shop, tmp_path):
    (tmp_path / "orders.csv").unlink()
    first = answer(shop, email_in(shop, "priya.shah@example.com", "where is my order?"))
    second = answer(shop, email_in(shop, "sam.okafor@example.com", "where is my order #1043?"))
    for draft in (first, second):
        assert draft.route == Route.HANDOFF
        assert "the order source couldn't answer" in " ".join(draft.reasons)
    assert [(a.kind, a.key[:5]) for a in rows(shop, Alert)] == [("orders", "down:")]


def test_the_owners_numbers_count_order_questions(shop):
    """The dashboard and the digest: the share of order questions, answered automatically vs held."""
    from responder.owner import metrics
    from responder.web.dashboard import headline
    from responder.web.pages import Formatter

    answer(shop, email_in(shop, "priya.shah@example.com", "where is my order?"))          # auto
    answer(shop, email_in(shop, "sam.okafor@example.com", "please cancel my order #1043"))  # handoff
    answer(shop, email_in(shop, "ana@example.org", "How much is shipping?"))                # no order question
    with shop.db.transaction() as session:
        m = metrics.compute(session, start=utcnow() - timedelta(hours=1), end=utcnow() + timedelta(minutes=1),
                            settings=shop.settings)
    assert (m.order_questions, m.order_auto, m.order_held, m.needing_reply) == (2, 1, 1, 3)
    assert m.order_share == pytest.approx(2 / 3) and m.order_auto_rate == 0.5
    [row] = [r for r in headline(m, Formatter(shop.settings)) if r[0] == "Order questions"]
    assert row[2] == "2 asked; 1 answered automatically, 1 held"


@needs_corpora
def test_bitext_status_phrasings_from_the_orders_own_customers_are_answered_right():
    """Issue 18's target on Bitext's "track order" and "track refund" phrasings (every third one
    here; ``python bench/order_answers.py`` runs all 374): at least 90% answered automatically
    and right, and none answered wrong (held is allowed: swearing goes to the owner by design)."""
    spec = importlib.util.spec_from_file_location("order_answers_bench", ROOT / "bench" / "order_answers.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.run(None, every=3)
    assert out["cases"] == 61 + 65
    assert out["wrong"] == 0, out["wrong_examples"]
    assert out["right_share"] >= 0.9, out


@SQLITE
def test_another_customers_thread_lends_no_proof(shop):
    """Priya typed her number and email in her own thread; Mallory replies on that thread (In-Reply-To
    and References of Priya's reply). Threads are per customer, so Mallory's message starts her own
    and nothing Priya wrote counts as Mallory's proof."""
    first = email_in(shop, "priya.shah@example.com", "Where is order #1042? It was placed with priya.shah@example.com")
    answer(shop, first)
    [reply] = [o for o in to_customers(shop) if o.recipient == "priya.shah@example.com"]
    hijack = answer(shop, email_in(shop, "mallory@attacker.test", "and when will it arrive? where is my order",
                                   subject="Re: My order", **{"In-Reply-To": reply.message_id,
                                                               "References": reply.message_id}))
    assert "order number and the email address" in hijack.text
    assert not any(w in hijack.text for w in PRIVATE["1042"])
    assert hijack.thread_id != rows(shop, Draft)[0].thread_id


@SQLITE
def test_a_forged_from_on_her_thread_is_answered_to_her_alone(shop):
    """Anyone can write Priya's address in From. The answer goes to that address, never elsewhere."""
    answer(shop, email_in(shop, "priya.shah@example.com", "where is my order?"))
    answer(shop, email_in(shop, "Priya <priya.shah@example.com>", "where is my order #1042??",
                          subject="Re: My order", **{"Reply-To": "mallory@attacker.test",
                                                     "Sender": "mallory@attacker.test"}))
    assert {o.recipient for o in to_customers(shop)} == {"priya.shah@example.com"}


def test_lookups_per_sender_are_capped_even_when_they_are_theirs(shop, tmp_path):
    (tmp_path / "capped").mkdir()
    path = write_settings(tmp_path / "capped", database_url=shop.settings.database_url, extra=README_ORDERS
                          + "max_lookups_per_hour = 2\n")
    (tmp_path / "capped" / "orders.csv").write_text((tmp_path / "orders.csv").read_text())
    ctx = make_context(path)
    try:
        asks = ["where is my order?", "has my package shipped yet", "any update on my order"]
        routes = [answer(ctx, text_in(ctx, "+13125550163", ask)).route for ask in asks]
        assert routes[:2] == [Route.AUTO, Route.AUTO] and routes[2] == Route.HANDOFF, rows(ctx, Draft)[1].reasons
        assert [c.outcome for c in rows(ctx, OrderCheck)][-1] == "limited"
    finally:
        ctx.db.dispose()


@SQLITE
def test_a_refused_shopify_token_holds_the_draft_and_never_shows_the_token(tmp_path, database_url, monkeypatch):
    with shopify_shop(tmp_path, database_url, monkeypatch, token="shpat_wrong_" + "x" * 20,
                      extra='[digest]\nto = "owner@example.test"\n') as (fake, ctx):
        fake.add_order("1042", email="priya.shah@example.com", total="55.00", created_at=utcnow())
        drafts = [answer(ctx, email_in(ctx, "priya.shah@example.com", "where is my order?")) for _ in range(2)]
        for draft in drafts:
            assert draft.route == Route.HANDOFF
            assert "refused" in " ".join(draft.reasons).lower() or "401" in " ".join(draft.reasons)
        assert len(fake.requests) == 1  # the breaker: the second message didn't wait on Shopify again
        alerts = [o for o in rows(ctx, Outbox) if o.kind == OutboxKind.NOTIFY and "failing" in o.subject]
        assert len(alerts) == 1 and "token" in alerts[0].body_text.lower()
        stored = " ".join(str(v) for model in (Draft, OrderCheck, Outbox, Alert) for r in rows(ctx, model)
                          for v in r.model_dump().values())
        assert "shpat_wrong_" not in stored
        # The token is fixed: the next question is answered, and the next outage is told again.
        fake.token = "shpat_wrong_" + "x" * 20
        clock.advance(seconds=40)
        ok = answer(ctx, email_in(ctx, "priya.shah@example.com", "Has order 1042 shipped yet?", subject="1042"))
        assert ok.route == Route.AUTO, ok.reasons
        assert not [a for a in rows(ctx, Alert) if a.key.startswith("down:")]


@SQLITE
def test_a_request_names_the_order_in_the_shops_admin(tmp_path, database_url, monkeypatch):
    with shopify_shop(tmp_path, database_url, monkeypatch) as (fake, ctx):
        made = fake.add_order("1043", email="sam.okafor@example.com", total="64.00", created_at=utcnow(),
                              line_items=(("Cedar & Smoke", 2, "WW-101"),))
        draft = answer(ctx, email_in(ctx, "sam.okafor@example.com", "I need to change the address on my order"))
        assert draft.route == Route.HANDOFF
        summary = next(r for r in draft.reasons if r.startswith("order #1043"))
        assert summary.endswith(f"{fake.base_url}/admin/orders/{made['legacyResourceId']}"), summary
        assert "not shipped yet, $64.00" in summary and "cancellable" in summary


@SQLITE
def test_the_order_answers_its_part_and_the_rest_is_still_checked(shop):
    both = answer(shop, email_in(shop, "priya.shah@example.com",
                                 "Where is my order? Also, do you engrave the jars with a name?"))
    assert both.route == Route.REVIEW and "#1042" in both.text
    assert "engrave" in " ".join(both.reasons)


@SQLITE
def test_a_slow_shop_api_never_holds_up_the_queue(tmp_path, database_url, monkeypatch):
    """The order question steps aside while Shopify takes its time; the questions behind it are
    answered meanwhile, and it is answered from the one lookup once that's back."""
    import time

    with shopify_shop(tmp_path, database_url, monkeypatch) as (fake, ctx):
        fake.add_order("1042", email="priya.shah@example.com", total="55.00", created_at=utcnow())
        fake.delay = 2.0
        slow = email_in(ctx, "priya.shah@example.com", "where is my order?")
        others = [email_in(ctx, f"c{n}@example.org", "How much is shipping?") for n in range(3)]
        process_pending(ctx)
        assert not rows(ctx, Draft, Draft.message_id == slow.id)  # stepped aside, nothing of the attempt kept ...
        [waiting] = rows(ctx, Message, Message.id == slow.id)
        assert waiting.status == "received" and waiting.thread_id is None and waiting.next_attempt_at is not None
        assert len(fake.requests) in (0, 1)                        # ... while Shopify is still answering
        for message in others:                                     # ... and the queue went on
            [draft] = rows(ctx, Draft, Draft.message_id == message.id)
            assert draft.route == Route.AUTO and "$7" in draft.text
        deadline = time.monotonic() + 10
        while ctx.orders._inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        clock.advance(seconds=1)
        process_pending(ctx)
        [draft] = rows(ctx, Draft, Draft.message_id == slow.id)
        assert draft.route == Route.AUTO and "#1042" in draft.text, draft.reasons
        assert len(fake.requests) == 1


def test_forgetting_a_customer_erases_their_order_checks(shop):
    from responder.ops.privacy import find, forget_customer

    answer(shop, email_in(shop, "priya.shah@example.com", "where is my order?"))
    answer(shop, text_in(shop, "+13125550163", "where's my order #1042"))
    with shop.db.transaction() as session:
        forget_customer(session, find(session, "priya.shah@example.com"), settings=shop.settings)
    # The texts came from another customer record (not linked): that one is still there, and only it.
    assert {c.sender for c in rows(shop, OrderCheck)} == {"+13125550163"}
    with shop.db.transaction() as session:
        forget_customer(session, find(session, "+13125550163"), settings=shop.settings)
    assert rows(shop, OrderCheck) == []


@SQLITE
def test_a_number_with_no_status_question_is_no_guess(shop):
    """"Can I purchase 100 candles?" reads like an order number; it is held for the owner before any
    lookup, and counts as no wrong guess."""
    draft = answer(shop, email_in(shop, "buyer@example.org", "Can I purchase 100 candles for my wedding?"))
    assert draft.route == Route.HANDOFF and "doesn't ask where it stands" in " ".join(draft.reasons)
    assert rows(shop, OrderCheck) == []


@SQLITE
def test_an_order_record_the_step_cannot_read_holds_the_draft(shop, monkeypatch):
    """Fail closed: a record that breaks the reply's template (or anything else in the step) is the
    owner's to answer, with the reason; the message is never quarantined for it."""
    from responder.orders import step

    def broken(*args, **kwargs):
        raise TypeError("an order field the template didn't expect")

    monkeypatch.setattr(step, "status_reply", broken)
    draft = answer(shop, email_in(shop, "priya.shah@example.com", "where is my order?"))
    assert draft.route == Route.HANDOFF
    assert "the order step failed (TypeError)" in " ".join(draft.reasons)

"""Cost and abuse limits through the real pipeline, on SQLite and PostgreSQL: the daily LLM budget
(counted from the tokens the loopback model reports, through the real openai client), the hourly
cap on automatic replies, the loop breaker, and the owner told once about each."""
from __future__ import annotations

import pytest
from fakes.openai_chat import FakeOpenAIChat
from helpers import write_settings
from sqlmodel import col, select

from responder.core.clock import clock
from responder.core.models import Alert, Draft, Message, Outbox
from responder.core.settings import load_settings
from responder.decide import limits
from responder.intake.store import store_inbound_text
from responder.ops.context import build_context
from responder.ops.jobs import process_pending

GOOD = {"reply": "Shipping in the US is a flat $7, and it's free on orders over $60.", "confidence": 0.93,
        "sources": ["faq.md#How much is shipping?"]}
OWNER = '[digest]\nto = "owner@example.test"\n'


@pytest.fixture(autouse=True)
def _real_time():
    yield
    clock.reset()


def make_ctx(tmp_path, database_url, extra: str):
    path = write_settings(tmp_path, database_url=database_url, extra=OWNER + extra)
    return build_context(load_settings(path))


def text_in(ctx, text: str, n: int, sender: str | None = None) -> None:
    with ctx.db.transaction() as session:
        store_inbound_text(session=session, channel="sms", sender=sender or f"+1555010{n:04d}", text=text,
                           provider_id=f"SM{n}-{clock.now().timestamp()}")


def drafts(ctx) -> list[Draft]:
    with ctx.db.transaction() as session:
        return list(session.exec(select(Draft).order_by(col(Draft.id))).all())


def alerts_to_owner(ctx, words: str) -> list[Outbox]:
    with ctx.db.transaction() as session:
        return [o for o in session.exec(select(Outbox).where(Outbox.kind == "notify")).all() if words in o.subject]


def test_daily_budget_stops_model_calls_falls_back_offline_and_tells_the_owner_once(tmp_path, database_url):
    with FakeOpenAIChat() as fake:
        # 10,000 prompt + 1,000 completion tokens at $1 / $2 per million: $0.012 a call; budget $0.03.
        extra = (f'[llm]\nprovider = "openai"\nbase_url = "{fake.base_url}"\napi_key_env = "DESKHAND_TEST_LLM_KEY"\n'
                 "price_input_per_mtok = 1.0\nprice_output_per_mtok = 2.0\ndaily_budget_usd = 0.03\n")
        import os
        os.environ["DESKHAND_TEST_LLM_KEY"] = "sk-test"
        ctx = make_ctx(tmp_path, database_url, extra)
        for _ in range(6):
            fake.enqueue(GOOD, usage=(10_000, 1_000))
        for n in range(5):
            text_in(ctx, "How much is shipping?", n)
            process_pending(ctx)
        calls_today = len(fake.chats)
        rows = drafts(ctx)
        # Two calls ($0.024) fit; a third would pass $0.03, so it is never made.
        assert calls_today == 2
        assert [d.backend for d in rows][:2] == ["openai"] * 2
        for d in rows[2:]:
            assert d.route == "review" and d.backend == "offline" and d.llm_cost == 0
            assert any("today's LLM budget ($0.03) is spent ($0.02)" in r for r in d.reasons), d.reasons
        with ctx.db.transaction() as session:
            assert limits.llm_spent_today(session, ctx.settings) == pytest.approx(0.024)
        assert len(alerts_to_owner(ctx, "LLM budget")) == 1, "told once, not on every message"
        # The next day (shop's timezone) the model is used again.
        clock.freeze(clock.now())
        clock.advance(days=1)
        text_in(ctx, "How much is shipping?", 99)
        process_pending(ctx)
        assert len(fake.chats) == calls_today + 1 and drafts(ctx)[-1].backend == "openai"
        ctx.db.dispose()


def test_hourly_cap_holds_the_rest_and_tells_the_owner_once(tmp_path, database_url):
    ctx = make_ctx(tmp_path, database_url, "[routing]\nmax_auto_replies_per_hour = 3\n")
    questions = ["How much is shipping?", "Do you ship to Canada?", "What are your candles made of?",
                 "Can I return a candle I haven't used?", "Do you sell gift cards?"]
    for n, q in enumerate(questions):
        text_in(ctx, q, n)
        process_pending(ctx)
    rows = drafts(ctx)
    auto = [d for d in rows if d.route == "auto"]
    assert len(auto) == 3, [(d.route, d.reasons) for d in rows]
    for d in rows[len(auto):]:
        assert d.route == "review" and "3 automatic replies in the last hour (cap 3)" in d.reasons
    assert len(alerts_to_owner(ctx, "automatic replies in the last hour")) == 1
    clock.freeze(clock.now())
    clock.advance(hours=1, minutes=1)
    text_in(ctx, "How much is shipping?", 50)
    process_pending(ctx)
    assert drafts(ctx)[-1].route == "auto"
    ctx.db.dispose()


def test_loop_breaker_pauses_auto_send_for_everyone_and_tells_the_owner(tmp_path, database_url):
    ctx = make_ctx(tmp_path, database_url, "[routing]\nloop_threshold = 3\nloop_pause_minutes = 30\n")
    robot = "Your message to orders@partner.test has been received, ticket #{n}. We will get back to you soon."
    for n in range(3):  # three senders, the same words bar the number: a loop, not three customers
        text_in(ctx, robot.format(n=1000 + n), n)
        process_pending(ctx)
    text_in(ctx, "How much is shipping?", 10)  # a real customer meanwhile: held too (global pause)
    process_pending(ctx)
    rows = drafts(ctx)
    assert rows[-1].route == "review" and any("loop breaker" in r for r in rows[-1].reasons), rows[-1].reasons
    assert any("loop breaker" in r for r in rows[2].reasons)
    assert not any("loop breaker" in r for d in rows[:2] for r in d.reasons)
    assert len(alerts_to_owner(ctx, "Automatic replies paused")) == 1
    with ctx.db.transaction() as session:
        fps = {m.fingerprint for m in session.exec(select(Message)).all() if "ticket" in m.text}
        assert len(fps) == 1 and None not in fps
        assert len(session.exec(select(Alert).where(Alert.kind == "loop")).all()) == 1
    clock.freeze(clock.now())
    clock.advance(minutes=31)
    text_in(ctx, "How much is shipping?", 11)
    process_pending(ctx)
    assert drafts(ctx)[-1].route == "auto", drafts(ctx)[-1].reasons
    ctx.db.dispose()


def test_handoff_gets_no_holding_note_while_paused(tmp_path, database_url):
    ctx = make_ctx(tmp_path, database_url, "[routing]\nmax_auto_replies_per_hour = 1\n")
    text_in(ctx, "How much is shipping?", 1)
    text_in(ctx, "I want to talk to a real person please", 2)
    process_pending(ctx)
    with ctx.db.transaction() as session:
        kinds = sorted(o.kind for o in session.exec(select(Outbox)).all() if o.kind in ("reply", "holding"))
    assert kinds == ["reply"], "the cap covers holding notes too"
    assert drafts(ctx)[-1].route == "handoff"
    ctx.db.dispose()


def test_fingerprint_ignores_case_digits_links_and_punctuation():
    a = limits.fingerprint("Your ticket #123 was received! See https://x.test/t/123 for details, thanks.")
    b = limits.fingerprint("your TICKET #98765 was received... see http://y.test/t/9 for details thanks")
    assert a == b and a is not None
    assert limits.fingerprint("Thanks!") is None  # short texts are alike by nature
    assert limits.fingerprint("How much is shipping to Canada for two candles?") != \
        limits.fingerprint("How much is shipping to Mexico for two candles?")


def test_an_alert_is_raised_once_even_when_raced(tmp_path, database_url):
    ctx = make_ctx(tmp_path, database_url, "")
    with ctx.db.transaction() as s1, ctx.db.transaction() as s2:
        first = limits.tell_owner(s1, ctx.settings, kind="budget", key="2026-11-25", subject="x", body="y")
        s1.commit()
        second = limits.tell_owner(s2, ctx.settings, kind="budget", key="2026-11-25", subject="x", body="y")
    assert (first, second) == (True, False)
    assert len(alerts_to_owner(ctx, "x")) == 1
    ctx.db.dispose()

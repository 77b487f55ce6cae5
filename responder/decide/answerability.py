"""Answerability: does the draft answer the question asked, every question of the message?

Runs in the pipeline's check step beside the claim guard, for every drafter: the guard asks
"is each claim true?", this asks "is it an answer to *this* question?". A draft that is true but
about a neighbouring question ("is it vegan?" → "It's $80 and in stock") is the confident wrong
answer a shop owner can't afford, so it waits for the owner with a reason naming the unanswered
part. Each question of the message (``understand.question.questions``) is answered when the
reply speaks to every word it asks about (a word of the same family counts: "delivery" is
answered by "shipping") and gives an answer of each kind it asks for (a price for "how much",
a duration for "how long"). A destination ("ship to Liverpool") needs no echo when the reply
speaks to shipping: "we ship only within the US" answers it.
"""
from __future__ import annotations

from responder.understand.question import covers, missing, questions, vocabulary


def knowledge_text(facts) -> str:
    """Everything the shop's knowledge says, as one text (FAQ, policies, every product value)."""
    return facts.policies + "\n" + "\n".join(" ".join(map(str, row.values())) for row in facts.catalog)


def unanswered(message: str, reply: str, *, names: tuple[str, ...] = (), knowledge: str = "",
               goods: frozenset[str] = frozenset()) -> list[str]:
    """One reason per question of ``message`` that ``reply`` doesn't answer; [] when it answers
    them all. ``names``: products in play, whose names needn't be repeated; ``knowledge``: the
    shop's knowledge text, to tell "not in the knowledge" from "not in the reply"."""
    if not reply.strip():
        return []
    reasons, known = [], vocabulary(knowledge)
    for question in questions(message):
        gaps = missing(question, reply, names=names, kinds_of_goods=goods, known=known)
        if not gaps:
            continue
        lacking = [t for t in gaps if not t.kind and knowledge and not covers(t, knowledge)]
        said = ", ".join(f"{t.kind} ('{t.word}')" if t.kind else f"'{t.word}'" for t in gaps)
        why = (f"nothing in the knowledge about {', '.join(repr(t.word) for t in lacking)}" if lacking
               else f"the reply doesn't speak to {said}")
        reasons.append(f"doesn't answer \"{question[:80]}\": {why}")
    return reasons

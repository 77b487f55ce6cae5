"""The offline drafter: answers from retrieved knowledge with no model and no network.

Runs after retrieval. A product question gets the asked-for attribute from the catalog row in a
sentence of its own ("How big is X?" -> its capacity and dimensions), what its status allows us
to say, and the facts a customer asks next (size -> weight and colors). A FAQ or policy question
gets the section's sentences that speak to the question, not the whole section. A question the
knowledge does not speak to (best similarity below ``MIN_SIMILARITY``) gets no answer and a
reason, never a guess.
"""
from __future__ import annotations

import re
from datetime import date

from responder.core.clock import utcnow
from responder.core.settings import Settings
from responder.core.text import human_date
from responder.draft.base import DraftRequest, DraftResult

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
WORD = re.compile(r"[a-z0-9]+")
MIN_SIMILARITY = 0.30   # below: the knowledge does not speak to the question
SURE_SIMILARITY = 0.60  # at or above: as sure as this drafter gets
AVAILABILITY = {
    "active": "It's in stock.",
    "out_of_stock": "It's out of stock right now.",
    "preorder": "It's available for pre-order, so it isn't in stock yet.",
    "discontinued": "It's been discontinued, so we can't order more.",
}
# What a question asks about a product: (cue words, columns that answer it, columns offered next).
ASKS = [
    (r"\b(big|large|size|tall|wide|height|width|dimension|measure|hold|capacity|fit|small)", (
        "capacity", "size", "dimensions"), ("weight", "colors")),
    (r"\b(weigh|heavy|weight)", ("weight",), ("dimensions",)),
    (r"\b(colou?rs?|shade|finish)\b", ("colors",), ()),
    (r"\b(burn|last|hours)\b", ("burn_time",), ()),
    (r"\b(smell|scent|notes|fragrance)", ("scent_notes",), ()),
    (r"\b(made of|material|wax|ingredient)", ("materials",), ()),
    (r"\b(price|cost)\b|\bhow much (?:is|are|for|do|does \S+ cost)\b(?!.*\b(?:hold|weigh))", ("price",), ()),
]
PHRASES = {
    "capacity": "{name} holds {v}.", "size": "{name} is the {v} size.", "dimensions": "It's {v}.",
    "weight": "It weighs {v}.", "colors": "It comes in {v}.", "burn_time": "{name} burns for about {v}.",
    "scent_notes": "It smells of {v}.", "materials": "It's made of {v}.", "price": "{name} is ${v}.",
}
AVAILABILITY_CUE = re.compile(r"\b(stock|available|have|still|order|buy|get|sell)\b")
MAX_FACTS = 3  # sentences of product facts; the availability sentence may follow
STOP = set("a an the is are do does can i you your my me we our it this that of to in on for and or "
           "what how when where which will would could should be with any there".split())


def asks_about_product(question: str) -> bool:
    """Whether a question asks for a catalog attribute, a price or availability at all."""
    lowered = question.lower()
    return any(re.search(cue, lowered) for cue, _, _ in ASKS) or bool(AVAILABILITY_CUE.search(lowered))


def product_answer(facts: dict[str, str], question: str, today: date | None = None) -> tuple[str, bool, list[str]]:
    """The reply, whether the question's attribute was found in the row, and what the owner
    should check (a restock date that has already passed is never promised)."""
    today = today or utcnow().date()
    notes: list[str] = []
    name, lowered = facts.get("name", "That product"), question.lower()
    asked, offered, found = [], [], False
    for cue, columns, extra in ASKS:
        if re.search(cue, lowered):
            present = [c for c in columns if facts.get(c)]
            found = found or bool(present)
            asked += present
            offered += [c for c in extra if facts.get(c)]
    sentences = []
    for column in list(dict.fromkeys(asked + [c for c in offered if c not in asked]))[:MAX_FACTS]:
        sentences.append(PHRASES.get(column, "{name}: {v}.").format(name=name, v=facts[column]))
    status = facts.get("status", "")
    if status == "discontinued" and not asked:  # what matters is that it's gone, not what it cost
        return f"{name} has been discontinued, so we can't order more.", True, notes
    if not asked and facts.get("price"):
        sentences.append(PHRASES["price"].format(name=name, v=facts["price"]))
    if status != "active" or not asked or AVAILABILITY_CUE.search(lowered):
        sentences.append(AVAILABILITY.get(status, "I'll check whether it's available."))
        restock = facts.get("restock_date", "")
        if status in ("out_of_stock", "preorder") and human_date(restock, today):
            if restock[:10] >= today.isoformat():
                sentences.append(f"We expect it on {human_date(restock, today)}.")
            else:
                notes.append(f"the catalog's restock date for {name} ({restock}) has passed: check when it's due")
    return " ".join(sentences), found or not asked, notes


def relevant_sentences(body: str, question: str, limit: int = 3) -> str:
    """The section's sentences that share words with the question, in their order; the first
    sentence always leads, since it usually answers the heading's question."""
    sentences = [s.strip() for s in SENTENCE.split(body.strip()) if s.strip()]
    if len(sentences) <= limit:
        return " ".join(sentences)
    words = {w for w in WORD.findall(question.lower()) if w not in STOP}
    scored = sorted(range(1, len(sentences)), key=lambda i: -len(words & set(WORD.findall(sentences[i].lower()))))
    keep = sorted([0] + scored[:limit - 1])
    return " ".join(sentences[i] for i in keep)


class OfflineDrafter:
    name = "offline"
    wants_examples = False  # it answers from the facts alone

    @property
    def offline(self) -> "OfflineDrafter":
        return self

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def draft(self, request: DraftRequest) -> DraftResult:
        hits = [h for h in request.hits if h.kind != "example"]
        if request.knowledge_empty:
            return DraftResult("", 0.0, reasons=["the knowledge folder is empty: add FAQ, policies or a catalog"],
                               backend=self.name)
        if not hits:
            return DraftResult("", 0.0, reasons=["nothing in the knowledge matches the question"],
                               backend=self.name)
        best = hits[0]
        if best.kind == "product" and not asks_about_product(request.text):
            # "Can the pasta bowls go in the dishwasher?" names a product but asks the FAQ.
            documents = [h for h in hits if h.kind != "product" and h.similarity >= MIN_SIMILARITY]
            best = documents[0] if documents else best
        if best.similarity < MIN_SIMILARITY and not getattr(best, "named", False):
            return DraftResult("", round(best.similarity, 3), [best.source],
                               [f"no knowledge above {MIN_SIMILARITY:.2f} similarity "
                                f"(best: {best.source} at {best.similarity:.2f})"], self.name)
        confidence = min(1.0, 0.5 + 0.5 * (best.similarity - MIN_SIMILARITY) / (SURE_SIMILARITY - MIN_SIMILARITY))
        reasons: list[str] = []
        if best.kind == "product":
            today = utcnow().astimezone(self.settings.tz).date() if self.settings else utcnow().date()
            reply, found, notes = product_answer(best.facts, request.text, today)
            if best.facts.get("status") == "discontinued" and request.alternatives:
                other = request.alternatives[0]
                reply += f" If you'd like something similar, we still make the {other['name']} (${other['price']})."
            if notes:
                confidence = min(confidence, 0.5)
                reasons += notes
            if getattr(best, "named", False):
                confidence = max(confidence, 0.85)
            if not found:
                confidence = min(confidence, 0.5)
                reasons.append(f"the catalog row for {best.facts.get('name', best.source)} doesn't say that")
        else:
            body = best.text.split("\n", 1)[1] if best.text.startswith(best.title) and "\n" in best.text else best.text
            reply = relevant_sentences(body, request.text)
        return DraftResult(reply, round(max(0.0, confidence), 3), [best.source], reasons, self.name)

"""The offline drafter: answers from retrieved knowledge with no model and no network.

Runs after retrieval. The best hit decides the answer: a FAQ or policy section gives its
opening sentences, a product gives its name, price and what its status allows us to say. A
question the knowledge does not speak to (best cosine similarity below ``MIN_SIMILARITY``) gets
no answer and a reason, never a guess. Confidence grows with the best hit's similarity.
"""
from __future__ import annotations

import re

from responder.drafting.base import DraftRequest, DraftResult

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MIN_SIMILARITY = 0.30   # below: the knowledge does not speak to the question
SURE_SIMILARITY = 0.60  # at or above: as sure as this drafter gets
AVAILABILITY = {
    "active": "It's in stock.",
    "out_of_stock": "It's out of stock right now.",
    "preorder": "It's available for pre-order.",
    "discontinued": "It's been discontinued, so we can't order more.",
}


def product_answer(facts: dict[str, str]) -> str:
    name = facts.get("name", "That product")
    parts = [f"{name} is ${facts['price']}." if facts.get("price") else f"{name}:"]
    status = facts.get("status", "")
    parts.append(AVAILABILITY.get(status, "I'll check whether it's available."))
    if status in ("out_of_stock", "preorder") and facts.get("restock_date"):
        parts.append(f"We expect it on {facts['restock_date']}.")
    if facts.get("description"):
        parts.append(facts["description"])
    return " ".join(parts)


class OfflineDrafter:
    name = "offline"

    def __init__(self, settings=None) -> None:
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
        if best.similarity < MIN_SIMILARITY:
            return DraftResult("", round(best.similarity, 3), [best.source],
                               [f"no knowledge above {MIN_SIMILARITY:.2f} similarity "
                                f"(best: {best.source} at {best.similarity:.2f})"], self.name)
        if best.kind == "product":
            reply = product_answer(best.facts)
        else:
            body = best.text.split("\n", 1)[1] if best.text.startswith(best.title) else best.text
            reply = " ".join(SENTENCE.split(body.strip())[:3]).strip()
        confidence = min(1.0, 0.5 + 0.5 * (best.similarity - MIN_SIMILARITY) / (SURE_SIMILARITY - MIN_SIMILARITY))
        return DraftResult(reply, round(max(0.0, confidence), 3), [best.source], [], self.name)

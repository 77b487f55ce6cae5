"""The offline drafter's answer about one product, from its catalog row alone.

Part of drafting (``responder.draft.offline`` asks it for each product hit). The asked-for
attribute in a sentence of its own ("How big is X?" -> its capacity and dimensions) with the
facts a customer asks next (size -> weight and colors); a variant's own price when the question
names the variant ("the large one"), every variant's price when they differ, the regular price
of a sale; how many are on hand when the customer needs more than that; what the status allows
us to say. Whatever the question asks that no column holds is looked for in the description,
and quoted as written ("does it come with a strap?" -> the sentence that mentions the straps).
"""
from __future__ import annotations

import re
from datetime import date

from responder.core.clock import utcnow
from responder.core.text import human_date, split_sentences
from responder.knowledge.shopify import variant_prices
from responder.understand.question import covers, missing, words

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
    (r"\b(colou?rs?|shade|finish)\b", ("colors", "color", "colour"), ()),
    (r"\b(burn|last|hours)\b", ("burn_time",), ()),
    (r"\b(smell|scent|notes|fragrance)", ("scent_notes",), ()),
    (r"\b(made of|material|wax|ingredient)", ("materials",), ()),
    (r"\b(price|cost|on sale)\b|\bhow much (?:is|are|for|do|does \S+ cost)\b(?!.*\b(?:hold|weigh))", ("price",), ()),
]
PHRASES = {
    "capacity": "{name} holds {v}.", "size": "{name} comes in {v}.", "dimensions": "It's {v}.",
    "weight": "It weighs {v}.", "colors": "It comes in {v}.", "color": "It comes in {v}.", "colour": "It comes in {v}.",
    "burn_time": "{name} burns for about {v}.", "scent_notes": "It smells of {v}.", "materials": "It's made of {v}.",
}
AVAILABILITY_CUE = re.compile(r"\b(stock|available|have|still|order|buy|get|sell)\b")
MAX_FACTS = 3  # sentences of product facts; the availability sentence may follow
NEEDED = re.compile(r"\b(?:need|want|order|buy|get|take)\s+(\d{1,4})\b|\b(\d{1,4})\s+(?:of (?:them|these|those)|pieces|units)\b")


def asks_about_product(question: str) -> bool:
    """Whether a question asks for a catalog attribute, a price or availability at all."""
    lowered = question.lower()
    return any(re.search(cue, lowered) for cue, _, _ in ASKS) or bool(AVAILABILITY_CUE.search(lowered))


def price_sentence(facts: dict[str, str], question: str) -> str:
    """The price the question asks for: the named variant's, each variant's when they differ, a sale's regular one."""
    name, asked = facts.get("name", "That product"), set(words(question))
    priced = variant_prices(facts)
    named = [(label, money) for label, money in priced if set(words(label)) <= asked and words(label)]
    if len(named) == 1:
        return f"The {named[0][0]} {name} is {named[0][1]}."
    if len({money for _, money in priced}) > 1:
        return f"{name} is " + ", ".join(f"{money} ({label})" for label, money in priced[:4]) + "."
    if facts.get("compare_at_price"):
        return f"{name} is on sale at ${facts['price']}, down from ${facts['compare_at_price']}."
    return f"{name} is ${facts['price']}." if facts.get("price") else ""


def described(facts: dict[str, str], question: str, said: str) -> str:
    """The description's sentences that speak to what ``said`` leaves open of the question, quoted."""
    name = facts.get("name", "")
    open_terms = [t for t in missing(question, said, names=(name,)) if not t.kind]
    if not open_terms:
        return ""
    chosen = [s for s in split_sentences(facts.get("description", "")) if any(covers(t, s) for t in open_terms)]
    if not chosen:
        return ""
    quote = " ".join(chosen[:2]).strip()
    return f'Here\'s how we describe it: "{quote.rstrip(".")}."'


def product_answer(facts: dict[str, str], question: str, today: date | None = None,
                   message: str = "") -> tuple[str, bool, list[str]]:
    """The reply, whether the question's attribute was found in the row, and what the owner
    should check (a restock date that has already passed is never promised). ``message``: the
    whole message, for a quantity said beside the question ("… in stock? I need 10")."""
    notes: list[str] = []
    today = today or utcnow().date()
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
        phrase = "{name} is the {v} size." if column == "size" and "," not in facts[column] else \
            PHRASES.get(column, "{name}: {v}.")
        sentence = price_sentence(facts, question) if column == "price" else phrase.format(name=name, v=facts[column])
        sentences.append(sentence)
    quote = described(facts, question, " ".join(sentences))
    if quote:
        sentences.append(quote)
        found = True
    status = facts.get("status", "")
    if status == "discontinued" and not asked and not quote:  # what matters is that it's gone, not what it cost
        return f"{name} has been discontinued, so we can't order more.", True, notes
    if not asked and not quote and facts.get("price"):
        sentences.append(price_sentence(facts, question))
    if status != "active" or not (asked or quote) or AVAILABILITY_CUE.search(lowered):
        sentences.append(availability(facts, message or question, today, notes))
    return " ".join(s for s in sentences if s), found or not (asked or quote), notes


def availability(facts: dict[str, str], question: str, today: date, notes: list[str]) -> str:
    status, name = facts.get("status", ""), facts.get("name", "That product")
    sentence = AVAILABILITY.get(status, "I'll check whether it's available.")
    wanted = next((int(a or b) for a, b in NEEDED.findall(question.lower())), None)
    on_hand = int(facts["inventory"]) if (facts.get("inventory") or "").isdigit() else None
    if status == "active" and wanted and on_hand is not None and wanted > on_hand:
        sentence = f"We have {on_hand} in stock right now, so not quite {wanted}."
    restock = facts.get("restock_date", "")
    if status in ("out_of_stock", "preorder") and human_date(restock, today):
        if restock[:10] >= today.isoformat():
            sentence += f" We expect it on {human_date(restock, today)}."
        else:
            notes.append(f"the catalog's restock date for {name} ({restock}) has passed: check when it's due")
    return sentence

"""Who may hear about an order: pure checks, no I/O.

Read by the order step (``responder.orders.step``). An order is the sender's when the reply goes
to the order's own email address or phone number (or another of the customer's identities the
customer confirmed, or the owner linked), or when the customer typed the order's number and the
email address it was placed with. Addresses compare case-insensitively and phone numbers in E.164,
so ``whatsapp:+1 (415) 555-0100`` is ``+14155550100``.

Also here: the order numbers and email addresses a customer typed, what they want (from the
``understand.orders`` reason), and whether they say a parcel never reached them.
"""
from __future__ import annotations

import re

from responder.core.text import normalize_phone
from responder.orders.base import Order

# "#1043", "order 1043", "order no. 1043", "order number: #1043"; a bare number only beside an email.
_NUMBER = re.compile(r"(?:#\s?|\b(?:order|purchase)\s*(?:no\.?|number|num|nr\.?|id)?\s*[:#]?\s*)(\d{3,10})\b", re.I)
_BARE = re.compile(r"(?<![\d.,$£€#/-])\b(\d{3,10})\b(?![.,]\d|\s*(?:%|\$|usd|oz|lb|kg|g\b|ml|in\b|cm|mm))", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_INTENT = re.compile(r"\(([^)]+)\)")
NOT_RECEIVED = re.compile(
    r"\b(?:never|hasn'?t|has\s+not|didn'?t|did\s+not|haven'?t|have\s+not|not\s+yet|still\s+(?:hasn'?t|not))\s+"
    r"(?:been\s+)?(?:arrived?|came|come|received?|got(?:ten)?|showed\s+up|turned\s+up|delivered)\b"
    r"|\bnot\s+(?:been\s+)?(?:received|delivered)\b|\b(?:missing|stolen|lost)\b|\bcan'?t\s+find\s+(?:it|my|the)\b"
    r"|\bwasn'?t\s+(?:there|delivered)\b|\bno\s+(?:package|parcel|box)\b", re.I)


def numbers_in(text: str) -> list[str]:
    """Order numbers the customer typed, in order, without repeats."""
    text = text or ""
    found = [m.group(1) for m in _NUMBER.finditer(text)]
    if not found and _EMAIL.search(text):  # "1043, sam@example.com" in answer to our question
        found = [m.group(1) for m in _BARE.finditer(_EMAIL.sub(" ", text))]
    return list(dict.fromkeys(found))


def emails_in(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(0).lower().rstrip(".") for m in _EMAIL.finditer(text or "")))


# What asks where an order stands; an order number with anything else ("order #1043, wrong scent")
# is for the owner.
STATUS_ASK = re.compile(r"\b(?:where(?:'s)?|when|status|ship\w*|dispatch\w*|sent|arriv\w*|track\w*|updates?|news"
                        r"|deliver\w*|eta|yet|how\s+long|come|coming|received?|refund\w*|money\s+back|reimburs\w*|rebate"
                        r"|processed|locat\w*|find)\b", re.I)
_REFUND = re.compile(r"\b(?:refund\w*|money\s+back|reimburse\w*)\b", re.I)
_ORDER_TALK = re.compile(
    r"\b(?:my|our|this|that|the)\s+(?:\w+\s+)?(?:order|package|parcel|shipment|delivery|refund|tracking)s?\b"
    r"|#\s?\d{3,}|\b(?:order|purchase)\s*(?:no\.?\s*|number\s*)?#?\s*\d{3,}"
    r"|\b(?:it|they|them)\s+(?:arrive|ship|be\s+(?:here|delivered))", re.I)


def intent_of(reason: str | None, text: str = "") -> str:
    """"where the order is" from "about a particular order (where the order is): '…'"; "where is my
    refund?" is about the refund, not the parcel."""
    m = _INTENT.search(reason or "")
    intent = m.group(1) if m else "where the order is"
    if intent in ("where the order is", "an order number") and _REFUND.search(text or ""):
        return "a refund for an order"
    return intent


def other_questions(text: str) -> str:
    """The customer's words without the sentences about their order, which the order's record
    answered: what else they asked is still checked for an answer."""
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text or "")
    return " ".join(s for s in sentences if not _ORDER_TALK.search(s))


def not_received(text: str) -> bool:
    return bool(NOT_RECEIVED.search(text or ""))


def proof(order: Order, *, identities: list[tuple[str, str]], typed_emails: list[str]) -> str | None:
    """How the sender proved the order is theirs, in words for the owner; None when they didn't."""
    email, phone = (order.email or "").strip().lower(), normalize_phone(order.phone or "")
    for kind, value in identities:
        if kind == "email" and email and value.strip().lower() == email:
            return "the sender's address is the order's email"
        if kind == "phone" and phone and normalize_phone(value) == phone:
            return "the sender's number is the order's phone"
    if email and email in typed_emails:
        return "the customer gave the order number and the email it was placed with"
    return None


def without_details(text: str) -> str:
    """The customer's words without the order numbers and email addresses they typed; "" when
    what is left is only a few words around them ("Order 1042, email priya@example.com")."""
    rest = _BARE.sub(" ", _NUMBER.sub(" ", _EMAIL.sub(" ", text or "")))
    return rest if "?" in rest or len(re.findall(r"[^\W\d_]{2,}", rest)) > 4 else ""

"""Linking a texting customer to their email by a code: "my email is …", then the 6 digits.

Runs in the pipeline for SMS, WhatsApp and the site chat, after the customer is resolved and before drafting
(``handle_text``): a short text naming one email address gets a code emailed there; the code
texted back joins the two customers (``customers.link_pair``). The replies are fixed sentences
(no drafter: ``LINK_BACKEND``). Only a hash of the code is stored, bound to its request; wrong
codes, expired requests and too many codes a day each get a plain answer, never a link.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session, col, func, select

from channels.email.compose import new_message_id
from responder.core.clock import as_utc, utcnow
from responder.core.logs import redact
from responder.core.models import Customer, CustomerLink, Identity, OutboxKind
from responder.core.settings import Settings
from responder.core.templating import render
from responder.draft.base import DraftResult
from responder.send import outbox
from responder.understand.customers import find_customer, identities, link_pair

log = logging.getLogger("deskhand.customers")

CODE_TTL = timedelta(minutes=30)
MAX_ATTEMPTS = 5                   # wrong codes before a link request is void
MAX_CODES_PER_DAY = 3              # code emails one customer may ask for in 24 hours
EXPIRED_NOTICE = timedelta(days=1)  # an older pending request is dropped silently, not answered
MAX_OTHER_WORDS = 12               # "hi, my email is …": longer texts are questions, drafted as usual
LINK_BACKEND = "customer-link"     # Draft.backend of the replies below (no drafter involved)
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
CODE = re.compile(r"^\s*(\d{3})[ \-]?(\d{3})\s*[.!]?\s*$")  # "123456", "123 456"
# How the replies and the code email name the way the customer writes to us.
MEDIUM = {"chat": {"send": "type", "Send": "Type", "them": "this chat", "where": "in the chat on our website",
                   "back": "Type it in the chat", "link": "this chat"},
          "texts": {"send": "text", "Send": "Text", "them": "texts", "where": "from {phone}",
                    "back": "Text it back to us", "link": "your texts"}}


def medium(channel: str) -> dict:
    return MEDIUM["chat" if channel == "chat" else "texts"]


@dataclass
class LinkOutcome:
    """What the pipeline does with a text that was about linking: reply ``reply`` at once (route
    auto, ``reasons`` on the draft); when ``code`` is set, also ``enqueue_code_email``."""
    reply: str
    reasons: list[str]
    customer: Customer            # the texting customer after the step (the kept one after a link)
    link: CustomerLink | None = None
    code: str | None = field(default=None, repr=False)

    def draft(self) -> DraftResult:
        return DraftResult(reply=self.reply, confidence=1.0, backend=LINK_BACKEND)


def code_hash(settings: Settings, link_id: int, code: str) -> str:
    """Only this is stored: the code is bound to its request and useless without the secret."""
    return hmac.new(settings.secret(), f"deskhand.customer-link:{link_id}:{code}".encode(), hashlib.sha256).hexdigest()


def handle_text(session: Session, settings: Settings, *, customer: Customer, channel: str, text: str) -> LinkOutcome | None:
    """A code for a pending request, or a short text naming one email address; None otherwise
    (the text is drafted as usual)."""
    code = CODE.match(text or "")
    if code:
        return _check_code(session, settings, customer, code.group(1) + code.group(2), medium(channel))
    addresses = {a.lower() for a in EMAIL.findall(text or "")}
    if len(addresses) != 1 or len(EMAIL.sub(" ", text).split()) > MAX_OTHER_WORDS:
        return None
    [email] = addresses
    has_email = session.exec(select(Identity.id).where(Identity.customer_id == customer.id,
                                                       Identity.kind == "email")).first()
    if has_email or email in settings.own_addresses:
        return None
    return _request_code(session, settings, customer, email, medium(channel))


def _request_code(session: Session, settings: Settings, customer: Customer, email: str,
                  words: dict) -> LinkOutcome:
    now = utcnow()
    asked = session.exec(select(func.count()).select_from(CustomerLink).where(
        CustomerLink.customer_id == customer.id, CustomerLink.created_at >= now - timedelta(days=1))).one()
    if asked >= MAX_CODES_PER_DAY:
        return LinkOutcome(f"I've already emailed {MAX_CODES_PER_DAY} codes today; please try again tomorrow, "
                           "or reply to one of our emails instead.",
                           [f"the customer asked to link {email} again: no code sent ({MAX_CODES_PER_DAY} today already)"],
                           customer)
    for older in _pending(session, customer.id):  # one open request at a time
        older.status, older.decided_at = "expired", now
    link = CustomerLink(customer_id=customer.id, email=email[:320])
    session.add(link)
    session.flush()
    code = f"{secrets.randbelow(10 ** 6):06d}"
    link.code_hash = code_hash(settings, link.id, code)
    return LinkOutcome(f"I've emailed a 6-digit code to {redact(email)}; {words['send']} it back to link your email "
                       f"and {words['them']}.",
                       [f"the customer asked to link {email} with this number: a 6-digit code was emailed there"],
                       customer, link, code)


def _pending(session: Session, customer_id: int) -> list[CustomerLink]:
    return list(session.exec(select(CustomerLink).where(CustomerLink.customer_id == customer_id,
                                                        CustomerLink.status == "pending")
                             .order_by(col(CustomerLink.id).desc())).all())


def _check_code(session: Session, settings: Settings, customer: Customer, code: str,
                words: dict) -> LinkOutcome | None:
    pending = _pending(session, customer.id)
    if not pending:
        return None  # six digits without a request: an order number, perhaps
    link, now = pending[0], utcnow()
    age = now - as_utc(link.created_at)
    if age > CODE_TTL or link.attempts >= MAX_ATTEMPTS:
        link.status, link.decided_at = "expired", now
        if age > EXPIRED_NOTICE:
            return None  # long forgotten: these digits are about something else
        return LinkOutcome(f"That code has expired (codes work for 30 minutes). {words['Send']} your email address "
                           "again for a new one.", [f"link code for {link.email} expired"], customer, link)
    if not hmac.compare_digest(link.code_hash, code_hash(settings, link.id, code)):
        link.attempts += 1
        if link.attempts >= MAX_ATTEMPTS:
            link.status, link.decided_at = "expired", now
            return LinkOutcome(f"That code doesn't match, and that was the last try. {words['Send']} your email "
                               "address again for a new code.",
                               [f"wrong link code for {link.email} ({MAX_ATTEMPTS} tries used: request void)"],
                               customer, link)
        left = MAX_ATTEMPTS - link.attempts
        return LinkOutcome(f"That code doesn't match the one I emailed. Please check it and try again "
                           f"({left} {'try' if left == 1 else 'tries'} left).",
                           [f"wrong link code for {link.email} (try {link.attempts} of {MAX_ATTEMPTS})"],
                           customer, link)
    owner = find_customer(session, email=link.email)  # looked up now: they may have emailed meanwhile
    if owner is None:
        session.add(Identity(customer_id=customer.id, kind="email", value=link.email))
        kept = customer
    elif owner.id == customer.id:
        kept = customer
    else:
        kept = link_pair(session, customer, owner, actor="the customer (code by text)")
    link.status, link.decided_at = "linked", now
    session.flush()
    return LinkOutcome(f"Thanks, your email and {words['them']} are linked.",
                       [f"the customer confirmed the code: {link.email} and this number are one customer now"],
                       kept, link)


def enqueue_code_email(session: Session, settings: Settings, link: CustomerLink, draft_id: int | None, code: str,
                       channel: str = "sms"):
    """The email with the code, to the address the customer named (sent by the email job)."""
    phones = [i.value for i in identities(session, link.customer_id) if i.kind == "phone"]
    words = medium(channel)
    body = render("replies/link_code.txt.j2", store=settings.store, code=code,
                  minutes=int(CODE_TTL.total_seconds() // 60),
                  where=words["where"].format(phone=redact(phones[0]) if phones else "a phone number"),
                  them=words["them"], back=words["back"]).strip() + "\n"
    # Not automatic (it is no answer to this address's mail, so no per-sender cap) but machine-made:
    # Auto-Submitted: auto-generated (RFC 3834 §5).
    return outbox.enqueue(session=session, draft_id=draft_id, thread_id=None, channel="email", kind=OutboxKind.LINK_CODE,
                          recipient=link.email, subject=f"Your code to link {words['link']} with {settings.store.name}",
                          body_text=body, message_id=new_message_id(settings.reply_address), automatic=False,
                          extra={"auto_generated": True})


# --- python run.py customer link|show ----------------------------------------------------------

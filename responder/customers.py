"""One customer across channels: finding, linking (merging) and the customer's own history.

Sits beside ``responder.conversation``: that module resolves an identity to a customer on first
contact (``whatsapp:+1…`` and ``+1…`` are one phone identity); this one joins two customers once
the link is known — the owner links them (the customer page, ``python run.py customer link``),
or a customer who texts writes their email address and texts back the code sent there
(``handle_text``, called by the pipeline for SMS/WhatsApp after the customer is resolved).

Memory never crosses customers who share nothing: ``customer_history`` reads one customer's
messages only, and a customer's text can reach another customer's history only by proving it
owns that customer's email address. Linking is recorded in the log (redacted) and, for the
customer's own link, as the ``CustomerLink`` row (pending -> linked | expired).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session, col, func, select, update

from channels.email.compose import new_message_id
from responder import outbox
from responder.clock import as_utc, utcnow
from responder.drafting.base import DraftResult
from responder.errors import DeskhandError
from responder.logs import redact
from responder.models import Customer, CustomerLink, Identity, Message, Thread
from responder.normalize import normalize_phone
from responder.templating import render

log = logging.getLogger("deskhand.customers")

CODE_TTL = timedelta(minutes=30)
MAX_ATTEMPTS = 5                   # wrong codes before a link request is void
MAX_CODES_PER_DAY = 3              # code emails one customer may ask for in 24 hours
EXPIRED_NOTICE = timedelta(days=1)  # an older pending request is dropped silently, not answered
MAX_OTHER_WORDS = 12               # "hi, my email is …": longer texts are questions, drafted as usual
LINK_BACKEND = "customer-link"     # Draft.backend of the replies below (no drafter involved)
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
CODE = re.compile(r"^\s*(\d{3})[ \-]?(\d{3})\s*[.!]?\s*$")  # "123456", "123 456"


class CustomerError(DeskhandError):
    """A link that can't be made; the message is one sentence for the owner."""


# --- finding and linking -----------------------------------------------------------------------

def phone_of(value: str) -> str:
    """E.164 (``+`` and the country code) or "" — a number without its country code is ambiguous."""
    phone = normalize_phone(value)
    return phone if phone.startswith("+") else ""


def find_customer(session: Session, *, email: str | None = None, phone: str | None = None) -> Customer | None:
    """The customer with this email address (lowercased) or, else, this phone number (E.164)."""
    if email:
        kind, value = "email", email.strip().lower()
    elif phone:
        kind, value = "phone", phone_of(phone)
    else:
        return None
    identity = session.exec(select(Identity).where(Identity.kind == kind, Identity.value == value)).first()
    return session.get(Customer, identity.customer_id) if identity and value else None


def link_customers(session: Session, keep_id: int, merge_id: int, *, actor: str) -> Customer:
    """Merge customer ``merge_id`` into ``keep_id``: its identities, threads, messages and link
    requests become ``keep_id``'s and its row is deleted.

    Deleted rather than marked: ``Customer`` has no column to mark it with, and a kept shell row
    would be a second "customer" the owner could find. Children are updated before the delete,
    so no foreign key ever points at a missing row (PostgreSQL and SQLite check them at once).
    Identities can't collide: (kind, value) is unique across all customers, so an address or
    number already belongs to exactly one of the two. Drafts and outbox rows hang off threads
    and follow them."""
    if keep_id == merge_id:
        raise CustomerError("A customer can't be linked with itself.")
    # Lock both rows (PostgreSQL): a message being stored for the merged customer right now
    # finishes first, so the updates below see it; SQLite serializes writers anyway.
    rows = session.exec(select(Customer).where(col(Customer.id).in_([keep_id, merge_id]))
                        .order_by(col(Customer.id)).with_for_update()).all()
    found = {c.id: c for c in rows}
    for wanted in (keep_id, merge_id):
        if wanted not in found:
            raise CustomerError(f"There is no customer {wanted} (already linked into another one?).")
    keep, merged = found[keep_id], found[merge_id]
    for model in (Identity, Thread, Message, CustomerLink):
        session.exec(update(model).where(model.customer_id == merge_id).values(customer_id=keep_id))
    if not keep.name and merged.name:
        keep.name = merged.name
    session.delete(merged)
    session.flush()
    log.info("customer %s merged into customer %s by %s (identities now: %s)", merge_id, keep_id, actor,
             ", ".join(i.value for i in identities(session, keep_id)))
    return keep


def link_pair(session: Session, a: Customer, b: Customer, *, actor: str) -> Customer:
    """Link two customers, keeping the older one (the lower id); the same one twice is refused."""
    if a.id == b.id:
        raise CustomerError("Those are already the same customer.")
    keep, merged = sorted((a.id, b.id))
    return link_customers(session, keep, merged, actor=actor)


def identities(session: Session, customer_id: int) -> list[Identity]:
    return list(session.exec(select(Identity).where(Identity.customer_id == customer_id)
                             .order_by(col(Identity.kind), col(Identity.id))).all())


def link_requests(session: Session, customer_id: int) -> list[CustomerLink]:
    """The customer's own requests to link an email address (newest first)."""
    return list(session.exec(select(CustomerLink).where(CustomerLink.customer_id == customer_id)
                             .order_by(col(CustomerLink.id).desc())).all())


def customer_history(session: Session, *, customer_id: int, before_message_id: int | None,
                     limit: int = 20) -> list[Message]:
    """The customer's recent messages in all their threads and channels, in and out, oldest first
    (never another customer's: only rows carrying this customer's id)."""
    query = select(Message).where(Message.customer_id == customer_id)
    if before_message_id is not None:
        query = query.where(Message.id < before_message_id)
    return list(reversed(session.exec(query.order_by(col(Message.id).desc()).limit(limit)).all()))


# --- the customer links their own email by text ------------------------------------------------

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


def code_hash(settings, link_id: int, code: str) -> str:
    """Only this is stored: the code is bound to its request and useless without the secret."""
    return hmac.new(settings.secret(), f"deskhand.customer-link:{link_id}:{code}".encode(), hashlib.sha256).hexdigest()


def handle_text(session: Session, settings, *, customer: Customer, channel: str, text: str) -> LinkOutcome | None:
    """A code for a pending request, or a short text naming one email address; None otherwise
    (the text is drafted as usual)."""
    code = CODE.match(text or "")
    if code:
        return _check_code(session, settings, customer, code.group(1) + code.group(2))
    addresses = {a.lower() for a in EMAIL.findall(text or "")}
    if len(addresses) != 1 or len(EMAIL.sub(" ", text).split()) > MAX_OTHER_WORDS:
        return None
    [email] = addresses
    has_email = session.exec(select(Identity.id).where(Identity.customer_id == customer.id,
                                                       Identity.kind == "email")).first()
    if has_email or email in settings.own_addresses:
        return None
    return _request_code(session, settings, customer, email)


def _request_code(session: Session, settings, customer: Customer, email: str) -> LinkOutcome:
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
    return LinkOutcome(f"I've emailed a 6-digit code to {redact(email)}; text it back to link your email and texts.",
                       [f"the customer asked to link {email} with this number: a 6-digit code was emailed there"],
                       customer, link, code)


def _pending(session: Session, customer_id: int) -> list[CustomerLink]:
    return list(session.exec(select(CustomerLink).where(CustomerLink.customer_id == customer_id,
                                                        CustomerLink.status == "pending")
                             .order_by(col(CustomerLink.id).desc())).all())


def _check_code(session: Session, settings, customer: Customer, code: str) -> LinkOutcome | None:
    pending = _pending(session, customer.id)
    if not pending:
        return None  # six digits without a request: an order number, perhaps
    link, now = pending[0], utcnow()
    age = now - as_utc(link.created_at)
    if age > CODE_TTL or link.attempts >= MAX_ATTEMPTS:
        link.status, link.decided_at = "expired", now
        if age > EXPIRED_NOTICE:
            return None  # long forgotten: these digits are about something else
        return LinkOutcome("That code has expired (codes work for 30 minutes). Text your email address again "
                           "for a new one.", [f"link code for {link.email} expired"], customer, link)
    if not hmac.compare_digest(link.code_hash, code_hash(settings, link.id, code)):
        link.attempts += 1
        if link.attempts >= MAX_ATTEMPTS:
            link.status, link.decided_at = "expired", now
            return LinkOutcome("That code doesn't match, and that was the last try. Text your email address "
                               "again for a new code.",
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
    return LinkOutcome("Thanks, your email and texts are linked.",
                       [f"the customer confirmed the code: {link.email} and this number are one customer now"],
                       kept, link)


def enqueue_code_email(session: Session, settings, link: CustomerLink, draft_id: int | None, code: str):
    """The email with the code, to the address the customer named (sent by the email job)."""
    phones = [i.value for i in identities(session, link.customer_id) if i.kind == "phone"]
    body = render("replies/link_code.txt.j2", store=settings.store, code=code, minutes=int(CODE_TTL.total_seconds() // 60),
                  phone=redact(phones[0]) if phones else "a phone number").strip() + "\n"
    # Not automatic (it is no answer to this address's mail, so no per-sender cap) but machine-made:
    # Auto-Submitted: auto-generated (RFC 3834 §5).
    return outbox.enqueue(session=session, draft_id=draft_id, thread_id=None, channel="email", kind="link_code",
                          recipient=link.email, subject=f"Your code to link your texts with {settings.store.name}",
                          body_text=body, message_id=new_message_id(settings.reply_address), automatic=False,
                          extra={"auto_generated": True})


# --- python run.py customer link|show ----------------------------------------------------------

def describe(session: Session, customer: Customer) -> dict:
    threads = session.exec(select(Thread).where(Thread.customer_id == customer.id)
                           .order_by(col(Thread.updated_at).desc(), col(Thread.id).desc())).all()
    counts = dict(session.exec(select(Message.thread_id, func.count()).where(Message.customer_id == customer.id)
                               .group_by(Message.thread_id)).all())
    return {"id": customer.id, "name": customer.name, "created_at": as_utc(customer.created_at).isoformat(),
            "identities": [{"kind": i.kind, "value": i.value, "opted_out": i.opted_out_at is not None}
                           for i in identities(session, customer.id)],
            "threads": [{"id": t.id, "channel": t.channel, "subject": t.subject, "messages": counts.get(t.id, 0),
                         "updated_at": as_utc(t.updated_at).isoformat()} for t in threads],
            "link_requests": [{"email": r.email, "status": r.status, "attempts": r.attempts,
                               "created_at": as_utc(r.created_at).isoformat()} for r in link_requests(session, customer.id)]}


def _lookup(session: Session, *, email: str | None, phone: str | None) -> Customer:
    if phone and not email and not phone_of(phone):
        raise CustomerError(f"{phone!r} is not a phone number with its country code (like +14155550100).")
    found = find_customer(session, email=email, phone=phone)
    if found is None:
        raise CustomerError(f"No customer has the email address {email}." if email else
                            f"No customer has the phone number {phone_of(phone)}.")
    return found


def cmd_customer(settings, args) -> int:
    """``customer link --email A --phone N`` | ``customer show (--email A | --phone N) [--json]``;
    reads args.action, args.email, args.phone, args.json."""
    from responder.db import Database

    if args.action == "link" and not (args.email and args.phone):
        print("customer link needs both --email and --phone.", file=sys.stderr)
        return 2
    if args.action == "show" and bool(args.email) == bool(args.phone):
        print("customer show needs --email or --phone (one of them).", file=sys.stderr)
        return 2
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            if args.action == "link":
                by_email = _lookup(session, email=args.email, phone=None)
                by_phone = _lookup(session, email=None, phone=args.phone)
                if by_email.id == by_phone.id:
                    print(f"already one customer (#{by_email.id})")
                    return 0
                kept = link_pair(session, by_email, by_phone, actor="owner (cli)")
                print(f"linked: customer #{kept.id} now has the email and texts of customer "
                      f"#{max(by_email.id, by_phone.id)}")
                return 0
            shown = describe(session, _lookup(session, email=args.email, phone=args.phone))
        if getattr(args, "json", False):
            print(json.dumps(shown, ensure_ascii=False))
            return 0
        print(f"customer #{shown['id']} {shown['name'] or '(no name)'}, since {shown['created_at'][:10]}")
        for i in shown["identities"]:
            print(f"  {i['kind']:6} {i['value']}{'  (opted out: STOP)' if i['opted_out'] else ''}")
        for t in shown["threads"]:
            print(f"  thread #{t['id']:<5} {t['channel']:9} {t['messages']:>3} message(s)  {t['updated_at'][:16]}  "
                  f"{t['subject']}")
        return 0
    except CustomerError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        db.dispose()

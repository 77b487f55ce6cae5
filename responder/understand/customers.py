"""One customer across channels: finding, linking (merging) and the customer's own history.

Sits beside ``responder.understand.conversation``: that module resolves an identity to a customer on first
contact (``whatsapp:+1…`` and ``+1…`` are one phone identity); this one joins two customers once
the link is known — the owner links them (the customer page, ``python run.py customer link``),
or a customer who texts writes their email address and texts back the code sent there
(``responder.decide.linking``). It also keeps a number's opt-out state (STOP / START).

Memory never crosses customers who share nothing: ``customer_history`` reads one customer's
messages only, and a customer's text can reach another customer's history only by proving it
owns that customer's email address. Linking is recorded in the log (redacted) and, for the
customer's own link, as the ``CustomerLink`` row (pending -> linked | expired).
"""
from __future__ import annotations

import logging

from sqlmodel import Session, col, func, select, update

from responder.core.clock import as_utc, utcnow
from responder.core.errors import DeskhandError
from responder.core.models import Customer, CustomerLink, Identity, Message, Thread
from responder.core.text import normalize_phone

log = logging.getLogger("deskhand.customers")



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

# --- opt-out state of a number (STOP / START, read before every text) ---------------------------

def phone_identity(session: Session, phone: str) -> Identity | None:
    """The number's identity (SMS and WhatsApp share one, kind "phone")."""
    if not phone:
        return None
    return session.exec(select(Identity).where(Identity.kind == "phone", Identity.value == phone)).first()


def is_opted_out(session: Session, phone: str) -> bool:
    """True when this number texted STOP (the send side checks this before every text)."""
    identity = phone_identity(session, phone)
    return identity is not None and identity.opted_out_at is not None


def apply(session: Session, identity: Identity, word: str) -> bool:
    """Record a stop or start on the number; True when its state changed."""
    if word == "stop" and identity.opted_out_at is None:
        identity.opted_out_at = utcnow()
        return True
    if word == "start" and identity.opted_out_at is not None:
        identity.opted_out_at = None
        return True
    return False


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

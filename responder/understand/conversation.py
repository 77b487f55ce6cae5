"""Customer and thread resolution; the thread's history for drafting.

Runs in the pipeline right after parsing: who wrote (an identity -> one customer) and which
conversation it continues. Email threads are found by Message-ID, In-Reply-To and References
(RFC 5322 §3.6.4), then by a normalized subject as a fallback. A thread belongs to exactly one
customer: neither headers nor subject ever merge two customers' conversations, because the
thread's history is what the drafter reads and memory must never cross customers.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from responder.core.clock import utcnow
from responder.core.models import Customer, Identity, Message, Outbox, Thread

# How long a subject-only match may reach back; older mail with the same subject is a new thread.
SUBJECT_FALLBACK_WINDOW = timedelta(days=30)
# Subjects that say nothing about the conversation never join threads on their own.
GENERIC_SUBJECTS = {"", "hi", "hello", "hey", "question", "help", "order", "inquiry", "enquiry",
                    "no subject", "(no subject)", "support", "info"}


def resolve_customer(*, session: Session, kind: str, value: str, name: str = "") -> Customer:
    """The customer behind an identity, created on first contact."""
    value = value.strip().lower() if kind == "email" else value.strip()
    found = session.exec(select(Identity).where(Identity.kind == kind, Identity.value == value)).first()
    if found:
        customer = session.get(Customer, found.customer_id)
        if customer and name and not customer.name:
            customer.name = name
        return customer
    try:
        with session.begin_nested():
            customer = Customer(name=name)
            session.add(customer)
            session.flush()
            session.add(Identity(customer_id=customer.id, kind=kind, value=value))
            session.flush()
        return customer
    except IntegrityError:
        # Another daemon met this customer at the same moment and committed first: use theirs.
        found = session.exec(select(Identity).where(Identity.kind == kind, Identity.value == value)).one()
        return session.get(Customer, found.customer_id)


def resolve_email_thread(*, session: Session, customer: Customer, subject: str, subject_key: str,
                         in_reply_to: str | None, references: list[str]) -> Thread:
    """The thread this email continues, or a new one for this customer."""
    linked = [ref for ref in [in_reply_to, *reversed(references)] if ref]
    if linked:
        thread = _thread_by_message_ids(session, customer.id, linked)
        if thread:
            return _touch(thread)
    if subject_key not in GENERIC_SUBJECTS:
        since = utcnow() - SUBJECT_FALLBACK_WINDOW
        thread = session.exec(
            select(Thread).where(Thread.customer_id == customer.id, Thread.channel == "email",
                                 Thread.subject_key == subject_key, Thread.updated_at >= since)
            .order_by(col(Thread.updated_at).desc())).first()
        if thread:
            return _touch(thread)
    thread = Thread(customer_id=customer.id, channel="email", subject=subject, subject_key=subject_key)
    session.add(thread)
    session.flush()
    return thread


CHAT_THREAD_IDLE = timedelta(days=7)  # a text conversation quiet this long starts a new thread


def resolve_chat_thread(*, session: Session, customer: Customer, channel: str) -> Thread:
    """A text conversation (SMS, WhatsApp) continues the customer's latest thread on it."""
    since = utcnow() - CHAT_THREAD_IDLE
    thread = session.exec(select(Thread).where(Thread.customer_id == customer.id, Thread.channel == channel,
                                               Thread.updated_at >= since)
                          .order_by(col(Thread.updated_at).desc())).first()
    if thread:
        return _touch(thread)
    thread = Thread(customer_id=customer.id, channel=channel)
    session.add(thread)
    session.flush()
    return thread


def _thread_by_message_ids(session: Session, customer_id: int, ids: list[str]) -> Thread | None:
    # Our own replies are found through the outbox (their Message-ID is fixed before sending).
    rows = session.exec(select(Message.thread_id).where(
        Message.channel == "email", col(Message.provider_id).in_(ids),
        Message.customer_id == customer_id, col(Message.thread_id).is_not(None))).all()
    rows += session.exec(select(Outbox.thread_id).where(
        col(Outbox.message_id).in_([f"<{i}>" for i in ids]), col(Outbox.thread_id).is_not(None))).all()
    for thread_id in rows:
        thread = session.get(Thread, thread_id)
        if thread and thread.customer_id == customer_id:
            return thread
    return None


def _touch(thread: Thread) -> Thread:
    thread.updated_at = utcnow()
    return thread


def thread_history(*, session: Session, thread_id: int, before_id: int | None = None,
                   limit: int = 20) -> list[Message]:
    """Earlier turns of a thread, oldest first (what the drafter reads as context)."""
    query = select(Message).where(Message.thread_id == thread_id)
    if before_id is not None:
        query = query.where(Message.id < before_id)
    rows = session.exec(query.order_by(col(Message.id).desc()).limit(limit)).all()
    return list(reversed(rows))

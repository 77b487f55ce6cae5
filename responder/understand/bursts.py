"""Bursts: a customer who sends many messages in a few seconds gets one reply, not one each.

Runs in the pipeline right after customer and thread resolution. The first ``burst_limit``
messages in ``burst_window_s`` are answered as usual; a message past that is held (it stays
``received``, due again when the burst window has closed) and marked ``burst``. When the first
held message comes due, every later held message of the same thread is folded into it: one
draft answers them all, and each folded message gets its own ``throttled`` draft saying which
reply it went into. Nothing is lost, and the customer is not answered one message at a time.
"""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, func, select

from responder.core.clock import as_utc, utcnow
from responder.core.models import Draft, DraftStatus, Message, MessageStatus, Route
from responder.core.settings import Settings


def recent_inbound(session: Session, message: Message, *, seconds: float) -> int:
    """This customer's messages in the window that ends with this one, this one included."""
    since = as_utc(message.received_at) - timedelta(seconds=seconds)
    return session.exec(select(func.count()).select_from(Message).where(
        Message.customer_id == message.customer_id, Message.direction == "in",
        Message.received_at > since, Message.received_at <= message.received_at,
        col(Message.id) <= message.id)).one()


def hold_if_bursting(session: Session, message: Message, settings: Settings) -> bool:
    """Hold a message past the burst limit until the window closes; True when held."""
    routing = settings.routing
    if message.burst:
        return False  # already held once: its turn has come
    if recent_inbound(session, message, seconds=routing.burst_window_s) <= routing.burst_limit:
        return False
    message.burst = True
    message.next_attempt_at = max(utcnow(), as_utc(message.received_at)) + timedelta(
        seconds=routing.burst_window_s + 1)
    return True


def fold_burst(session: Session, message: Message) -> list[Message]:
    """Later held messages of this thread, folded into this one's reply (oldest first)."""
    if not message.burst:
        return []
    later = session.exec(select(Message).where(
        Message.thread_id == message.thread_id, Message.direction == "in", Message.burst == True,  # noqa: E712
        Message.status == MessageStatus.RECEIVED, col(Message.id) > message.id)
        .order_by(col(Message.id))).all()
    for other in later:
        session.add(Draft(message_id=other.id, thread_id=other.thread_id, route=Route.THROTTLED,
                          status=DraftStatus.CLOSED,
                          reasons=[f"part of a burst: answered together with message {message.id}"]))
        other.status, other.processed_at, other.next_attempt_at = MessageStatus.PROCESSED, utcnow(), None
    return list(later)

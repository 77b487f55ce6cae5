"""The outbox: every reply is sent at most once, and every failure is a row the owner can see.

Runs after routing (``enqueue``) and in the send job (``claim_next`` / ``mark_*``). A row moves
queued -> sending -> sent. Before a row is handed to a channel it is committed as ``sending``
with a lease; if the process dies before the result is recorded, the lease runs out and the row
becomes ``unknown`` (shown to the owner), never silently re-sent; so does a send whose answer
was lost after the message was handed over (``mark_unknown``). Transient errors go to ``retry``
with exponential backoff; permanent ones, or running out of attempts, to ``failed``.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, func, or_, select

from channels.email.compose import clean_header
from responder.core.clock import utcnow
from responder.core.db import claim
from responder.core.models import (
    CUSTOMER_KINDS,
    SIDE_KINDS,
    Draft,
    DraftEvent,
    DraftStatus,
    Message,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Thread,
)
from responder.core.settings import Settings

SEND_LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
BACKOFF = [timedelta(seconds=s) for s in (30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600)]


def enqueue(*, session: Session, draft_id: int | None, thread_id: int | None, channel: str, recipient: str,
            subject: str, body_text: str, message_id: str, in_reply_to: str | None = None,
            references: list[str] | None = None, automatic: bool = True, kind: str = OutboxKind.REPLY,
            body_html: str | None = None, extra: dict | None = None) -> Outbox:
    row = Outbox(draft_id=draft_id, kind=kind, thread_id=thread_id, channel=channel, recipient=recipient,
                 subject=subject, body_text=body_text, message_id=message_id, in_reply_to=in_reply_to,
                 references=references or [], automatic=automatic, next_attempt_at=utcnow(),
                 body_html=body_html, extra=extra or {})
    session.add(row)
    session.flush()
    return row


def _due(channel: str):
    return (select(Outbox)
            .where(Outbox.channel == channel,
                   col(Outbox.status).in_([OutboxStatus.QUEUED, OutboxStatus.RETRY]),
                   or_(col(Outbox.next_attempt_at).is_(None), Outbox.next_attempt_at <= utcnow()))
            .order_by(col(Outbox.id)))


def has_due(*, session: Session, channel: str) -> bool:
    return session.exec(_due(channel).limit(1)).first() is not None


def claim_next(*, session: Session, channel: str) -> Outbox | None:
    """The next row to send, marked ``sending`` under a lease; commit before delivering.

    One row at a time, so that only the row actually in the channel's hands can be caught
    by a crash (and end up ``unknown``); the rest of the queue stays ``queued``.
    """
    rows = claim(_due(channel), session, 1)
    if not rows:
        return None
    row = rows[0]
    row.status = OutboxStatus.SENDING
    row.attempts += 1
    row.next_attempt_at = utcnow() + SEND_LEASE
    session.flush()
    return row


def mark_sent(*, session: Session, outbox_id: int, provider_id: str) -> None:
    row = session.get(Outbox, outbox_id)
    row.status, row.provider_id, row.sent_at, row.last_error = OutboxStatus.SENT, provider_id, utcnow(), None
    row.next_attempt_at = None
    if row.kind in SIDE_KINDS:
        return  # mail to the owner, or a code, is not part of a customer's thread
    if row.kind == OutboxKind.REPLY and row.draft_id is not None:
        draft = session.get(Draft, row.draft_id)
        if draft is not None and draft.status == DraftStatus.APPROVED:  # an approved reply went out
            draft.status = DraftStatus.SENT
            session.add(DraftEvent(draft_id=draft.id, action="sent", actor="system"))
    # The reply becomes part of the thread: history for the drafter, threading for the next mail.
    thread = session.get(Thread, row.thread_id) if row.thread_id else None
    session.add(Message(channel=row.channel, direction="out", provider_id=_bare(row.message_id),
                        thread_id=row.thread_id, customer_id=thread.customer_id if thread else None, recipient=row.recipient, subject=row.subject,
                        text=row.body_text, new_text=row.body_text, in_reply_to=row.in_reply_to,
                        references=row.references, status="processed", processed_at=row.sent_at))


def mark_failed(*, session: Session, outbox_id: int, error: str, permanent: bool) -> str:
    """Record a failed try; returns the new status (retry or failed)."""
    row = session.get(Outbox, outbox_id)
    row.last_error = error[:2000]
    if permanent or row.attempts >= MAX_ATTEMPTS:
        row.status, row.next_attempt_at = OutboxStatus.FAILED, None
    else:
        row.status = OutboxStatus.RETRY
        row.next_attempt_at = utcnow() + BACKOFF[min(row.attempts - 1, len(BACKOFF) - 1)]
    return row.status


def mark_unknown(*, session: Session, outbox_id: int, error: str) -> str:
    """The channel had the message when the line dropped: maybe delivered. Never retried."""
    row = session.get(Outbox, outbox_id)
    row.status, row.next_attempt_at, row.last_error = OutboxStatus.UNKNOWN, None, error[:2000]
    return row.status


def expire_leases(*, session: Session) -> int:
    """``sending`` rows whose lease ran out: the process died mid-send. Never re-sent."""
    rows = session.exec(select(Outbox).where(Outbox.status == OutboxStatus.SENDING,
                                             Outbox.next_attempt_at < utcnow())).all()
    for row in rows:
        row.status, row.next_attempt_at = OutboxStatus.UNKNOWN, None
        row.last_error = "interrupted while sending: it may or may not have gone out; check before resending"
    return len(rows)


def automatic_sent_since(*, session: Session, since: datetime, thread_id: int | None = None,
                         recipient: str | None = None) -> int:
    """Automatic replies queued or sent since ``since`` (the per-day caps count these)."""
    query = select(func.count()).select_from(Outbox).where(
        Outbox.automatic == True, Outbox.created_at >= since,  # noqa: E712
        col(Outbox.status).not_in([OutboxStatus.FAILED]))
    if thread_id is not None:
        query = query.where(Outbox.thread_id == thread_id)
    if recipient is not None:
        query = query.where(Outbox.recipient == recipient)
    return session.exec(query).one()


def owner_message_id(settings: Settings, kind: str, token: str) -> str:
    """``<deskhand.{kind}.{token}.{random hex}@{our domain}>``; kind is draft or digest.

    The random part keeps each mail's id unique (a draft gets a notification and a reminder);
    it is short so that the header rarely needs folding (RFC 5322 allows it, some tools choke).
    """
    domain = settings.reply_address.rpartition("@")[2] or "deskhand.invalid"
    return f"<deskhand.{kind}.{token}.{secrets.token_hex(4)}@{clean_header(domain)}>"


def automatic_gone_out_since(*, session: Session, since: datetime, thread_id: int | None = None,
                             recipient: str | None = None, excluding: int | None = None) -> int:
    """Automatic customer messages (replies, holding notes) that went out, or may have, since
    ``since``: the send rules' count, beside the one routing makes when it queues a reply."""
    query = select(func.count()).select_from(Outbox).where(
        Outbox.automatic == True, Outbox.created_at >= since, col(Outbox.kind).in_(CUSTOMER_KINDS),  # noqa: E712
        col(Outbox.status).in_([OutboxStatus.SENT, OutboxStatus.SENDING, OutboxStatus.UNKNOWN]))
    if thread_id is not None:
        query = query.where(Outbox.thread_id == thread_id)
    if recipient is not None:
        query = query.where(Outbox.recipient == recipient)
    if excluding is not None:
        query = query.where(Outbox.id != excluding)
    return session.exec(query).one()


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>")

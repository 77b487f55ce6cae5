"""Retention: the daemon's daily job that erases conversations older than ``[privacy] retention_days``.

Runs under the "retention" job lock (one daemon at a time), one batch of threads per
transaction so the message flow keeps going; the erasing itself is ``responder.ops.privacy``'s
(the same rows ``run.py forget`` removes), and each run that erased something writes one line
to ``<data_dir>/privacy.log``.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, exists, or_
from sqlmodel import Session, col, func, select

from responder.core.clock import utcnow
from responder.core.models import (
    Alert,
    ChatSession,
    Digest,
    Draft,
    DraftStatus,
    Message,
    OrderCheck,
    Outbox,
    OutboxStatus,
    Thread,
)
from responder.ops.context import Context
from responder.ops.privacy import (
    BATCH,
    UNSENT,
    Erased,
    _audit,
    _delete,
    _erase,
    _erase_customers,
)


def _expired_threads(session: Session, cutoff, limit: int) -> list[tuple[int, int]]:
    """(thread id, customer id) of threads quiet since ``cutoff``, with nothing waiting or in flight."""
    recent = exists().where(Message.thread_id == Thread.id, Message.received_at >= cutoff)
    busy = exists().where(Outbox.thread_id == Thread.id, col(Outbox.status).in_([*UNSENT, OutboxStatus.SENDING]))
    waiting = exists().where(Draft.thread_id == Thread.id, Draft.status == DraftStatus.PENDING)
    return list(session.exec(select(Thread.id, Thread.customer_id).where(
        Thread.updated_at < cutoff, ~recent, ~busy, ~waiting).order_by(col(Thread.id)).limit(limit)))


def purge_expired(ctx: Context) -> int:
    """The daily job: erase conversations whose last message is older than ``[privacy]
    retention_days`` (0: keep forever), a batch per transaction; customers left without any
    thread go too (a number that texted STOP is kept, so STOP stays honoured). Also messages
    outside threads and owner mail past the cutoff. Returns the number of threads erased."""
    days = ctx.settings.privacy.retention_days
    if not days:
        return 0
    cutoff, total, erased = utcnow() - timedelta(days=days), 0, Erased()
    while not ctx.stopping.is_set():
        with ctx.db.transaction() as session:
            found = _expired_threads(session, cutoff, BATCH)
            loose = set(session.exec(select(Message.id).where(
                col(Message.thread_id).is_(None), Message.received_at < cutoff,
                Message.status != "received").limit(BATCH * 5)))
            if not found and not loose:
                break
            _erase(session, erased, threads={t for t, _ in found}, messages=loose, dry_run=False)
            session.flush()
            alone = {c for _, c in found if not session.exec(select(Thread.id).where(Thread.customer_id == c)).first()
                     and not session.exec(select(Message.id).where(Message.customer_id == c)).first()}
            _erase_customers(session, erased, alone, keep_opted_out=True, dry_run=False)
        total += len(found)
    with ctx.db.transaction() as session:  # digests and other owner mail past the cutoff
        old = set(session.exec(select(Outbox.id).where(
            col(Outbox.thread_id).is_(None), col(Outbox.draft_id).is_(None), Outbox.created_at < cutoff,
            col(Outbox.status).not_in([*UNSENT, OutboxStatus.SENDING]))))
        _delete(session, Digest, Digest.outbox_id, old)
        erased.counts["owner mails"] += _delete(session, Outbox, Outbox.id, old)
        erased.counts["order checks"] += session.exec(delete(OrderCheck).where(OrderCheck.at < cutoff)).rowcount
        # Chat visitors gone quiet (their conversations went above, or they never wrote).
        erased.counts["chat sessions"] += session.exec(delete(ChatSession).where(
            func.coalesce(ChatSession.last_seen_at, ChatSession.created_at) < cutoff)).rowcount
        erased.counts["alerts"] += session.exec(delete(Alert).where(
            Alert.created_at < cutoff, or_(col(Alert.until).is_(None), Alert.until < cutoff))).rowcount
    if any(erased.counts.values()):
        _audit(ctx.settings, {"action": "retention", "days": days, "erased": dict(erased.counts)}, level=logging.INFO)
    return total

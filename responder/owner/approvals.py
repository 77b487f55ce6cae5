"""The approval queue: what happens to a held draft after the owner looks at it.

Runs behind every way the owner acts (``run.py queue``, the web pages, one-click links, replies
to the digest): they all call these functions inside one transaction, so the rules live once.
A held draft (route review or handoff) moves pending -> approved (maybe edited) -> sent, or
pending -> rejected, or pending -> expired; every change is a ``DraftEvent`` row with who and
when. The bot's draft stays in ``draft.text``; an edited reply goes to ``draft.sent_text``.
Approving hands the reply to the outbox (at-most-once sending, as for automatic replies).
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists
from sqlmodel import Session, col, select

from responder.core.clock import utcnow
from responder.core.models import (
    Customer,
    Draft,
    DraftEvent,
    DraftStatus,
    Message,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Route,
    Thread,
)
from responder.core.settings import Settings
from responder.decide.greeting import checked_greeting_name
from responder.decide.linking import LINK_BACKEND
from responder.owner.lessons import propose
from responder.send import reply

HELD = (Route.REVIEW, Route.HANDOFF)


class ApprovalError(Exception):
    """The action can't be taken; the message says why in one sentence."""


class ThreadMovedOn(ApprovalError):
    """The customer wrote again after this draft: the owner must confirm (``force``)."""

    def __init__(self, newer: list[Message]):
        self.newer = newer
        n = len(newer)
        super().__init__(f"The customer wrote {n} more message{'s' if n != 1 else ''} after this draft, "
                         "so it may no longer fit; look at the thread, then approve again to send anyway.")


def pending(session: Session, limit: int | None = None) -> list[Draft]:
    query = (select(Draft).where(col(Draft.route).in_(HELD), Draft.status == DraftStatus.PENDING)
             .order_by(col(Draft.created_at), col(Draft.id)))
    return list(session.exec(query.limit(limit) if limit else query).all())


def get(session: Session, draft_id: int) -> Draft:
    draft = session.get(Draft, draft_id)
    if draft is None or draft.route not in HELD:
        raise ApprovalError(f"There is no held draft {draft_id}.")
    return draft


def linking_message(message_id):
    """SQL: the message was about linking the customer's email (``decide.linking``), nothing else."""
    return exists().where(Draft.message_id == message_id, Draft.backend == LINK_BACKEND)


def by_token(session: Session, token: str) -> Draft | None:
    return session.exec(select(Draft).where(Draft.token == token)).first() if token else None


def newer_messages(session: Session, draft: Draft) -> list[Message]:
    """Customer messages in the draft's thread that arrived after the one it answers (not a burst's,
    answered together with it, nor "my email is …" and its code: they change nothing asked)."""
    if draft.thread_id is None:
        return []
    later = session.exec(select(Message).where(Message.thread_id == draft.thread_id, Message.direction == "in",
                                               Message.id > draft.message_id, Message.burst == False,  # noqa: E712
                                               ~linking_message(Message.id))
                         .order_by(col(Message.id))).all()
    return list(later)


def events(session: Session, draft_id: int) -> list[DraftEvent]:
    return list(session.exec(select(DraftEvent).where(DraftEvent.draft_id == draft_id)
                             .order_by(col(DraftEvent.at), col(DraftEvent.id))).all())


def record(session: Session, draft: Draft, action: str, actor: str, detail: str = "") -> None:
    session.add(DraftEvent(draft_id=draft.id, action=action, actor=actor[:320], detail=detail))


def _must_be_pending(draft: Draft, verb: str) -> None:
    if draft.status != DraftStatus.PENDING:
        raise ApprovalError(f"Draft {draft.id} is already {draft.status}: nothing to {verb}.")


def approve(session: Session, settings: Settings, draft_id: int, *, actor: str, text: str | None = None,
            force: bool = False) -> Draft:
    """Send the draft (or the owner's ``text`` instead). Raises ``ThreadMovedOn`` unless ``force``."""
    draft = get(session, draft_id)
    _must_be_pending(draft, "approve")
    final = (text if text is not None else draft.text).strip()
    if not final:
        raise ApprovalError(f"Draft {draft.id} has no text to send; write the reply first.")
    newer = newer_messages(session, draft)
    if newer and not force:
        raise ThreadMovedOn(newer)
    draft.edited = final != draft.text.strip()
    draft.sent_text = final
    draft.status, draft.decided_at, draft.decided_by = DraftStatus.APPROVED, utcnow(), actor[:320]
    enqueue_reply(session, settings, draft, final)
    detail = "edited before sending" if draft.edited else "sent as drafted"
    if newer:
        detail += f"; sent although the customer wrote {len(newer)} more message(s)"
    record(session, draft, "approved", actor, detail)
    if draft.edited:
        propose(session, settings, draft)
    return draft


def reject(session: Session, draft_id: int, *, actor: str, reason: str = "") -> Draft:
    draft = get(session, draft_id)
    _must_be_pending(draft, "reject")
    draft.status, draft.decided_at, draft.decided_by = DraftStatus.REJECTED, utcnow(), actor[:320]
    record(session, draft, "rejected", actor, reason.strip()[:2000])
    return draft


def expire_stale(session: Session, settings: Settings) -> int:
    """Pending drafts older than ``[approvals] expire_days`` expire: never sent, still on record."""
    cutoff = utcnow() - timedelta(days=settings.approvals.expire_days)
    stale = session.exec(select(Draft).where(col(Draft.route).in_(HELD), Draft.status == DraftStatus.PENDING,
                                             Draft.created_at < cutoff)).all()
    for draft in stale:
        draft.status, draft.decided_at, draft.decided_by = DraftStatus.EXPIRED, utcnow(), "system"
        record(session, draft, "expired", "system",
               f"waited more than {settings.approvals.expire_days:g} days without a decision")
    return len(stale)


def due_reminders(session: Session, settings: Settings) -> list[Draft]:
    """Pending drafts older than ``[approvals] remind_after_hours`` not yet reminded about."""
    cutoff = utcnow() - timedelta(hours=settings.approvals.remind_after_hours)
    return list(session.exec(select(Draft).where(
        col(Draft.route).in_(HELD), Draft.status == DraftStatus.PENDING, Draft.created_at < cutoff,
        col(Draft.reminded_at).is_(None)).order_by(col(Draft.id))).all())


def enqueue_reply(session: Session, settings: Settings, draft: Draft, text: str) -> None:
    """The owner's reply into the customer's thread, as the outbox row the send job delivers."""
    msg = session.get(Message, draft.message_id)
    thread = session.get(Thread, msg.thread_id) if msg.thread_id else None
    customer = session.get(Customer, msg.customer_id) if msg.customer_id else None
    # A reply the text job handed back (e.g. outside WhatsApp's window) left a failed row:
    # the new approval replaces it (one reply row per draft).
    failed = session.exec(select(Outbox).where(Outbox.draft_id == draft.id, Outbox.kind == OutboxKind.REPLY,
                                               Outbox.status == OutboxStatus.FAILED)).first()
    if failed is not None:
        session.delete(failed)
        session.flush()
    parent = None if msg.provider_id.startswith("sha256:") else msg.provider_id  # texts: reply ignores it
    reply.enqueue_reply(session, settings, draft=draft, channel=msg.channel, recipient=msg.sender,
                        thread_id=thread.id if thread else None, text=text,
                        customer_name=checked_greeting_name(customer.name if customer else "")[0],
                        subject=msg.subject, parent=parent,
                        references=msg.references or [], automatic=False)

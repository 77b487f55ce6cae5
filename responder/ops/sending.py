"""The send job: every outbox row, email or text, goes out through here and one ``Channel``.

Runs in the daemon's send workers (one for email, one for texts, one for the site chat, so an SMTP
outage never holds up an SMS) as ``send_outbox(ctx, carrier)``. For each due row of the carrier's channels:

1. claim it alone, under a lease (``outbox.claim_next``: at most once), and in the same
   transaction gather the facts the channel's rules read (opt-out, WhatsApp window, limits);
2. ``Channel.send``: the shared rules, then the channel's delivery (``channels.base``);
3. record what happened in one transaction, claiming the next row with it: sent (with what a
   rule changed), retry, failed or unknown; a refusal ``to_owner`` puts the draft back in the
   owner's queue with the reason, and the owner hears of it as for any held draft.

A carrier that can't be opened (SMTP refused, Twilio token missing) claims nothing: the queue
waits and the server is backed off (``ServerBackoff``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from sqlmodel import Session, col, func, or_, select

from channels.base import Outbound, Receipt, Refused, SendFacts
from responder.core.backoff import server_backoff
from responder.core.clock import as_utc, utcnow
from responder.core.db import DatabaseUnavailable
from responder.core.errors import (
    ConfigError,
    DeliveryError,
    PermanentError,
    TransientError,
    UnknownOutcome,
)
from responder.core.models import (
    CUSTOMER_KINDS,
    ChatSession,
    Draft,
    DraftEvent,
    DraftStatus,
    Message,
    Outbox,
    OutboxKind,
    Route,
)
from responder.core.settings import Settings
from responder.core.text import normalize_phone
from responder.ops.context import Context
from responder.owner.approvals import HELD, linking_message
from responder.owner.owner_mail import notify_held
from responder.send import outbox
from responder.send.registry import CARRIERS, TEXTS
from responder.understand import customers

log = logging.getLogger("deskhand.send")
WHAT = {"email": "replies", "texts": "texts", "chat": "chat replies"}  # in the log: "cannot send replies now: ..."
PRESENT = timedelta(seconds=60)  # a chat panel that asked for news this recently is open


async def send_outbox(ctx: Context, carrier: str = "email", limit: int = 200) -> int:
    """Send the due rows of one carrier (``responder.send.registry``) over one opened channel;
    returns how many rows were tried (sent, refused or failed)."""
    names = CARRIERS[carrier].channels
    try:
        channel = CARRIERS[carrier].open(ctx.settings)
    except ConfigError as exc:  # the owner must fix the settings; the rows wait meanwhile
        log.error("cannot send %s: %s", WHAT[carrier], exc)
        return 0
    if channel is None or not await asyncio.to_thread(lambda: any(has_outbound(ctx, n) for n in names)):
        return 0
    backoff = server_backoff(channel.key)
    if not backoff.is_due():
        return 0
    tried = 0
    try:
        async with channel:
            backoff.succeeded()
            for name in names:
                item = await asyncio.to_thread(claim_outbound, ctx, name)
                while item is not None:
                    tried += 1
                    more = name if tried < limit else None  # claimed while this one is recorded
                    try:
                        receipt = await channel.send(item)
                    except DeliveryError as exc:
                        if not channel.is_connected:  # the rest wait for a fresh connection on the next run
                            more = None
                        item = await asyncio.to_thread(record_result, ctx, item, error=exc, claim_next=more)
                        continue
                    item = await asyncio.to_thread(record_result, ctx, item, receipt=receipt, claim_next=more)
                if tried >= limit or ctx.stopping.is_set():
                    break
    except ConfigError as exc:
        log.error("cannot send %s: %s", WHAT[carrier], exc)
    except TransientError as exc:  # only opening raises here; each row's errors are recorded above
        log.warning("cannot send %s now: %s; %s", WHAT[carrier], exc, backoff.describe(backoff.failed()))
    return tried


# --- claiming, with the facts the rules read ----------------------------------------------------

def has_outbound(ctx: Context, channel: str) -> bool:
    with ctx.db.transaction() as session:
        # Leases run out even when nothing else is due: a row a dead process left ``sending``
        # becomes ``unknown`` (and shows in the digest) instead of waiting forever.
        outbox.expire_leases(session=session)
        return outbox.has_due(session=session, channel=channel)


def claim_outbound(ctx: Context, channel: str) -> Outbound | None:
    with ctx.db.transaction() as session:
        outbox.expire_leases(session=session)
        return _claim(session, ctx.settings, channel)


def _claim(session: Session, settings: Settings, channel: str) -> Outbound | None:
    row = outbox.claim_next(session=session, channel=channel)
    if row is None:
        return None
    try:
        with session.begin_nested():
            facts = gather_facts(session, settings, row)
    except Exception as exc:  # never send unchecked: the rules see the failure and refuse
        log.exception("gathering the facts for outbox row %s failed", row.id)
        facts = SendFacts(channel=row.channel, kind=row.kind, automatic=row.automatic, body=row.body_text,
                          unreadable=f"{type(exc).__name__}: {exc}")
    return Outbound(outbox_id=row.id, recipient=row.recipient, subject=row.subject, body_text=row.body_text,
                    message_id=row.message_id, in_reply_to=row.in_reply_to,
                    references=tuple(row.references or ()), automatic=row.automatic, body_html=row.body_html,
                    extra=dict(row.extra or {}), channel=row.channel, kind=row.kind, facts=facts)


def gather_facts(session: Session, settings: Settings, row: Outbox) -> SendFacts:
    texted = row.channel in TEXTS
    number = normalize_phone(row.recipient) if texted else ""
    capped = row.automatic and row.kind in CUSTOMER_KINDS
    since = utcnow() - timedelta(days=1)
    return SendFacts(channel=row.channel, kind=row.kind, automatic=row.automatic, body=row.body_text,
                     thread_sent_today=outbox.automatic_gone_out_since(
                         session=session, since=since, thread_id=row.thread_id, excluding=row.id)
                     if capped and row.thread_id is not None else 0,
                     sender_sent_today=outbox.automatic_gone_out_since(
                         session=session, since=since, recipient=row.recipient, excluding=row.id) if capped else 0,
                     thread_cap=settings.daily_caps(row.channel)[0], sender_cap=settings.daily_caps(row.channel)[1],
                     wrote_since=wrote_since(session, row) if not row.automatic and row.kind == OutboxKind.REPLY else 0,
                     opted_out=texted and customers.is_opted_out(session, number),
                     last_inbound_at=last_whatsapp_from(session, number) if row.channel == "whatsapp" else None,
                     now=utcnow(), max_segments=settings.tone.sms_max_segments,
                     template_sid=settings.twilio.whatsapp_template_sid.strip(),
                     templated=bool((row.extra or {}).get("template")),
                     **(chat_facts(session, row.recipient) if row.channel == "chat" else {}))


def chat_facts(session: Session, sender: str) -> dict:
    """Whether the visitor's panel is open now, and the address they left for answers by mail."""
    visitor = session.exec(select(ChatSession).where(ChatSession.sender == sender)).first()
    if visitor is None:  # erased meanwhile: nowhere to deliver but the stored conversation
        return {}
    seen = as_utc(visitor.last_seen_at) if visitor.last_seen_at else None
    return {"present": seen is not None and utcnow() - seen < PRESENT, "visitor_email": visitor.email}


def wrote_since(session: Session, row: Outbox) -> int:
    """Customer messages in the row's thread stored after the row was queued (a burst's messages
    are answered together with it, and "my email is …" with its code asks nothing: they don't count)."""
    if row.thread_id is None:
        return 0
    return session.exec(select(func.count()).select_from(Message).where(
        Message.thread_id == row.thread_id, Message.direction == "in", Message.burst == False,  # noqa: E712
        Message.received_at > row.created_at, ~linking_message(Message.id))).one()


def last_whatsapp_from(session: Session, number: str) -> datetime | None:
    """When the customer last wrote to us on WhatsApp. Senders are stored as intake got them
    ("whatsapp:+1…", "+1…"), so candidates are compared as E.164 numbers."""
    if not number:
        return None
    match = col(Message.sender).in_([number, "whatsapp:" + number])
    identity = customers.phone_identity(session, number)
    if identity is not None:
        match = or_(match, Message.customer_id == identity.customer_id)
    rows = session.exec(select(Message.sender, Message.received_at).where(
        Message.channel == "whatsapp", Message.direction == "in", match)
        .order_by(col(Message.received_at).desc()).limit(50)).all()
    return next((as_utc(at) for sender, at in rows if normalize_phone(sender) == number), None)


# --- recording what the channel did -------------------------------------------------------------

def record_result(ctx: Context, item: Outbound, *, receipt: Receipt | None = None, provider_id: str | None = None,
                  error: Exception | None = None, claim_next: str | None = None) -> Outbound | None:
    """Record what the channel did with ``item``; with ``claim_next`` (a channel), claim that
    channel's next row in the same transaction and return it (one commit per reply, not two).

    The message is out of our hands already, so if the database is away (restarting), wait for it
    while the send lease holds rather than leave a sent reply ``sending``, to turn ``unknown``
    when the lease runs out."""
    if receipt is None and error is None:
        receipt = Receipt(provider_id=provider_id or "")
    deadline = time.monotonic() + outbox.SEND_LEASE.total_seconds() / 2
    while True:
        try:
            return _record_result(ctx, item, receipt=receipt, error=error, claim_next=claim_next)
        except DatabaseUnavailable:
            if time.monotonic() > deadline or ctx.stopping.is_set():
                raise
            time.sleep(1)


def _record_result(ctx: Context, item: Outbound, *, receipt: Receipt | None, error: Exception | None,
                   claim_next: str | None) -> Outbound | None:
    status = None
    with ctx.db.transaction() as session:
        row = session.get(Outbox, item.outbox_id)
        sent = receipt.sent if receipt is not None else getattr(error, "sent", None)
        if receipt is not None or isinstance(error, UnknownOutcome):  # it went out, or may have
            _keep_changes(row, sent)
        if error is None:
            for note in receipt.notes:
                log.info("%s %s: %s", item.channel, item.outbox_id, note)
            outbox.mark_sent(session=session, outbox_id=item.outbox_id, provider_id=receipt.provider_id)
        elif isinstance(error, UnknownOutcome):  # maybe delivered: at most once, so never retried
            status = outbox.mark_unknown(session=session, outbox_id=item.outbox_id, error=str(error))
        else:
            status = outbox.mark_failed(session=session, outbox_id=item.outbox_id, error=str(error),
                                        permanent=isinstance(error, PermanentError))
            if isinstance(error, Refused):
                _after_refusal(session, ctx.settings, row, error)
        following = _claim(session, ctx.settings, claim_next) if claim_next and not ctx.stopping.is_set() else None
    if error is not None:
        log.warning("%s %s %s to %s: %s (%s)", item.channel, item.kind, item.outbox_id, item.recipient, status, error)
    elif item.channel == "chat":  # committed: the visitor's open panel shows it now
        ctx.chat_hub.notify(item.recipient)
    return following


def _keep_changes(row: Outbox, sent: Outbound | None) -> None:
    """What a rule changed goes on the row: the thread's history says what the customer got."""
    if sent is None or (sent.body_text == row.body_text and sent.extra == (row.extra or {})):
        return
    row.body_text, row.extra = sent.body_text, dict(sent.extra)  # JSON is reassigned, not mutated


def _after_refusal(session: Session, settings: Settings, row: Outbox, error: Refused) -> None:
    if error.code == 21610:  # the carrier says the number opted out: we never text it again
        identity = customers.phone_identity(session, normalize_phone(row.recipient))
        if identity is not None:
            customers.apply(session, identity, "stop")
    if error.to_owner and row.kind in CUSTOMER_KINDS and row.draft_id is not None:
        return_to_owner(session, settings, row.draft_id, str(error))


def return_to_owner(session: Session, settings: Settings, draft_id: int, reason: str) -> Draft | None:
    """The draft waits for the owner again, with the reason, and the owner hears of it as for any
    held draft."""
    draft = session.get(Draft, draft_id)
    if draft is None or draft.status not in (DraftStatus.QUEUED, DraftStatus.APPROVED, DraftStatus.PENDING):
        return None
    was_pending = draft.status == DraftStatus.PENDING
    if draft.route not in HELD:
        draft.route = Route.REVIEW
    draft.status = DraftStatus.PENDING
    if reason not in (draft.reasons or []):
        draft.reasons = [*(draft.reasons or []), reason]
    session.add(DraftEvent(draft_id=draft.id, action="returned", actor="system", detail=reason))
    if not was_pending:
        notify_held(session, settings, draft)
    return draft

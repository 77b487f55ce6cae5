"""The send job for texts (SMS and WhatsApp), and the rules every text passes before Twilio sees it.

Runs in the daemon's send worker, in a thread (``send_text_outbox``), beside the email send job.
Each outbox row of channel sms or whatsapp is claimed alone (``outbox.claim_next``: at most once,
under a lease) and, in the same transaction, checked by a table of small rules over plain facts
(Mailman's chain: each rule answers nothing, or a verdict with a plain-words reason):

1. ``refuse_opted_out``: the number texted STOP -> never sent, whoever wrote the text.
2. ``keep_whatsapp_window``: WhatsApp allows free text only within 24 hours of the customer's
   last message (Twilio error 63016 otherwise) -> the approved template ``[twilio]
   whatsapp_template_sid`` instead, or not sent and the draft back to the owner.
3. ``fit_sms_segments``: at most ``[tone] sms_max_segments`` segments (GSM-7 vs UCS-2) -> an
   automatic text is cut at a sentence boundary when what is kept still says something, else
   held; the owner's own approved words are never cut: the draft goes back to them.

A refusal is a ``failed`` row with the reason in ``last_error``; "back to the owner" also makes
the draft pending again with the reason (queue, digest). Twilio's answers after sending are
handled the same way: 21610 marks the number opted out, 63016 is rule 2 after the fact.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from channels.base import Outbound
from channels.twilio.send import TwilioSender, UncertainDelivery
from responder import approvals, optout, outbox
from responder.clock import as_utc, utcnow
from responder.errors import ConfigError, PermanentError, TransientError
from responder.jobs import has_outbound, record_result
from responder.models import Draft, DraftStatus, Message, Outbox, Route
from responder.normalize import normalize_phone
from responder.owner_mail import SMS_KIND
from responder.tone import sms_segments, split_sentences

log = logging.getLogger("deskhand.texting")
CHANNELS = ("sms", "whatsapp")
CUSTOMER_KINDS = ("reply", "holding")
WHATSAPP_WINDOW = timedelta(hours=24)  # WhatsApp's customer-service window (Twilio error 63016)
OPTED_OUT = "the customer opted out (STOP): nothing is sent to this number"
OUTSIDE_WINDOW = "outside WhatsApp's 24-hour window"
# A dropped sentence that starts like this qualifies what came before: cutting it is not safe.
CAVEATS = ("but", "however", "except", "unless", "although", "though", "note", "please note", "only",
           "that said", "otherwise", "important", "warning", "just so you know", "keep in mind")


# --- the rules: plain facts in, a verdict out -----------------------------------------------------

@dataclass(frozen=True)
class SendFacts:
    channel: str
    kind: str
    automatic: bool
    body: str
    opted_out: bool
    last_inbound_at: datetime | None  # the customer's last WhatsApp message to us
    now: datetime
    max_segments: int
    template_sid: str                 # [twilio] whatsapp_template_sid
    templated: bool = False           # the row already asks for the template


@dataclass(frozen=True)
class Verdict:
    reason: str
    send: bool = True          # False: not sent; the row fails with the reason
    to_owner: bool = False     # and the draft goes back to the owner's queue
    body: str | None = None    # send this text instead
    template: str | None = None  # send this approved template instead of free text


def refuse_opted_out(f: SendFacts) -> Verdict | None:
    return Verdict(OPTED_OUT, send=False) if f.opted_out else None


def keep_whatsapp_window(f: SendFacts) -> Verdict | None:
    if f.channel != "whatsapp" or f.kind not in CUSTOMER_KINDS or f.templated:
        return None
    if f.last_inbound_at is not None and f.now - f.last_inbound_at < WHATSAPP_WINDOW:
        return None
    ago = f"{(f.now - f.last_inbound_at).total_seconds() / 3600:.0f} h ago" if f.last_inbound_at else "never"
    return window_closed(f.template_sid, f"the customer last wrote {ago}")


def window_closed(template_sid: str, detail: str) -> Verdict:
    if template_sid:
        return Verdict(f"{OUTSIDE_WINDOW} ({detail}): sent the approved template {template_sid} instead",
                       template=template_sid)
    return Verdict(f"{OUTSIDE_WINDOW} ({detail}): WhatsApp allows only an approved template there and "
                   "[twilio] whatsapp_template_sid is empty; approve it again after the customer writes, "
                   "or reach them another way", send=False, to_owner=True)


def fit_sms_segments(f: SendFacts) -> Verdict | None:
    if f.channel != "sms" or f.templated or (n := sms_segments(f.body)) <= f.max_segments:
        return None
    limit = f"{n} SMS segments; the limit is {f.max_segments} ([tone] sms_max_segments)"
    if f.kind == SMS_KIND:  # our own note to the owner: cutting it loses nothing that matters
        return Verdict(f"cut to fit: {limit}", body=clip_to_segments(f.body, f.max_segments))
    if not f.automatic:
        return Verdict(f"not sent: your reply is {limit}; shorten it and approve it again",
                       send=False, to_owner=True)
    short = shorten_at_sentence(f.body, f.max_segments)
    if short:
        return Verdict(f"shortened at a sentence boundary: it was {limit}", body=short)
    return Verdict(f"not sent: the reply is {limit} and can't be shortened safely", send=False, to_owner=True)


RULES = (refuse_opted_out, keep_whatsapp_window, fit_sms_segments)


def decide_before_send(facts: SendFacts) -> list[Verdict]:
    """The verdicts of the rules in order; a refusal ends the list (rewrites feed later rules)."""
    verdicts = []
    for rule in RULES:
        verdict = rule(facts)
        if verdict is None:
            continue
        verdicts.append(verdict)
        if not verdict.send:
            break
        facts = dataclasses.replace(facts, body=verdict.body if verdict.body is not None else facts.body,
                                    templated=facts.templated or bool(verdict.template))
    return verdicts


def shorten_at_sentence(text: str, max_segments: int) -> str | None:
    """The longest run of whole leading sentences within ``max_segments``, cut from the text as
    written; None when not even the first sentence fits or a dropped sentence is a caveat."""
    sentences, kept_end, pos, kept = split_sentences(text), 0, 0, 0
    for sentence in sentences:
        start = text.find(sentence, pos)
        if start < 0:
            return None
        end = start + len(sentence)
        if sms_segments(text[:end].strip()) > max_segments:
            break
        kept_end, pos, kept = end, end, kept + 1
    if not kept or text[:kept_end].rstrip()[-1:] not in ".!?":
        return None
    if any(s.lower().lstrip("\"'(").startswith(CAVEATS) for s in sentences[kept:]):
        return None
    return text[:kept_end].strip()


def clip_to_segments(text: str, max_segments: int) -> str:
    text = text.strip()
    while text and sms_segments(text) > max_segments:
        text = text[:-10].rstrip() + "..."
    return text


# --- the job ----------------------------------------------------------------------------------

def send_text_outbox(ctx, limit: int = 200) -> int:
    """Send due texts (sms, then whatsapp). Returns how many rows were claimed (sent, refused or
    failed). Synchronous: the daemon runs it in a thread."""
    if not ctx.settings.twilio.enabled or not any(has_outbound(ctx, c) for c in CHANNELS):
        return 0
    sender = TwilioSender(ctx.settings)
    try:
        sender.client  # the auth token is read now, before any row is claimed
    except ConfigError as exc:
        log.error("cannot send texts: %s", exc)
        return 0
    tried = 0
    for channel in CHANNELS:
        while tried < limit and not ctx.stopping.is_set():
            claimed = claim_checked(ctx, channel)
            if claimed is None:
                break
            tried += 1
            if claimed.outbound is not None:
                deliver(ctx, sender, claimed.outbound, channel)
    return tried


@dataclass
class Claim:
    outbound: Outbound | None  # None: refused before sending (already recorded)


def claim_checked(ctx, channel: str) -> Claim | None:
    """Claim the next due row and run the rules on it, in one transaction."""
    with ctx.db.transaction() as session:
        outbox.expire_leases(session=session)
        row = outbox.claim_next(session=session, channel=channel)
        if row is None:
            return None
        try:
            with session.begin_nested():
                verdicts = decide_before_send(gather_facts(session, ctx.settings, row))
        except Exception as exc:  # never send unchecked, never leave the row hanging
            log.exception("checking text %s before sending failed", row.id)
            verdicts = [Verdict(f"not sent: checking it before sending failed ({type(exc).__name__}: {exc})",
                                send=False)]
        for verdict in verdicts:
            if not verdict.send:
                refuse(session, ctx.settings, row, verdict.reason, to_owner=verdict.to_owner)
                return Claim(None)
            rewrite(row, verdict)
        return Claim(to_outbound(row))


def gather_facts(session: Session, settings, row: Outbox) -> SendFacts:
    number = normalize_phone(row.recipient)
    return SendFacts(channel=row.channel, kind=row.kind, automatic=row.automatic, body=row.body_text,
                     opted_out=optout.is_opted_out(session, number),
                     last_inbound_at=last_whatsapp_from(session, number) if row.channel == "whatsapp" else None,
                     now=utcnow(), max_segments=settings.tone.sms_max_segments,
                     template_sid=settings.twilio.whatsapp_template_sid.strip(),
                     templated=bool((row.extra or {}).get("template")))


def last_whatsapp_from(session: Session, number: str) -> datetime | None:
    """When the customer last wrote to us on WhatsApp. Senders are stored as intake got them
    ("whatsapp:+1…", "+1…"), so candidates are compared as E.164 numbers."""
    if not number:
        return None
    match = col(Message.sender).in_([number, "whatsapp:" + number])
    identity = optout.phone_identity(session, number)
    if identity is not None:
        match = or_(match, Message.customer_id == identity.customer_id)
    rows = session.exec(select(Message.sender, Message.received_at).where(
        Message.channel == "whatsapp", Message.direction == "in", match)
        .order_by(col(Message.received_at).desc()).limit(50)).all()
    return next((as_utc(at) for sender, at in rows if normalize_phone(sender) == number), None)


def rewrite(row: Outbox, verdict: Verdict) -> None:
    """Apply a rule's change to the row, keeping what it replaced (JSON is reassigned, not mutated)."""
    extra = dict(row.extra or {})
    if verdict.body is not None:
        extra.update(original_text=row.body_text, changed=verdict.reason)
        row.body_text = verdict.body
    if verdict.template:
        extra.update(template={"content_sid": verdict.template}, unsent_text=row.body_text, changed=verdict.reason)
        # The thread's history must say what the customer got: the template, not the reply.
        row.body_text = f"[WhatsApp template {verdict.template}: {OUTSIDE_WINDOW}, the drafted reply was not sent]"
    row.extra = extra
    log.info("text %s: %s", row.id, verdict.reason)


def to_outbound(row: Outbox) -> Outbound:
    return Outbound(outbox_id=row.id, recipient=row.recipient, subject=row.subject, body_text=row.body_text,
                    message_id=row.message_id, automatic=row.automatic,
                    extra=dict(row.extra or {}, channel=row.channel))


def refuse(session: Session, settings, row: Outbox, reason: str, *, to_owner: bool = False) -> None:
    outbox.mark_failed(session=session, outbox_id=row.id, error=reason, permanent=True)
    log.warning("text %s (%s) not sent: %s", row.id, row.kind, reason)
    if to_owner and row.kind in CUSTOMER_KINDS and row.draft_id is not None:
        return_to_owner(session, settings, row.draft_id, reason)


def return_to_owner(session: Session, settings, draft_id: int, reason: str) -> Draft | None:
    """The draft waits for the owner again, with the reason, and the owner hears of it as for any
    held draft. Also for a WhatsApp 63016 that arrives later in a status callback."""
    from responder.owner_mail import notify_held
    draft = session.get(Draft, draft_id)
    if draft is None or draft.status not in (DraftStatus.QUEUED, DraftStatus.APPROVED, DraftStatus.PENDING):
        return None
    was_pending = draft.status == DraftStatus.PENDING
    if draft.route not in approvals.HELD:
        draft.route = Route.REVIEW
    draft.status = DraftStatus.PENDING
    if reason not in (draft.reasons or []):
        draft.reasons = [*(draft.reasons or []), reason]
    approvals.record(session, draft, "returned", "system", reason)
    if not was_pending:
        notify_held(session, settings, draft)
    return draft


# --- after Twilio answered -----------------------------------------------------------------------

def deliver(ctx, sender: TwilioSender, item: Outbound, channel: str) -> None:
    try:
        receipt = sender.send(item, channel=channel)
    except UncertainDelivery as exc:  # an UnknownOutcome: marked unknown, never retried
        record_result(ctx, item, error=exc)
    except PermanentError as exc:
        if exc.code == 63016 and not item.extra.get("template"):
            retry = after_window_closed(ctx, item, str(exc))
            if retry is not None:
                deliver(ctx, sender, retry, channel)
            return
        if exc.code == 21610:
            with ctx.db.transaction() as session:
                identity = optout.phone_identity(session, normalize_phone(item.recipient))
                if identity is not None:
                    optout.apply(session, identity, "stop")
            exc = PermanentError(f"{OPTED_OUT} (Twilio error 21610)", code=exc.code)
        record_result(ctx, item, error=exc)
    except TransientError as exc:
        record_result(ctx, item, error=exc)
    else:
        record_result(ctx, item, provider_id=receipt.provider_id)


def after_window_closed(ctx, item: Outbound, error: str) -> Outbound | None:
    """Twilio refused free text with 63016: the template instead (returned to send now, within
    the same claim: the refused try sent nothing), or the row fails and the draft goes back."""
    with ctx.db.transaction() as session:
        row = session.get(Outbox, item.outbox_id)
        verdict = window_closed(ctx.settings.twilio.whatsapp_template_sid.strip(), error)
        if row.kind not in CUSTOMER_KINDS or not verdict.send:
            refuse(session, ctx.settings, row, verdict.reason, to_owner=True)
            return None
        rewrite(row, verdict)
        return to_outbound(row)

"""Mail to the owner about one held draft: the notification at once, and the reminder later.

Runs in two places: ``notify_held`` inside the pipeline's transaction, right after a draft is
held for review or handed off (per ``[approvals] notify``); ``send_reminders`` as a daemon job
that first expires stale drafts, then reminds the owner once about each draft waiting longer
than ``[approvals] remind_after_hours``. Both only write outbox rows (kinds ``notify`` and
``remind``, one per draft); the send job delivers them like any other mail. With
``[twilio] owner_sms`` set, a handoff also texts the owner at once (kind ``notify_sms``, one per
draft, delivered by the text send job ``responder.send.texting``).

Every such mail carries the draft's unguessable token twice, in the subject (``[ref TOKEN]``)
and in our Message-ID, because a reply to it is accepted only from the owner's address *and*
with that token (``responder.owner.owner_replies`` finds it with ``find_refs``). The digest uses the
same helpers.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlmodel import Session, select

from channels.email.compose import clean_header
from responder.core.clock import utcnow
from responder.core.models import Customer, Draft, Message, Outbox, OutboxKind, Route
from responder.core.settings import Settings
from responder.core.templating import render
from responder.core.text import normalize_phone, sms_segments
from responder.owner import approvals, links
from responder.send import outbox
from responder.send.outbox import owner_message_id

log = logging.getLogger("deskhand.owner_mail")

# A token is ``secrets.token_urlsafe(18)``: 24 characters of [A-Za-z0-9_-]. It is found as
# "[ref TOKEN]" in a subject (any case of "ref") or inside our Message-IDs, which a reply
# carries in In-Reply-To / References: <deskhand.draft.TOKEN.HEX@domain>, <deskhand.digest.…>.
_TOKEN = r"[A-Za-z0-9_-]{20,64}"
REF_RE = re.compile(rf"\[(?i:ref)\s+({_TOKEN})\]|deskhand\.(?:draft|digest)\.({_TOKEN})\.[0-9a-f]+@")
SUBJECT_MAX = 70  # of the customer's subject quoted in ours; phones cut long subjects anyway
SMS_KIND = OutboxKind.NOTIFY_SMS  # the handoff text to [twilio] owner_sms
SMS_SNIPPET = 80  # characters of the customer's words in it


def find_refs(text: str) -> list[str]:
    """Every token in ``text`` (a subject, a References header), first seen first, no repeats."""
    found: list[str] = []
    for match in REF_RE.finditer(text or ""):
        token = match.group(1) or match.group(2)
        if token not in found:
            found.append(token)
    return found


# --- what the owner sees of one draft (shared with the digest) ----------------------------------

@dataclass
class DraftView:
    """One held draft as the owner's mails show it; every string is raw (templates escape)."""
    id: int
    token: str
    route: str
    customer: str          # "Jamie Rivera <jamie@…>" or just the address / number
    customer_short: str    # the name, else the address: for subjects
    channel: str
    subject: str
    message: str           # the customer's new words (quotes stripped)
    draft: str             # the bot's draft; may be empty for a handoff
    reasons: list[str]
    waiting: str           # "5 h", "2 days"; empty when just held
    since: str             # shop-local time the draft was made
    approve: str
    edit: str
    reject: str
    mailto: str            # a prepared email reply: subject with the token, body "approve"
    newer: int = 0         # customer messages after this one: the draft may no longer fit
    number: int | None = None  # its number in the digest


def draft_view(session: Session, settings: Settings, draft: Draft, *, now: datetime | None = None,
               number: int | None = None, limit: int = 3000) -> DraftView:
    """``limit``: characters of the message and of the draft shown (the digest shows less, so a
    long queue stays under Gmail's ~100 KB clipping)."""
    now = now or utcnow()
    message = session.get(Message, draft.message_id)
    customer = session.get(Customer, message.customer_id) if message.customer_id else None
    name = " ".join((customer.name if customer else "").split())
    address = message.sender or "unknown sender"
    display = name or address
    return DraftView(
        id=draft.id, token=draft.token, route=draft.route,
        customer=f"{name} <{address}>" if name else address, customer_short=display,
        channel=message.channel, subject=" ".join((message.subject or "").split()),
        message=clip(message.new_text or message.text or "", limit), draft=clip(draft.text or "", limit),
        reasons=[plain_reason(r) for r in draft.reasons or []] or ["Held for your review"],
        waiting=duration(waited) if (waited := (now - draft.created_at).total_seconds()) >= 60 else "",
        since=local_time(settings, draft.created_at),
        approve=links.draft_link(settings, draft.id, "approve", draft.token),
        edit=links.draft_link(settings, draft.id, "edit", draft.token),
        reject=links.draft_link(settings, draft.id, "reject", draft.token),
        mailto=reply_mailto(settings, display, draft.token),
        newer=len(approvals.newer_messages(session, draft)), number=number)


def reply_mailto(settings: Settings, customer: str, token: str) -> str:
    """A mailto: link that opens a reply to us naming the draft (RFC 6068: percent-encoded)."""
    subject = clean_header(f"Re: [Deskhand] draft for {customer} [ref {token}]")
    return f"mailto:{quote(settings.reply_address, safe='@')}?subject={quote(subject, safe='')}&body=approve"


def plain_reason(reason: str) -> str:
    """Stored reasons are already plain words (``responder.decide.routing``); start with a capital."""
    text = " ".join(reason.split())
    return text[:1].upper() + text[1:]


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} days"


def local_time(settings: Settings, moment: datetime) -> str:
    """"Tue 4 Mar, 14:05" in the shop's timezone."""
    local = moment.astimezone(settings.tz)
    return f"{local:%a} {local.day} {local:%b}, {local:%H:%M}"


def clip(text: str, limit: int = 3000) -> str:
    """A long text is cut in the mail (the whole of it is one click away, on the Edit page)."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " […]"


def short(text: str, limit: int = SUBJECT_MAX) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


# --- notification and reminder ------------------------------------------------------------------

def notify_held(session: Session, settings: Settings, draft: Draft) -> Outbox | None:
    """Email the owner about a draft just held, if ``[approvals] notify`` asks for it (and text
    them about a handoff when ``[twilio] owner_sms`` is set). Returns the email's row."""
    mode = settings.approvals.notify
    if mode == "none" or (mode == "handoff" and draft.route != Route.HANDOFF):
        return None
    if draft.route == Route.HANDOFF:
        notify_by_sms(session, settings, draft)
    if not settings.owner_address:
        return None
    return _enqueue(session, settings, draft, OutboxKind.NOTIFY)


def notify_by_sms(session: Session, settings: Settings, draft: Draft) -> Outbox | None:
    """A short text to ``[twilio] owner_sms`` about a handoff; one per draft, None if not wanted."""
    cfg = settings.twilio
    if not (cfg.enabled and cfg.owner_sms.strip()):
        return None
    number = normalize_phone(cfg.owner_sms)
    if not number:
        log.warning("[twilio] owner_sms is not a phone number in E.164 (+15550100000): no text to the owner")
        return None
    if session.exec(select(Outbox.id).where(Outbox.draft_id == draft.id, Outbox.kind == SMS_KIND)).first():
        return None
    return outbox.enqueue(session=session, draft_id=draft.id, thread_id=None, channel="sms", kind=SMS_KIND,
                          recipient=number, subject="", body_text=owner_sms_text(session, settings, draft),
                          message_id=owner_message_id(settings, "draft", draft.token), automatic=False)


def owner_sms_text(session: Session, settings: Settings, draft: Draft) -> str:
    """'Deskhand: Jamie Rivera needs you: "…" Queue: <url>', within ``[tone] sms_max_segments``:
    the customer's words are cut (GSM-7 "..." rather than "…", which would make it UCS-2)."""
    message = session.get(Message, draft.message_id)
    customer = session.get(Customer, message.customer_id) if message.customer_id else None
    who = " ".join((customer.name if customer else "").split()) or message.sender or "a customer"
    words = " ".join((message.new_text or message.text or "").split())
    url = f"{settings.base_url}/queue/{draft.id}"
    for limit in range(SMS_SNIPPET, -1, -10):
        snippet = words if len(words) <= limit else words[:limit - 3].rstrip() + "..." if limit >= 10 else ""
        text = f'Deskhand: {who[:40]} needs you: "{snippet}" Queue: {url}' if snippet else \
            f"Deskhand: {who[:40]} needs you. Queue: {url}"
        if sms_segments(text) <= settings.tone.sms_max_segments:
            return text
    return text


def send_reminders(ctx) -> int:
    """Daemon job: expire stale drafts, then remind once about old pending ones. Returns reminders."""
    settings = ctx.settings
    with ctx.db.transaction() as session:
        expired = approvals.expire_stale(session, settings)
        if expired:
            log.info("%d draft(s) expired after %g days without a decision", expired,
                     settings.approvals.expire_days)
        if not settings.owner_address:
            return 0  # nobody to remind; the drafts wait in the queue (and still expire)
        sent = 0
        for draft in approvals.due_reminders(session, settings):
            if _enqueue(session, settings, draft, OutboxKind.REMIND) is not None:
                sent += 1
            draft.reminded_at = utcnow()
            approvals.record(session, draft, "reminded", "system",
                             f"reminder emailed after {settings.approvals.remind_after_hours:g} hours")
    if sent:
        log.info("reminded the owner about %d waiting draft(s)", sent)
    return sent


def _enqueue(session: Session, settings: Settings, draft: Draft, kind: str) -> Outbox | None:
    """One ``kind`` mail per draft (the outbox's unique (draft_id, kind)); None if it exists."""
    if session.exec(select(Outbox.id).where(Outbox.draft_id == draft.id, Outbox.kind == kind)).first():
        return None
    view = draft_view(session, settings, draft)
    values = dict(d=view, store=settings.store, base_url=settings.base_url, kind=kind,
                  handoff=draft.route == Route.HANDOFF, expire_days=f"{settings.approvals.expire_days:g}")
    if kind == OutboxKind.REMIND:
        label = f"Reminder, waiting {view.waiting or 'since ' + view.since}"
    else:
        label = "Handed off to you" if draft.route == Route.HANDOFF else "Draft to approve"
    subject = f"[Deskhand] {label}: draft for {short(view.customer_short, 40)}"
    if view.subject:
        subject += f' - "{short(view.subject)}"'
    # The subject ends with the token: a reply keeps it ("Re: …") and so names the draft.
    subject = f"{clean_header(subject)} [ref {draft.token}]"
    return outbox.enqueue(
        session=session, draft_id=draft.id, thread_id=None, channel="email", kind=kind,
        recipient=settings.owner_address, subject=subject,
        body_text=render(f"owner/{kind}.txt.j2", **values).strip() + "\n",
        body_html=render(f"owner/{kind}.html.j2", **values),
        message_id=owner_message_id(settings, "draft", draft.token), automatic=False,
        extra={"auto_generated": True})

"""Cost and abuse limits: the daily LLM budget, the hourly cap on automatic replies, the loop breaker.

Runs inside the pipeline's transaction, as facts for two of its steps: before drafting
(``budget_note``: is today's model budget spent? then the offline drafter writes the draft and
it waits for the owner) and before routing (``hourly_note``, ``loop_note``: the routing table
holds the draft for review with that reason). The per-sender burst limit and the per-thread and
per-sender daily caps live in ``responder.understand.bursts`` and ``responder.decide.routing``.

When a limit is first reached the owner is told once (``tell_owner``): an ``Alert`` row, unique
on (kind, key), then one mail to ``[digest] to``. The unique row is what makes it "once", also
with several daemons on one PostgreSQL racing to raise the same alert.

Budget accounting: each draft stores the tokens its model call actually used and their price
(``outcome.record_usage``); the day's spend is their sum in the shop's timezone. A call is not
made when the spend plus the last call's cost would pass the budget, so the overshoot is at most
one call per daemon process.
"""
from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from responder.core.clock import utcnow
from responder.core.models import OWNER_KINDS, Alert, Draft, Message, Outbox, OutboxKind
from responder.core.settings import Settings
from responder.send import outbox

log = logging.getLogger("deskhand.limits")

MIN_FINGERPRINT_CHARS = 30   # shorter texts ("thanks", "hi", "STOP") are alike by nature, not loops
_URL = re.compile(r"https?://\S+|www\.\S+", re.I)
_NOT_WORD = re.compile(r"[^a-z]+")


# --- the daily LLM budget ----------------------------------------------------------------------

def day_start(settings: Settings, now: datetime | None = None) -> datetime:
    """Midnight of the shop's current day, as an aware UTC instant."""
    local = (now or utcnow()).astimezone(settings.tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def llm_spent_today(session: Session, settings: Settings, now: datetime | None = None) -> float:
    total = session.exec(select(func.coalesce(func.sum(Draft.llm_cost), 0.0))
                         .where(Draft.created_at >= day_start(settings, now))).one()
    return float(total or 0.0)


def budget_note(session: Session, settings: Settings, now: datetime | None = None) -> str | None:
    """Why the model may not be called now, or None. Only a priced model counts."""
    llm = settings.llm
    budget = llm.daily_budget_usd
    if not budget or llm.provider == "offline" or not (llm.price_input_per_mtok or llm.price_output_per_mtok):
        return None
    spent = llm_spent_today(session, settings, now)
    last = session.exec(select(Draft.llm_cost).where(Draft.llm_cost > 0)
                        .order_by(col(Draft.id).desc()).limit(1)).first() or 0.0
    if spent + last <= budget:
        return None
    note = f"today's LLM budget (${budget:.2f}) is spent (${spent:.2f}): drafted offline"
    day = (now or utcnow()).astimezone(settings.tz).date().isoformat()
    tell_owner(session, settings, kind="budget", key=day,
               subject=f"Today's LLM budget of ${budget:.2f} is spent",
               body=(f"Deskhand has spent ${spent:.2f} on the language model today ({day}), the cap set in "
                     f"[llm] daily_budget_usd. Until midnight ({settings.store.timezone}) replies are drafted "
                     "offline and wait for your approval. Raise the cap in settings.toml if this is expected."))
    return note


# --- the hourly cap on automatic replies ----------------------------------------------------

def hourly_note(session: Session, settings: Settings, now: datetime | None = None) -> str | None:
    cap = settings.routing.max_auto_replies_per_hour
    if not cap:
        return None  # 0: no cap
    now = now or utcnow()
    sent = session.exec(select(func.count()).select_from(Outbox).where(
        Outbox.automatic == True, Outbox.created_at >= now - timedelta(hours=1),  # noqa: E712
        col(Outbox.kind).not_in(OWNER_KINDS))).one()
    if sent < cap:
        return None
    tell_owner(session, settings, kind="hourly", key=now.strftime("%Y-%m-%dT%H"),
               subject=f"{sent} automatic replies in the last hour: the rest wait for you",
               body=(f"Deskhand sent {sent} automatic replies in the last hour, the cap set in [routing] "
                     "max_auto_replies_per_hour. Further drafts wait for your approval until the hour's count "
                     "drops. A sudden rush is worth a look: a mail loop or a spam run looks like this."))
    return f"{sent} automatic replies in the last hour (cap {cap})"


# --- the loop breaker ------------------------------------------------------------------------

def fingerprint(text: str) -> str | None:
    """Equal for near-identical texts: case, digits, punctuation, links and spacing ignored."""
    words = _NOT_WORD.sub(" ", _URL.sub(" ", (text or "").lower())).split()
    norm = " ".join(words)
    if len(norm) < MIN_FINGERPRINT_CHARS:
        return None
    return hashlib.sha1(norm.encode()).hexdigest()


def loop_note(session: Session, settings: Settings, message: Message, now: datetime | None = None) -> str | None:
    """Pause automatic sending while near-identical messages pour in (a loop with another robot,
    a spam run). Returns the reason while a pause is on, None otherwise."""
    now = now or utcnow()
    routing = settings.routing
    # A site chat's visitors asking the same popular question is no loop (each visitor and address
    # has its own caps, responder/web/chat_api.py): chat messages are not counted, only paused.
    message.fingerprint = fingerprint(message.new_text or message.text) if message.channel != "chat" else None
    active = session.exec(select(Alert).where(Alert.kind == "loop", col(Alert.until) > now)
                          .order_by(col(Alert.until).desc()).limit(1)).first()
    if active is None and message.fingerprint:
        session.flush()
        since = now - timedelta(minutes=routing.loop_window_minutes)
        alike = session.exec(select(func.count()).select_from(Message).where(
            Message.direction == "in", Message.fingerprint == message.fingerprint,
            Message.received_at >= since)).one()
        if alike >= routing.loop_threshold:
            bucket = int(now.timestamp() // (routing.loop_pause_minutes * 60))
            until = now + timedelta(minutes=routing.loop_pause_minutes)
            sample = " ".join((message.new_text or message.text).split())[:300]
            tell_owner(session, settings, kind="loop", key=f"{message.fingerprint[:24]}:{bucket}", until=until,
                       subject=f"Automatic replies paused: {alike} near-identical messages",
                       body=(f"{alike} near-identical messages arrived within {routing.loop_window_minutes:g} "
                             f"minutes, which looks like a mail loop or a spam run. Automatic replies are paused "
                             f"for {routing.loop_pause_minutes:g} minutes; drafts wait for your approval "
                             f"meanwhile.\n\nThe message:\n  {sample}"))
            active = session.exec(select(Alert).where(Alert.kind == "loop", col(Alert.until) > now)
                                  .order_by(col(Alert.until).desc()).limit(1)).first()
    if active is None:
        return None
    until = active.until.astimezone(settings.tz).strftime("%H:%M")
    return f"automatic replies paused until {until}: near-identical messages keep arriving (loop breaker)"


# --- telling the owner once ------------------------------------------------------------------

def tell_owner(session: Session, settings: Settings, *, kind: str, key: str, subject: str, body: str,
               until: datetime | None = None) -> bool:
    """Record the alert and mail the owner, once per (kind, key). True if this call raised it."""
    try:
        with session.begin_nested():
            session.add(Alert(kind=kind, key=key[:64], detail=body, until=until))
            session.flush()
    except IntegrityError:
        return False  # raised already, by this process or another
    log.warning("%s", subject)
    if settings.owner_address:
        outbox.enqueue(session=session, draft_id=None, thread_id=None, channel="email", kind=OutboxKind.NOTIFY,
                       recipient=settings.owner_address, subject=f"[Deskhand] {subject}",
                       body_text=f"{body}\n\n--\nDeskhand · {settings.base_url}\n",
                       message_id=outbox.owner_message_id(settings, "alert", kind),
                       automatic=False, extra={"auto_generated": True})
    return True


def recent_alerts(session: Session, *, since: datetime) -> list[Alert]:
    return list(session.exec(select(Alert).where(Alert.created_at >= since).order_by(col(Alert.id))).all())

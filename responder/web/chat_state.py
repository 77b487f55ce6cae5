"""The chat visitor's side of the database: their session, what they sent, what they were answered.

Called by the chat edge (``responder/web/chat_api.py``), each function one short transaction.
Everything a visitor reads is selected by their own address (``ChatSession.sender``), never by
thread or customer: after their email links them to a customer with other conversations, the
panel still shows this chat only, and one visitor can never reach another's rows.

The cursor a panel holds is ``"<message id>.<outbox id>.<typing 0|1>"``: inbound rows after the
first, replies after the second (kept below any reply not yet final, so one sent late is not
skipped), and the typing state the panel last saw, so a change of it alone ends a long poll.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from channels.chat.visitor import Refused, hours_note, new_visitor, origin_of, token_hash
from responder.core.clock import as_utc, utcnow
from responder.core.models import (
    ChatSession,
    Draft,
    DraftStatus,
    Feedback,
    Identity,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Route,
)
from responder.core.settings import Settings
from responder.ops.context import Context
from responder.owner.feedback import FeedbackError, record_vote

SEEN_EVERY = timedelta(seconds=15)  # last_seen_at is written at most this often per visitor
FINAL = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.UNKNOWN)
UNSENT = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.RETRY)
MAX_ITEMS = 200  # one answer's items; the panel asks again from the new cursor for the rest


@dataclass(frozen=True)
class Visitor:
    id: int
    sender: str
    email: str
    seen_at: datetime | None = None  # when the panel was last marked open


@dataclass
class View:
    items: list[dict] = field(default_factory=list)
    cursor: str = "0.0.0"
    typing: bool = False
    offer_person: bool = False
    handed_off: bool = False
    email: str = ""
    hours_note: str = ""

    def as_json(self) -> dict:
        return dict(items=self.items, cursor=self.cursor, typing=self.typing, offer_person=self.offer_person,
                    handed_off=self.handed_off, email=self.email, hours_note=self.hours_note)


def parse_cursor(value: str | None) -> tuple[int, int, bool]:
    parts = (value or "").split(".")
    try:
        m, o, t = (int(p) for p in (parts + ["0", "0", "0"])[:3])
    except ValueError:
        return 0, 0, False
    return max(m, 0), max(o, 0), bool(t)


def start(ctx: Context, origin: str) -> str:
    """A new visitor: the token for the widget (only its hash is stored)."""
    token, hashed, sender = new_visitor()
    with ctx.db.transaction() as session:
        session.add(ChatSession(token_hash=hashed, sender=sender, origin=origin[:200]))
    return token


def visitor(ctx: Context, token: str) -> Visitor:
    with ctx.db.read() as session:
        row = session.exec(select(ChatSession).where(ChatSession.token_hash == token_hash(token))).first()
        if row is None:
            raise Refused(401, "This chat has expired; reload the page to start a new one.")
        return Visitor(id=row.id, sender=row.sender, email=row.email,
                       seen_at=as_utc(row.last_seen_at) if row.last_seen_at else None)


def post(ctx: Context, who: Visitor, text: str, client_id: str | None) -> dict:
    """Store the visitor's message (accept-then-process: the process job answers it). A retry
    with the same ``client_id`` stores nothing new."""
    provider_id = f"{who.sender}:{client_id or '~' + secrets.token_hex(8)}"
    try:
        with ctx.db.transaction() as session:
            found = session.exec(select(Message.id).where(Message.channel == "chat",
                                                          Message.provider_id == provider_id)).first()
            if found is not None:
                return {"id": f"in-{found}", "client_id": client_id, "new": False}
            message = Message(channel="chat", direction="in", provider_id=provider_id, sender=who.sender, text=text)
            session.add(message)
            session.flush()
            return {"id": f"in-{message.id}", "client_id": client_id, "new": True}
    except IntegrityError:  # the same retry, stored by a parallel request a moment ago
        with ctx.db.read() as session:
            found = session.exec(select(Message.id).where(Message.channel == "chat",
                                                          Message.provider_id == provider_id)).one()
            return {"id": f"in-{found}", "client_id": client_id, "new": False}


def leave_email(ctx: Context, who: Visitor, email: str) -> bool:
    """Keep the address for answers by mail. Unless the visitor's customer already has an email,
    it is also said in the chat ("My email is …"), so the pipeline's linking step emails a code
    that joins this chat to that address's customer once typed here (``decide.linking``): an
    address alone proves nothing, so it never links by itself. True when that message was stored."""
    with ctx.db.transaction() as session:
        row = session.get(ChatSession, who.id)
        changed, row.email = row.email != email, email
        customer = session.exec(select(Message.customer_id).where(
            Message.channel == "chat", Message.sender == who.sender, col(Message.customer_id).is_not(None))).first()
        known = customer is not None and session.exec(select(Identity.id).where(
            Identity.customer_id == customer, Identity.kind == "email")).first() is not None
    if not changed or known:
        return False
    return post(ctx, who, f"My email is {email}", "email-" + hashlib.sha256(email.encode()).hexdigest()[:16])["new"]


def vote(ctx: Context, who: Visitor, rate: str, value: str, comment: str) -> str:
    """A thumbs up or down on one of this visitor's automatic answers."""
    try:
        draft_id = int(rate.removeprefix("d-")) if isinstance(rate, str) and rate.startswith("d-") else 0
    except ValueError:
        draft_id = 0
    with ctx.db.transaction() as session:
        owner = session.exec(select(Message.sender).join(Draft, Draft.message_id == Message.id)
                             .where(Draft.id == draft_id)).first()
        if owner != who.sender:
            raise Refused(404, "That answer isn't in this chat.")
        try:
            return record_vote(session, draft_id, value, comment if isinstance(comment, str) else "").vote
        except FeedbackError as exc:
            raise Refused(400, str(exc)) from None


def view(ctx: Context, who: Visitor, cursor: str | None, *, present: bool = True) -> View:
    """What the panel shows after ``cursor``; ``present``: and the visitor marked present (a long
    poll's first read does it, not each read after a wake-up)."""
    after_in, after_out, _ = parse_cursor(cursor)
    settings = ctx.settings
    if present:
        seen(ctx, who)
    with ctx.db.read() as session:
        inbound = session.exec(select(Message.id, Message.text, Message.received_at, Message.provider_id)
                               .where(Message.channel == "chat", Message.sender == who.sender,
                                      Message.direction == "in", Message.id > after_in)
                               .order_by(col(Message.id)).limit(MAX_ITEMS)).all()
        rows = session.exec(select(Outbox).where(Outbox.channel == "chat", Outbox.recipient == who.sender,
                                                 col(Outbox.kind).in_([OutboxKind.REPLY, OutboxKind.HOLDING]),
                                                 Outbox.id > after_out)
                            .order_by(col(Outbox.id)).limit(MAX_ITEMS)).all()
        sent = [r for r in rows if r.status == OutboxStatus.SENT]
        votes = dict(session.exec(select(Feedback.draft_id, Feedback.vote).where(
            col(Feedback.draft_id).in_([r.draft_id for r in sent if r.draft_id is not None]))).all()) if sent else {}
        rateable = set(session.exec(select(Draft.id).where(
            col(Draft.id).in_([r.draft_id for r in sent if r.draft_id]), Draft.route == Route.AUTO)).all()) \
            if sent else set()
        pending = [r.id for r in rows if r.status not in FINAL]
        last_out = (min(pending) - 1) if pending else (rows[-1].id if rows else after_out)
        out = View(email=who.email, hours_note=hours_note(settings.chat.hours, utcnow(), settings.tz))
        out.items = [{"id": f"in-{i}", "role": "visitor", "text": text, "at": as_utc(at).isoformat(),
                      "client_id": client_id_of(provider)}
                     for i, text, at, provider in inbound]
        out.items += [{"id": f"out-{r.id}", "role": "shop", "text": r.body_text,
                       "at": as_utc(r.sent_at or r.created_at).isoformat(),
                       "kind": "holding" if r.kind == OutboxKind.HOLDING else "reply" if r.automatic else "owner",
                       "rate": f"d-{r.draft_id}" if r.draft_id in rateable and r.kind == OutboxKind.REPLY else None,
                       "vote": votes.get(r.draft_id)} for r in sent]
        out.items.sort(key=lambda item: item["at"])
        out.typing = typing(session, who.sender)
        out.handed_off, frustrated = waiting_for_owner(session, who.sender)
        asked = session.exec(select(func.count()).select_from(Message).where(
            Message.channel == "chat", Message.sender == who.sender, Message.direction == "in")).one()
        out.offer_person = not out.handed_off and (asked >= settings.chat.offer_person_after or frustrated)
        last_in = inbound[-1][0] if inbound else after_in
        out.cursor = f"{last_in}.{last_out}.{int(out.typing)}"
        return out


def client_id_of(provider_id: str) -> str | None:
    """The widget's id of a message: ``chat:<visitor>:<client id>`` ("~…": the server made one up)."""
    given = provider_id.split(":", 2)[-1]
    return None if not given or given.startswith("~") else given


def seen(ctx: Context, who: Visitor) -> None:
    """Mark the visitor's panel open; written at most every ``SEEN_EVERY`` (a poll's read stays a
    read: on SQLite a write waits for the one writer, the process job)."""
    now = utcnow()
    if who.seen_at is not None and now - who.seen_at < SEEN_EVERY:
        return
    with ctx.db.transaction() as session:
        session.exec(update(ChatSession).where(ChatSession.id == who.id).values(last_seen_at=now))


def typing(session: Session, sender: str) -> bool:
    """A message of theirs not answered yet: still being processed, or its reply on its way."""
    waiting = session.exec(select(Message.id).where(
        Message.channel == "chat", Message.sender == sender, Message.direction == "in",
        Message.status == MessageStatus.RECEIVED).limit(1)).first()
    if waiting is not None:
        return True
    return session.exec(select(Outbox.id).where(
        Outbox.channel == "chat", Outbox.recipient == sender, col(Outbox.status).in_(UNSENT),
        col(Outbox.kind).in_([OutboxKind.REPLY, OutboxKind.HOLDING])).limit(1)).first() is not None


def waiting_for_owner(session: Session, sender: str) -> tuple[bool, bool]:
    """(a draft of theirs waits for the owner, their latest message read as frustrated)."""
    latest = session.exec(select(Draft.status, Draft.signals).join(Message, Draft.message_id == Message.id)
                          .where(Message.channel == "chat", Message.sender == sender)
                          .order_by(col(Draft.id).desc()).limit(5)).all()
    held = any(status == DraftStatus.PENDING for status, _ in latest)
    frustrated = bool(latest and (latest[0][1] or {}).get("is_frustrated"))
    return held, frustrated


def allowed_origins(settings: Settings, own: str) -> set[str]:
    """The shop's pages ([chat] allowed_origins) and the daemon's own address (its demo page)."""
    return set(settings.chat.allowed_origins) | {o for o in (own, origin_of(settings.web.public_url)) if o}

"""All tables, in one module (the FastAPI template's layout).

A "queue" here is a status column plus an index, not a separate mechanism:
- ``message.status``: received -> processed, or quarantined after N failed attempts;
- ``draft.route``: auto | review | handoff | ignore (why: ``draft.reasons``);
- ``outbox.status``: queued -> sending -> sent, or retry / failed / unknown.

Unique constraints make intake idempotent: one row per (channel, provider id), one per IMAP
(mailbox, UIDVALIDITY, UID), one draft per inbound message and one outbox row per draft and
kind (the reply, and the holding message a handed-off customer gets at once).
Timestamps are aware UTC datetimes (see ``responder.core.clock``).
"""
from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from responder.core.clock import utcnow


def new_token() -> str:
    return secrets.token_urlsafe(18)


class MessageStatus:
    RECEIVED = "received"        # stored raw, waiting to be processed
    PROCESSED = "processed"      # has exactly one draft with a route
    QUARANTINED = "quarantined"  # failed max_process_attempts times; reason in last_error


class Route:
    AUTO = "auto"        # send now
    REVIEW = "review"    # approval queue
    HANDOFF = "handoff"  # needs the owner
    IGNORE = "ignore"    # no reply; reasons say why
    THROTTLED = "throttled"  # part of a burst: kept as context for the next reply, not answered alone
    ALL = (AUTO, REVIEW, HANDOFF, IGNORE, THROTTLED)


class DraftStatus:
    QUEUED = "queued"      # auto: handed to the outbox
    PENDING = "pending"    # waiting for the owner
    APPROVED = "approved"  # the owner said send (maybe edited): handed to the outbox
    SENT = "sent"          # approved and delivered
    REJECTED = "rejected"
    EXPIRED = "expired"    # waited longer than [approvals] expire_days; never sent
    CLOSED = "closed"      # ignore: nothing to do


class OutboxStatus:
    QUEUED = "queued"
    SENDING = "sending"  # handed to the channel; a crash here leaves it for `unknown`
    SENT = "sent"
    RETRY = "retry"      # transient failure; next_attempt_at says when
    FAILED = "failed"    # permanent failure or out of attempts; shown to the owner
    UNKNOWN = "unknown"  # crashed while sending: may or may not have gone out; never re-sent


class OutboxKind(StrEnum):
    """What an outbox row is; the channel and the send rules treat each kind its own way."""
    REPLY = "reply"            # the answer to a customer's message (automatic or approved)
    HOLDING = "holding"        # "a person will get back to you" while the owner looks
    LINK_CODE = "link_code"    # a sign-in code emailed to link a customer's texts and email
    NOTIFY = "notify"          # to the owner: a draft was held
    REMIND = "remind"          # to the owner: a held draft still waits
    CONFIRM = "confirm"        # to the owner: what their emailed command did
    DIGEST = "digest"          # to the owner: the daily digest
    NOTIFY_SMS = "notify_sms"  # to the owner's phone: a handoff


CUSTOMER_KINDS = (OutboxKind.REPLY, OutboxKind.HOLDING)  # part of a customer's conversation
OWNER_KINDS = (OutboxKind.NOTIFY, OutboxKind.REMIND, OutboxKind.CONFIRM, OutboxKind.DIGEST, OutboxKind.NOTIFY_SMS)
SIDE_KINDS = OWNER_KINDS + (OutboxKind.LINK_CODE,)  # not part of any customer's thread


class Customer(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Identity(SQLModel, table=True):
    """One way to reach a customer: an email address, a phone number, a WhatsApp number."""
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identity_kind_value"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    kind: str = Field(max_length=16)  # email | phone | whatsapp
    value: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow)
    # The customer texted STOP (or Twilio refused with 21610): nothing is ever sent to this number.
    opted_out_at: Optional[datetime] = None


class Thread(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=16)
    subject: str = ""
    subject_key: str = Field(default="", index=True)  # normalized subject, for the fallback
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("channel", "provider_id", name="uq_message_provider"),
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_message_imap_uid"),
        Index("ix_message_status_next", "status", "next_attempt_at"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)  # email | sms | whatsapp
    direction: str = Field(max_length=3)  # in | out
    provider_id: str = Field(max_length=998)  # Message-ID, or a content hash when it has none
    thread_id: Optional[int] = Field(default=None, foreign_key="thread.id", index=True)
    customer_id: Optional[int] = Field(default=None, foreign_key="customer.id", index=True)
    # IMAP origin (email only): which mailbox, UIDVALIDITY and UID it came from.
    mailbox: Optional[str] = Field(default=None, max_length=512)
    uidvalidity: Optional[int] = Field(default=None, sa_column=Column(BigInteger))  # 32-bit unsigned
    uid: Optional[int] = Field(default=None, sa_column=Column(BigInteger))
    imap_flagged: bool = False   # our keyword set on the original after the row was committed
    imap_answered: bool = False  # \Answered set on the original after the reply went out
    sender: str = ""
    recipient: str = ""
    subject: str = ""
    raw: Optional[bytes] = Field(default=None, sa_column=Column(LargeBinary))
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    new_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    in_reply_to: Optional[str] = Field(default=None, max_length=998)
    references: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    received_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default=MessageStatus.RECEIVED, max_length=16)
    burst: bool = False  # arrived in a burst: held until it ends, then answered together
    attempts: int = 0
    next_attempt_at: Optional[datetime] = None
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text))
    processed_at: Optional[datetime] = None
    # Content fingerprint of the customer's words (responder.decide.limits): near-identical messages
    # share it, which is how the loop breaker counts them.
    fingerprint: Optional[str] = Field(default=None, max_length=40, index=True)
    dismissed_at: Optional[datetime] = None  # the owner has dealt with this quarantined message


class Draft(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("message_id", name="uq_draft_message"),
                      Index("ix_draft_route_status", "route", "status"),
                      Index("ix_draft_created_at", "created_at"))  # today's model spend
    id: Optional[int] = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id")
    thread_id: Optional[int] = Field(default=None, foreign_key="thread.id", index=True)
    route: str = Field(max_length=16)
    status: str = Field(max_length=16)
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    confidence: Optional[float] = None
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    signals: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    backend: str = ""
    knowledge_version: str = Field(default="", max_length=64)  # which knowledge it was drafted from
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: Optional[datetime] = None
    # The owner's side (responder.owner.approvals): ``text`` stays the bot's draft; what was sent after
    # an edit is ``sent_text``. ``token`` is the unguessable reference an approval email must carry.
    token: str = Field(default_factory=new_token, max_length=64, unique=True, index=True)
    sent_text: Optional[str] = Field(default=None, sa_column=Column(Text))
    edited: bool = False
    decided_by: str = Field(default="", max_length=320)
    reminded_at: Optional[datetime] = None
    no_match: bool = False  # retrieval found nothing for the question: a hint for a new FAQ entry
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    llm_cost: float = 0.0   # USD, from [llm] price settings


class Outbox(SQLModel, table=True):
    # The per-thread, per-sender and hourly caps count recent rows for every message routed: without
    # these, each count read the whole table (bench/backlog.py: slower with every 1,000 replies).
    __table_args__ = (UniqueConstraint("draft_id", "kind", name="uq_outbox_draft_kind"),
                      Index("ix_outbox_status_next", "status", "next_attempt_at"),
                      Index("ix_outbox_thread_created", "thread_id", "created_at"),
                      Index("ix_outbox_recipient_created", "recipient", "created_at"),
                      Index("ix_outbox_created_at", "created_at"))
    id: Optional[int] = Field(default=None, primary_key=True)
    # None for mail to the owner that belongs to no draft (the digest).
    draft_id: Optional[int] = Field(default=None, foreign_key="draft.id")
    # reply | holding (to the customer); notify | remind | confirm | digest (to the owner)
    kind: str = Field(default=OutboxKind.REPLY, max_length=16)  # an OutboxKind
    thread_id: Optional[int] = Field(default=None, foreign_key="thread.id")
    channel: str = Field(max_length=16)
    recipient: str = Field(max_length=320)
    subject: str = ""
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    in_reply_to: Optional[str] = Field(default=None, max_length=998)
    references: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    message_id: str = Field(max_length=998)  # our own Message-ID, fixed before the first try
    automatic: bool = True  # sent without the owner: carries Auto-Submitted (RFC 3834)
    status: str = Field(default=OutboxStatus.QUEUED, max_length=16)
    attempts: int = 0
    next_attempt_at: Optional[datetime] = None
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text))
    provider_id: Optional[str] = Field(default=None, max_length=998, index=True)  # Twilio's MessageSid
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: Optional[datetime] = None
    # Optional HTML body (else built from body_text) and extras for the channel: feedback links,
    # inline images as {"cid", "content_type", "data" (base64)}.
    body_html: Optional[str] = Field(default=None, sa_column=Column(Text))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Twilio status callbacks after the API accepted it: queued | sent | delivered | failed | undelivered.
    delivery_status: str = Field(default="", max_length=16)
    delivery_error: Optional[str] = Field(default=None, max_length=200)  # e.g. "30007: carrier filtered"
    dismissed_at: Optional[datetime] = None  # the owner has dealt with this failed/unknown send


class MailboxCursor(SQLModel, table=True):
    """Where IMAP intake stands in one mailbox: RFC 3501 UIDs are only stable per UIDVALIDITY."""
    __table_args__ = (UniqueConstraint("mailbox", name="uq_cursor_mailbox"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=512)  # user@host:port/folder
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Mail received before this instant is never answered (first-start cut-off).
    since: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DraftEvent(SQLModel, table=True):
    """Every change of a held draft, with who and when (the approval queue's audit trail)."""
    id: Optional[int] = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    action: str = Field(max_length=24)   # approved | edited | rejected | expired | sent | reminded | refused
    actor: str = Field(default="", max_length=320)  # "owner (web)", "owner (email)", "cli", "system"
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    """A customer's thumbs up or down on an automatic reply (one vote per draft; the last counts)."""
    __table_args__ = (UniqueConstraint("draft_id", name="uq_feedback_draft"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id")
    thread_id: Optional[int] = Field(default=None, foreign_key="thread.id")
    vote: str = Field(max_length=4)   # up | down
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)
    seen_at: Optional[datetime] = None  # the owner has looked at it (shown in the digest until then)


class UsedLink(SQLModel, table=True):
    """Nonces of signed one-click links already used: a link works once."""
    __table_args__ = (UniqueConstraint("nonce", name="uq_usedlink_nonce"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    nonce: str = Field(max_length=64)
    purpose: str = Field(default="", max_length=32)
    used_at: datetime = Field(default_factory=utcnow)


class Lesson(SQLModel, table=True):
    """What an owner's edit teaches: a proposed addition to the knowledge folder."""
    id: Optional[int] = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    kind: str = Field(max_length=16)         # faq | example
    path: str = Field(max_length=255)        # file in the knowledge folder, e.g. faq.md
    addition: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    diff: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default="proposed", max_length=16)  # proposed | accepted | dismissed
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: Optional[datetime] = None


class Digest(SQLModel, table=True):
    """One daily digest per shop day: what it listed, so a reply to it can name a draft by number."""
    __table_args__ = (UniqueConstraint("day", name="uq_digest_day"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    day: str = Field(max_length=10)          # YYYY-MM-DD in the shop's timezone
    token: str = Field(default_factory=new_token, max_length=64, unique=True, index=True)
    draft_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    outbox_id: Optional[int] = Field(default=None, foreign_key="outbox.id")
    created_at: datetime = Field(default_factory=utcnow)


class OwnerSetting(SQLModel, table=True):
    """Small owner-side values kept in the database (the web password's hash)."""
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    updated_at: datetime = Field(default_factory=utcnow)


class CustomerLink(SQLModel, table=True):
    """A customer who texts says which email address is theirs; linked once they confirm the code
    sent to that address (so nobody can read another customer's history by naming their email)."""
    id: Optional[int] = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)  # the one who asked
    email: str = Field(max_length=320)
    code_hash: str = Field(default="", max_length=128)
    status: str = Field(default="pending", max_length=16)  # pending | linked | expired
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: Optional[datetime] = None


class Alert(SQLModel, table=True):
    """Something the owner is told about once (responder.decide.limits): the LLM budget spent today, the
    loop breaker tripped, the hourly cap reached. (kind, key) is unique, so several daemons
    racing to raise the same alert raise it once; ``until`` is when a pause ends."""
    __table_args__ = (UniqueConstraint("kind", "key", name="uq_alert_kind_key"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)      # budget | loop | hourly
    key: str = Field(max_length=64)       # the shop day, or the loop's fingerprint and window
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    until: Optional[datetime] = None


class OrderCheck(SQLModel, table=True):
    """One order lookup a customer's message caused (responder.orders.step): who asked, about which
    order, and whether they proved it was theirs. Wrong guesses per sender per hour are counted
    from these rows, so the limit holds across daemons."""
    __table_args__ = (Index("ix_ordercheck_sender_at", "sender", "at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    message_id: Optional[int] = Field(default=None, foreign_key="message.id")
    sender: str = Field(max_length=320)          # the address or number the reply goes to
    order_number: str = Field(default="", max_length=64)
    intent: str = Field(default="", max_length=40)  # what the customer wants: "where the order is", "a cancellation" …
    # verified | asked (details requested) | mismatch (wrong number/email pair, or not theirs) |
    # limited (too many wrong guesses) | unavailable (the source failed)
    outcome: str = Field(max_length=16)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    at: datetime = Field(default_factory=utcnow)


class ChatSession(SQLModel, table=True):
    """A visitor of the chat widget on the shop's site (channels/chat): the widget holds a random
    token and only its hash is kept here. ``sender`` is the visitor's address inside Deskhand
    ("chat:" + a random id): their messages' sender and the replies' recipient, so a visitor
    reads only the rows with their own sender, never another's."""
    id: Optional[int] = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    sender: str = Field(max_length=40, unique=True, index=True)
    origin: str = Field(default="", max_length=200)       # the page's origin when it started
    email: str = Field(default="", max_length=320)        # left by the visitor: answers by mail when away
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: Optional[datetime] = None               # the panel last asked for news (open if recent)

"""Intake: store what arrived, idempotently, before anything else happens (Zulip's gateway).

Runs at the edge, inside the poll job's transaction. Only the raw bytes and the few header
fields needed for de-duplication are read here; parsing and drafting happen later in the
process job, so a message that breaks the parser is still stored, retried and, at worst,
quarantined with its error — never lost. The same Message-ID or IMAP UID is never stored twice.

Nothing a sender writes may stop intake: the Message-ID is cleaned to what every database can
hold (PostgreSQL refuses NUL in text, and one refused row used to fail the whole batch, so the
poller retried the same UID forever), and a row the database still refuses is stored again as
bare bytes, already quarantined with the reason, for the owner to see.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy.exc import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlmodel import Session, select

from channels.twilio.webhook import InboundText
from responder.core.clock import as_utc, utcnow
from responder.core.models import Message, MessageStatus

log = logging.getLogger("deskhand.intake")
_ID = re.compile(r"<([^<>\s]+)>")
_UNSTORABLE = re.compile(r"[\x00-\x20\x7f\ud800-\udfff]+")  # controls, blanks, lone surrogates


def message_id_of(raw: bytes) -> str:
    """The Message-ID without brackets, or a content hash for mail that has none."""
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(raw[:256 * 1024]).get("Message-ID")
        value = _UNSTORABLE.sub("", str(value or ""))
    except Exception:
        value = ""
    match = _ID.search(value)
    if match:
        return match.group(1)[:900]
    if value.strip():
        return value[:900]
    return content_id(raw)


def content_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def store_inbound_email(*, session: Session, raw: bytes, mailbox: str, uidvalidity: int, uid: int,
                        received_at: datetime | None = None) -> Message | None:
    """Store one fetched email; ``None`` when it is already stored (same UID or Message-ID)."""
    try:
        with session.begin_nested():  # a refusal rolls back this message only, not the batch
            return _store(session, raw, mailbox, uidvalidity, uid, received_at)
    except IntegrityError:  # another daemon on the same mailbox stored it a moment ago
        return None
    except (OperationalError, InterfaceError):  # the database itself: the poller retries the batch
        raise
    except (StatementError, ValueError, TypeError, OverflowError, UnicodeError) as exc:
        return _store_unstorable(session, raw, mailbox, uid, exc)


def _store(session: Session, raw: bytes, mailbox: str, uidvalidity: int, uid: int,
           received_at: datetime | None) -> Message | None:
    if session.exec(select(Message.id).where(Message.mailbox == mailbox, Message.uidvalidity == uidvalidity,
                                              Message.uid == uid)).first():
        return None
    provider_id = message_id_of(raw)
    if session.exec(select(Message.id).where(Message.channel == "email",
                                              Message.provider_id == provider_id)).first():
        return None
    message = Message(channel="email", direction="in", provider_id=provider_id, mailbox=mailbox,
                      uidvalidity=uidvalidity, uid=uid, raw=raw,
                      received_at=as_utc(received_at) if received_at else utcnow())
    session.add(message)
    session.flush()
    return message


def _store_unstorable(session: Session, raw: bytes, mailbox: str, uid: int, exc: Exception) -> Message | None:
    """The row the database refused, kept as bytes only: quarantined at once with the reason."""
    provider_id = content_id(raw)
    if session.exec(select(Message.id).where(Message.channel == "email",
                                              Message.provider_id == provider_id)).first():
        return None
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
    log.error("message UID %s of %s could not be stored as it came (%s); kept quarantined", uid, mailbox, reason)
    message = Message(channel="email", direction="in", provider_id=provider_id, raw=raw,
                      mailbox=_UNSTORABLE.sub("", mailbox)[:512], status=MessageStatus.QUARANTINED,
                      last_error=f"could not be stored as it came ({type(exc).__name__}: {reason}); "
                                 f"kept as raw bytes, not processed", received_at=utcnow())
    with session.begin_nested():
        session.add(message)
    return message


def store_inbound_text(*, session: Session, channel: str, sender: str, text: str, provider_id: str,
                       received_at: datetime | None = None, recipient: str = "",
                       attachments: Sequence[dict] = ()) -> Message | None:
    """Store one text message (SMS, WhatsApp); ``None`` when that provider id is already stored.
    Everything goes into the one INSERT: a webhook's transaction is a check, an insert, a commit."""
    if session.exec(select(Message.id).where(Message.channel == channel,
                                              Message.provider_id == provider_id)).first():
        return None
    message = Message(channel=channel, direction="in", provider_id=provider_id[:900], sender=sender[:320],
                      recipient=recipient, attachments=list(attachments), text=text.replace("\x00", ""),
                      received_at=as_utc(received_at) if received_at else utcnow())
    session.add(message)
    session.flush()
    return message


def store_record(*, session: Session, record: InboundText, received_at=None) -> Message | None:
    """Store one inbound text with its recipient and media; None when its MessageSid is stored."""
    return store_inbound_text(session=session, channel=record.channel, sender=record.sender, text=record.text,
                              provider_id=record.provider_id, received_at=received_at, recipient=record.recipient,
                              attachments=record.attachments)

"""Intake: store what arrived, idempotently, before anything else happens (Zulip's gateway).

Runs at the edge, inside the poll job's transaction. Only the raw bytes and the few header
fields needed for de-duplication are read here; parsing and drafting happen later in the
process job, so a message that breaks the parser is still stored, retried and, at worst,
quarantined with its error — never lost. The same Message-ID or IMAP UID is never stored twice.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlmodel import Session, select

from responder.clock import as_utc, utcnow
from responder.models import Message

_ID = re.compile(r"<([^<>\s]+)>")


def message_id_of(raw: bytes) -> str:
    """The Message-ID without brackets, or a content hash for mail that has none."""
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(raw[:256 * 1024]).get("Message-ID")
        value = str(value or "")
    except Exception:
        value = ""
    match = _ID.search(value)
    if match:
        return match.group(1)[:900]
    if value.strip():
        return re.sub(r"\s+", "", value)[:900]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def store_inbound_email(*, session: Session, raw: bytes, mailbox: str, uidvalidity: int, uid: int,
                        received_at: datetime | None = None) -> Message | None:
    """Store one fetched email; ``None`` when it is already stored (same UID or Message-ID)."""
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


def store_inbound_text(*, session: Session, channel: str, sender: str, text: str, provider_id: str,
                       received_at: datetime | None = None) -> Message | None:
    """Store one text message (SMS, WhatsApp); ``None`` when that provider id is already stored."""
    if session.exec(select(Message.id).where(Message.channel == channel,
                                              Message.provider_id == provider_id)).first():
        return None
    message = Message(channel=channel, direction="in", provider_id=provider_id[:900], sender=sender[:320],
                      text=text.replace("\x00", ""), received_at=as_utc(received_at) if received_at else utcnow())
    session.add(message)
    session.flush()
    return message

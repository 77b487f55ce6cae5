"""Twilio intake without a public URL: a scheduled job lists new inbound texts through the REST API.

Runs in the daemon's Twilio poll job when ``[twilio] mode = "poll"`` (every ``poll_interval_s``);
the webhook (``responder/web/twilio_hooks.py``) is the other way in. Both end in ``store_record``,
idempotent on (channel, MessageSid), so a message listed twice, or both posted and listed, is
stored once. Per number (SMS ``sms_from``, WhatsApp ``whatsapp:`` + ``whatsapp_from``) a
``MailboxCursor`` ("twilio:<number>") keeps ``since``: every message sent before it is stored.

- First start: only messages from now on (like IMAP's first start), never the backlog.
- Each poll lists everything sent since the cursor (Twilio filters by day; we filter the rest),
  every page, oldest first, and stores the new ones and the advanced cursor in ONE transaction:
  a failure on any page stores nothing and moves nothing, so no message is lost between pages.
- The cursor stops ``SETTLE`` short of now: a message Twilio lists a few seconds late is still
  picked up by the next poll (and de-duplicated if it was not late after all).
- A refused login (401/403) is a ``ConfigError``; network trouble and Twilio 5xx/429 are a
  ``TransientError`` (the job logs it and tries again on its next run).
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

from sqlmodel import Session, select

from channels.twilio.webhook import MAX_MEDIA, InboundText, inbound_text
from responder.clock import as_utc, utcnow
from responder.errors import ConfigError, TransientError
from responder.intake import store_inbound_text
from responder.models import MailboxCursor, Message

log = logging.getLogger("deskhand.twilio")
SETTLE = timedelta(minutes=2)
API_BASE = "https://api.twilio.com"


def store_record(*, session: Session, record: InboundText, received_at=None) -> Message | None:
    """Store one inbound text with its recipient and media; None when its MessageSid is stored."""
    return store_inbound_text(session=session, channel=record.channel, sender=record.sender, text=record.text,
                              provider_id=record.provider_id, received_at=received_at, recipient=record.recipient,
                              attachments=record.attachments)


def watched_numbers(settings) -> list[str]:
    cfg = settings.twilio
    numbers = [cfg.sms_from] if cfg.sms_from else []
    if cfg.whatsapp_from:
        numbers.append("whatsapp:" + cfg.whatsapp_from)
    return numbers


def poll_twilio(ctx, client=None) -> int:
    """One pass over every watched number; returns how many new messages were stored."""
    cfg = ctx.settings.twilio
    if cfg.mode != "poll" or not cfg.enabled:
        return 0
    if client is None:
        from channels.twilio.client import make_client
        client = make_client(ctx.settings)
    return sum(poll_number(ctx, client, number) for number in watched_numbers(ctx.settings))


def poll_number(ctx, client, number: str) -> int:
    key = "twilio:" + number
    with ctx.db.transaction() as session:
        cursor = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == key)).first()
        if cursor is None:
            session.add(MailboxCursor(mailbox=key, uidvalidity=0, last_uid=0, since=utcnow()))
            log.info("watching %s through the Twilio API from now on (earlier texts are left alone)", number)
            return 0
        # Twilio's date_sent has whole seconds (RFC 2822): compare at that precision.
        since = as_utc(cursor.since).replace(microsecond=0)
    listed_at = utcnow()
    records = fetch_inbound(client, number, since, ctx.settings)
    stored = 0
    with ctx.db.transaction() as session:
        for record, sent_at in records:
            if store_record(session=session, record=record, received_at=sent_at) is not None:
                stored += 1
        cursor = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == key)).one()
        newest = max((sent_at for _, sent_at in records), default=since)
        cursor.since = max(as_utc(cursor.since), min(newest, listed_at - SETTLE))
        cursor.updated_at = utcnow()
    if stored:
        log.info("stored %d new text(s) sent to %s", stored, number)
    return stored


def fetch_inbound(client, number: str, since, settings) -> list[tuple[InboundText, object]]:
    """Every inbound message to ``number`` sent since ``since`` (all pages, media included),
    oldest first, with its send time; or a clear error and nothing."""
    from twilio.base.exceptions import TwilioException
    try:
        listed = [m for m in client.messages.list(to=number, date_sent_after=since, page_size=100)
                  if str(m.direction or "").startswith("inbound") and m.date_sent and as_utc(m.date_sent) >= since]
        listed.sort(key=lambda m: (as_utc(m.date_sent), m.sid))
        return [(to_record(client, m, settings), as_utc(m.date_sent)) for m in listed]
    except TwilioException as exc:
        status, detail = refusal_of(exc)
        if status in (401, 403):
            raise ConfigError(f"Twilio refused the account SID or auth token ({status}): check [twilio] "
                              f"account_sid and the variable named by [twilio] auth_token_env.") from None
        if status:
            raise TransientError(f"listing texts sent to {number} failed: Twilio answered {status} ({detail})",
                                 code=status) from None
        raise TransientError(f"listing texts sent to {number} failed: {exc}") from None
    except OSError as exc:  # requests' connection errors and timeouts
        raise TransientError(f"listing texts sent to {number} failed: {exc}") from None


def refusal_of(exc) -> tuple[int | None, str]:
    """Twilio's HTTP status and message: a ``TwilioRestException`` carries them; a page that could
    not be listed raises a plain ``TwilioException("Unable to fetch page", response)``."""
    if getattr(exc, "status", None):
        return exc.status, str(getattr(exc, "msg", "") or exc)
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if status is None:
        return None, str(exc)
    try:
        detail = json.loads(response.text).get("message") or ""
    except (ValueError, AttributeError):
        detail = ""
    return status, detail or str(response.text)[:200]


def to_record(client, message, settings) -> InboundText:
    return inbound_text(sid=message.sid, sender=message.from_ or "", recipient=message.to or "",
                        body=message.body or "", media=media_of(client, message, settings))


def media_of(client, message, settings) -> list[dict]:
    """Every media item of a message, as the webhook's MediaUrlN would name it."""
    try:
        count = int(message.num_media or 0)
    except (TypeError, ValueError):
        count = 0
    if not count:
        return []
    base = (settings.twilio.api_base_url or API_BASE).rstrip("/")
    items = client.messages(message.sid).media.list(limit=MAX_MEDIA)
    return [{"url": base + str(item.uri).removesuffix(".json"), "content_type": item.content_type or ""}
            for item in items[:MAX_MEDIA]]

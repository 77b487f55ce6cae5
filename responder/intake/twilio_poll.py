"""Twilio intake without a public URL: a scheduled job lists new inbound texts through the REST API.

The daemon's Twilio poll job, run when ``[twilio] mode = "poll"`` (every ``poll_interval_s``);
the webhook (``responder/web/twilio_hooks.py``) is the other way in. Both end in ``store.store_record``,
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

import logging
from datetime import timedelta

from sqlmodel import select

from channels.twilio.client import make_client
from channels.twilio.poll import fetch_inbound, watched_numbers
from responder.core.clock import as_utc, utcnow
from responder.core.models import MailboxCursor
from responder.intake.store import store_record

log = logging.getLogger("deskhand.twilio")
SETTLE = timedelta(minutes=2)


def poll_twilio(ctx, client=None) -> int:
    """One pass over every watched number; returns how many new messages were stored."""
    cfg = ctx.settings.twilio
    if cfg.mode != "poll" or not cfg.enabled:
        return 0
    if client is None:
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

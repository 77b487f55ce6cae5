"""Normalize: the first pipeline step, one stored message -> the fields every later step reads.

Email is parsed from its raw bytes (MIME, charsets, quoted history, RFC 3834 automated-mail
rules); a text message (SMS, WhatsApp, the site chat) already is its text. Either way the result is written on
the ``Work`` record: who to answer, their name, the subject, the new text and the full text,
and — for mail from a machine — the reason it gets no reply.
"""
from __future__ import annotations

import dataclasses

from channels.email.autoreply import automated_verdict, reply_address
from channels.chat.visitor import SENDER_PREFIX
from channels.email.parse import parse_email
from responder.core.settings import Settings
from responder.core.text import clean, normalize_phone


def normalize_email(work, settings: Settings) -> None:
    msg, parsed = work.message, parse_email(work.message.raw or b"")
    address = clean(reply_address(parsed))
    if len(address) > 320:  # RFC 5321 §4.5.3.1: no real mailbox is longer
        address = ""
    domain = settings.reply_address.rpartition("@")[2].lower() or None
    # The RFC 3834 rules read the message as it came (From, not the contact form's Reply-To).
    work.automated, failed = automated_verdict(parsed, own_addresses=settings.own_addresses,
                                               own_message_id_domain=domain)
    work.unchecked.extend(failed)
    parsed = dataclasses.replace(parsed, message_id=clean(parsed.message_id, 900) or None,
                                 in_reply_to=clean(parsed.in_reply_to, 900) or None,
                                 references=[clean(r, 900) for r in parsed.references[-50:]])
    work.sender, work.sender_name = address, clean(parsed.from_name, 200)
    work.subject, work.full_text = clean(parsed.subject, 1000), clean(parsed.text)
    work.text = clean(parsed.new_text) or work.full_text
    work.message_id, work.in_reply_to, work.references = parsed.message_id, parsed.in_reply_to, parsed.references
    if not work.automated and not address:
        work.automated = "no sender address to reply to"
    msg.sender = address
    msg.recipient = clean(", ".join(parsed.to_addresses), 1000)
    msg.subject, msg.text, msg.new_text = work.subject, work.full_text, work.text
    msg.in_reply_to, msg.references = parsed.in_reply_to, list(parsed.references)
    msg.attachments = [dict(filename=clean(a.filename, 255) or None, content_type=clean(a.content_type, 100),
                            size=a.size, sha256=a.sha256) for a in parsed.attachments[:100]]
    work.notes.extend(parsed.defects[:5])


def normalize_text_message(work, settings: Settings) -> None:
    msg = work.message
    if msg.channel == "chat":  # the widget's visitor, "chat:<random id>" (channels.chat.visitor)
        work.sender = msg.sender if msg.sender.startswith(SENDER_PREFIX) else ""
    else:
        work.sender = normalize_phone(msg.sender)
    work.full_text = work.text = clean(msg.text or msg.new_text, 20_000)
    msg.new_text = work.text
    if not work.sender:
        work.automated = f"the sender {msg.sender[:40]!r} is not a phone number or chat visitor"


def normalize(work, settings: Settings) -> None:
    if work.message.channel == "email":
        normalize_email(work, settings)
    else:
        normalize_text_message(work, settings)

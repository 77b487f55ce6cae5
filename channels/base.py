"""The channel interface (after Chatwoot's ``SendOnChannelService``).

A channel delivers one outbound message and returns a receipt with the provider's id, or raises
``TransientError`` (try again later), ``PermanentError`` (never) or ``UnknownOutcome`` (handed
over, answer lost: maybe delivered, so never retried). Shared checks — already sent,
caps, at-most-once bookkeeping — live once, in ``responder.outbox``; a channel only delivers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from responder.errors import PermanentError, TransientError, UnknownOutcome


@dataclass(frozen=True)
class Outbound:
    """What the outbox hands a channel: everything needed to deliver, nothing to decide."""
    outbox_id: int
    recipient: str
    subject: str
    body_text: str
    message_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    automatic: bool = True
    body_html: str | None = None  # else the channel builds HTML from body_text
    # feedback: {"up": url, "down": url}; images: [{"cid", "content_type", "data" (base64)}];
    # auto_generated: True for mail to the owner (RFC 3834 "auto-generated", not a reply)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    provider_id: str
    detail: str = ""


__all__ = ["Outbound", "Receipt", "TransientError", "PermanentError", "UnknownOutcome"]

"""Twilio's REST API, read: list the inbound texts sent to one of our numbers since a moment.

The adapter behind the Twilio poll job (``responder.intake.twilio_poll``), used when ``[twilio]
mode = "poll"`` (no public URL for the webhook). ``fetch_inbound`` returns every inbound message
since a moment, all pages, media included, oldest first, or a clear error and nothing: a refused
login (401/403) is a ``ConfigError``; network trouble and Twilio 5xx/429 are a ``TransientError``.
Nothing here touches the database.
"""
from __future__ import annotations

import json
import logging

from twilio.base.exceptions import TwilioException

from channels.twilio.webhook import MAX_MEDIA, InboundText, inbound_text
from responder.core.clock import as_utc
from responder.core.errors import ConfigError, TransientError
from responder.core.settings import Settings

log = logging.getLogger("deskhand.twilio")
API_BASE = "https://api.twilio.com"


def watched_numbers(settings: Settings) -> list[str]:
    cfg = settings.twilio
    numbers = [cfg.sms_from] if cfg.sms_from else []
    if cfg.whatsapp_from:
        numbers.append("whatsapp:" + cfg.whatsapp_from)
    return numbers


def fetch_inbound(client, number: str, since, settings: Settings) -> list[tuple[InboundText, object]]:
    """Every inbound message to ``number`` sent since ``since`` (all pages, media included),
    oldest first, with its send time; or a clear error and nothing."""
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


def to_record(client, message, settings: Settings) -> InboundText:
    return inbound_text(sid=message.sid, sender=message.from_ or "", recipient=message.to or "",
                        body=message.body or "", media=media_of(client, message, settings))


def media_of(client, message, settings: Settings) -> list[dict]:
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

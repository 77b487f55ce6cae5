"""Twilio webhooks, the pure part: is the request Twilio's, and what does its form say.

Runs at the edge, first thing in every Twilio request (``responder/web/twilio_hooks.py`` does the
I/O around it), and in the polling job, which builds the same ``InboundText`` from the REST API.
Nothing here touches the network or the database:

- ``decode_form``: the raw body -> form fields; Twilio sends UTF-8, anything else is refused.
- ``signature_error``: the ``X-Twilio-Signature`` check with the twilio library's
  ``RequestValidator`` over the URL Twilio called (our public URL, never the proxy's inner URL).
  Fail closed: no public URL, no token, no header -> a reason, never a pass.
- ``read_inbound`` / ``read_status``: the fields we keep (Chatwoot's whitelist); the rest is ignored.
- ``is_forward``: status callbacks arrive out of order; a row never moves backwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from responder.core.text import clean, normalize_phone

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_BODY_BYTES = 64 * 1024   # a 1,600-character body with 10 media URLs is well under 16 KB
MAX_MEDIA = 10               # Twilio's limit of media per message (MMS and WhatsApp)
MAX_TEXT = 20_000            # the pipeline reads at most this much (normalize_text_message)


class WebhookRefused(Exception):
    """A request we answer with ``status`` and store nothing for; ``reason`` is logged and returned."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class FormParams(dict):
    """Form fields, each name -> every value sent (``getall`` is what ``RequestValidator`` reads,
    so a repeated field is signed the way Twilio signs it)."""

    def getall(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str, default: str = "") -> str:
        values = self.get(name)
        return values[0] if values else default


def decode_form(body: bytes) -> FormParams:
    """An ``application/x-www-form-urlencoded`` body; bytes that aren't UTF-8 (raw or
    percent-encoded) are refused with 400 rather than guessed at, so a signature never covers
    text we changed."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise WebhookRefused(400, "the form is not UTF-8 (Twilio always sends UTF-8)") from None
    params = FormParams()
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def signed_url(public_url: str, path: str, query: str = "") -> str:
    """The URL Twilio signed: the public base (behind a proxy or tunnel) + the path + the query."""
    return public_url.rstrip("/") + path + (f"?{query}" if query else "")


def signature_error(*, token: str, url: str, params: FormParams, signature: str | None,
                    settings_header: str | None = None) -> str | None:
    """Why the request is not Twilio's, or None when its signature is valid."""
    if settings_header:
        # A Webhook Rule made Twilio sign with a SharedKey (Webhooks configuration API, beta);
        # we only hold the auth token, so we can't check it: refuse rather than guess.
        return ("signed with a Twilio shared key (X-Twilio-Webhooks-Signature-Settings), which Deskhand "
                "does not support: remove the Webhook Rule for this URL so Twilio signs with the auth token")
    if not signature:
        return "no X-Twilio-Signature header"
    if not RequestValidator(token).validate(url, params, signature):
        return f"the X-Twilio-Signature does not match {url} (check [twilio] public_url and the auth token)"
    return None


@dataclass(frozen=True)
class InboundText:
    """One inbound SMS/MMS/WhatsApp message, as stored by ``responder.intake.store.store_inbound_text``."""
    provider_id: str               # MessageSid: Twilio retries webhooks, this makes storing idempotent
    channel: str                   # sms | whatsapp
    sender: str                    # E.164, or the raw From when it is no phone number (kept, then ignored)
    recipient: str = ""
    text: str = ""
    attachments: list[dict] = field(default_factory=list)   # [{"url", "content_type"}], every one
    profile_name: str = ""         # WhatsApp's ProfileName, when sent


def read_media(params: FormParams) -> list[dict]:
    """Every ``MediaUrlN`` (not only the first), up to Twilio's maximum of ten."""
    try:
        count = int(params.first("NumMedia", "0") or 0)
    except ValueError:
        count = 0
    media = []
    for n in range(min(max(count, 0), MAX_MEDIA)):
        url = clean(params.first(f"MediaUrl{n}"), 2000)
        if url:
            media.append({"url": url, "content_type": clean(params.first(f"MediaContentType{n}"), 100)})
    return media


def channel_of(sender: str, path: str = "") -> str:
    return "whatsapp" if sender.lower().startswith("whatsapp:") or path.rstrip("/").endswith("/whatsapp") \
        else "sms"


def inbound_text(*, sid: str, sender: str, recipient: str, body: str, media: list[dict], path: str = "",
                 profile_name: str = "") -> InboundText:
    """The record for one message, from a webhook or from the REST API (same fields, same rules)."""
    return InboundText(provider_id=sid, channel=channel_of(sender, path),
                       sender=normalize_phone(sender) or clean(sender, 320), recipient=normalize_phone(recipient),
                       text=clean(body, MAX_TEXT), attachments=media, profile_name=clean(profile_name, 200))


def message_sid(params: FormParams) -> str:
    """The MessageSid, or 400: it is looked up and stored, so only what a Twilio id can be."""
    sid = (params.first("MessageSid") or params.first("SmsSid")).strip()
    if not sid:
        raise WebhookRefused(400, "missing MessageSid")
    if len(sid) > 64 or not sid.isascii() or not sid.isalnum():
        raise WebhookRefused(400, "MessageSid is not a Twilio message id")
    return sid


def read_inbound(params: FormParams, *, path: str) -> InboundText:
    """The inbound record from a webhook's form; unknown extra fields are ignored."""
    sid = message_sid(params)
    return inbound_text(sid=sid, sender=params.first("From"), recipient=params.first("To"),
                        body=params.first("Body"), media=read_media(params), path=path,
                        profile_name=params.first("ProfileName"))


# --- delivery status callbacks ---------------------------------------------------------------

# Twilio's message statuses in the order they happen; read (WhatsApp) comes after delivered.
STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5,
               "undelivered": 4, "failed": 4, "canceled": 4}
FINAL = {"undelivered", "failed", "canceled"}
# The codes a shop sees most, in words (https://www.twilio.com/docs/api/errors).
ERROR_WORDS = {"30003": "the phone is unreachable or off", "30004": "the message was blocked by the recipient",
               "30005": "unknown number", "30006": "a landline or an unreachable carrier",
               "30007": "the carrier filtered the message", "30008": "unknown delivery error",
               "21610": "the number opted out (STOP)",
               "63016": "outside WhatsApp's 24-hour window: a template is needed"}


@dataclass(frozen=True)
class DeliveryStatus:
    sid: str
    status: str
    error: str | None = None       # "CODE: words", stored on Outbox.delivery_error


def read_status(params: FormParams) -> DeliveryStatus:
    # The sid is checked as for a message (a NUL in it made PostgreSQL fail the lookup: 500), and the
    # error words are cleaned before they are stored.
    sid = message_sid(params)
    status = (params.first("MessageStatus") or params.first("SmsStatus")).strip().lower()
    if status not in STATUS_RANK:
        raise WebhookRefused(400, f"unknown MessageStatus {status[:30]!r}")
    code = clean(params.first("ErrorCode"), 20).strip()
    words = clean(params.first("ErrorMessage"), 200).strip() or ERROR_WORDS.get(code, "")
    error = f"{code}: {words}".rstrip(": ")[:200] if code and code != "0" else None
    return DeliveryStatus(sid=sid, status=status, error=error)


def is_forward(current: str, new: str) -> bool:
    """True when ``new`` is later than ``current`` ("sent" after "delivered" is an old callback)."""
    if not current:
        return True
    if current in FINAL:
        return False
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current, -1)

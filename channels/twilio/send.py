"""Deliver one text (SMS or WhatsApp) through Twilio's Messages API, and say how it failed.

Runs in the send job (``responder.ops.sending``) after the shared rules of ``channels.base.Channel``
have passed: the channel only delivers. ``deliver_now`` builds the ``messages.create`` call (From and
To with ``whatsapp:`` for WhatsApp, the status callback URL when a public URL is known, an
approved template's ``ContentSid`` instead of a body when the row asks for one) and returns the
MessageSid as the receipt. Failures, by what Twilio answered:

- 429 and 5xx, or no connection at all: ``TransientError`` (the outbox retries with backoff);
  401 too (a wrong or rotated auth token is fixed by the owner; the rows wait meanwhile).
- any other 4xx: ``PermanentError`` with Twilio's code on ``.code`` and in the message
  (21211 invalid number, 21610 opted out, 63016 outside WhatsApp's 24-hour window…).
- the request went out but the answer was lost (read timeout, dropped connection): Twilio may
  have created the message, so it is looked up by listing the recipient's recent messages; found,
  it is a receipt; surely absent, a ``TransientError``; unknowable, ``UncertainDelivery`` (the job
  marks the row ``unknown`` rather than risk texting the customer twice).
"""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import requests
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from channels.base import (
    OPTED_OUT,
    Channel,
    Outbound,
    Receipt,
    Refused,
    apply_verdict,
    window_closed,
)
from channels.twilio.client import make_client
from responder.core.errors import (
    DeliveryError,
    PermanentError,
    TransientError,
    UnknownOutcome,
)
from responder.core.models import CUSTOMER_KINDS
from responder.core.settings import Settings
from responder.core.text import normalize_phone

log = logging.getLogger("deskhand.twilio")
CHANNELS = ("sms", "whatsapp")
# Twilio's codes a shop meets most, in words (https://www.twilio.com/docs/api/errors).
WORDS = {21211: "the number is not a valid phone number", 21408: "texting that country is not enabled",
         21610: "the customer opted out (STOP)", 21612: "Twilio can't reach that number from ours",
         21614: "the number can't receive texts", 21617: "the text is over 1,600 characters",
         63016: "outside WhatsApp's 24-hour window: only an approved template may be sent"}
LOOKUP_MARGIN = timedelta(minutes=2)  # clock skew between us and Twilio when matching a lost answer


class UncertainDelivery(UnknownOutcome):
    """The request reached Twilio but its answer didn't, and a lookup couldn't tell: maybe sent."""


def status_callback_url(settings: Settings) -> str | None:
    """Where Twilio posts delivery statuses, when Twilio can reach us (``/twilio/status``)."""
    base = (settings.twilio.public_url or settings.web.public_url or "").strip().rstrip("/")
    return f"{base}/twilio/status" if base else None


def message_params(settings: Settings, outbound: Outbound, channel: str) -> dict:
    """The keyword arguments of ``messages.create`` for one outbound text."""
    cfg = settings.twilio
    number = normalize_phone(outbound.recipient)
    if not number:
        raise PermanentError(f"{outbound.recipient[:40]!r} is not a phone number")
    if channel == "whatsapp":
        if not cfg.whatsapp_from:
            raise PermanentError("[twilio] whatsapp_from is empty: there is no WhatsApp number to send from")
        params = {"to": "whatsapp:" + number,
                  "from_": "whatsapp:" + (normalize_phone(cfg.whatsapp_from) or cfg.whatsapp_from.strip())}
    elif channel == "sms":
        if not cfg.sms_from:
            raise PermanentError("[twilio] sms_from is empty: there is no number to send texts from")
        # An alphanumeric sender ID ("WICKWILLOW") is kept as written.
        params = {"to": number, "from_": normalize_phone(cfg.sms_from) or cfg.sms_from.strip()}
    else:
        raise PermanentError(f"Twilio does not send on channel {channel!r}")
    callback = status_callback_url(settings)
    if callback:
        params["status_callback"] = callback
    template = outbound.extra.get("template")
    if template:
        sid = template if isinstance(template, str) else template.get("content_sid", "")
        params["content_sid"] = sid
        variables = template.get("variables") if isinstance(template, dict) else None
        if variables:
            params["content_variables"] = json.dumps(variables)
    elif outbound.body_text.strip():
        params["body"] = outbound.body_text
    else:
        raise PermanentError("the text is empty")
    return params


def classify(exc: Exception) -> DeliveryError:
    """A Twilio API error -> transient (try again later) or permanent (never), with the code."""
    status = int(getattr(exc, "status", 0) or 0)
    raw_code = getattr(exc, "code", None)
    code = int(raw_code) if str(raw_code).isdigit() else raw_code
    text = str(getattr(exc, "msg", "") or getattr(exc, "detail", "") or getattr(exc, "title", "") or "")
    text = text.removeprefix("Unable to create record: ").strip()
    words = WORDS.get(code) if isinstance(code, int) else None
    said = f"{words} ({text})" if words and text and text.lower() not in words.lower() else words or text
    label = f"Twilio error {code}" if code and code != status else f"Twilio answered {status}"
    if status == 429 or status >= 500:
        return TransientError(f"{label}: {said or 'busy'}; trying again later", code=code)
    if status == 401:
        return TransientError(f"{label}: Twilio refused the account SID or auth token; check [twilio] "
                              "account_sid and the variable named by [twilio] auth_token_env", code=code)
    return PermanentError(f"{label}: {said or 'refused'}", code=code)


def _never_reached(exc: requests.RequestException) -> bool:
    """True when the request surely never reached Twilio (no connection, TLS refused)."""
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError,
                        requests.exceptions.ProxyError, requests.exceptions.InvalidURL)):
        return True
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", inner)
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class TwilioSender(Channel):
    """The text channel (SMS and WhatsApp) for one settings object; the client (and the auth
    token) is read on ``open`` (a missing token is a ``ConfigError`` before any row is claimed)."""

    key = "twilio"

    def __init__(self, settings: Settings, client=None):
        self.settings = settings
        self._client = client

    async def open(self) -> None:
        self.client  # noqa: B018  (reads the auth token now)

    async def deliver(self, outbound: Outbound) -> Receipt:
        """Deliver in a thread (the Twilio client is synchronous). Twilio's 63016 (WhatsApp's
        window closed after all) becomes the approved template, or a refusal back to the owner;
        21610 (the number opted out at the carrier) a refusal the send job records as STOP."""
        try:
            return await asyncio.to_thread(self.deliver_now, outbound)
        except PermanentError as exc:
            if exc.code == 63016 and not outbound.extra.get("template"):
                return await self._after_window_closed(outbound, str(exc))
            if exc.code == 21610:
                raise Refused(f"{OPTED_OUT} (Twilio error 21610)", code=21610) from None
            raise

    async def _after_window_closed(self, outbound: Outbound, error: str) -> Receipt:
        verdict = window_closed(self.settings.twilio.whatsapp_template_sid.strip(), error)
        if outbound.kind not in CUSTOMER_KINDS or not verdict.send:
            raise Refused(verdict.reason, to_owner=True, code=63016)
        templated = apply_verdict(outbound, verdict)
        receipt = await asyncio.to_thread(self.deliver_now, templated)
        return Receipt(provider_id=receipt.provider_id, detail=receipt.detail, sent=templated,
                       notes=(verdict.reason,))

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    def deliver_now(self, outbound: Outbound, *, channel: str | None = None) -> Receipt:
        channel = channel or outbound.channel
        params = message_params(self.settings, outbound, channel)
        # Twilio's clock, not the (maybe frozen) shop clock, dates what Twilio created.
        started = datetime.now(timezone.utc)
        try:
            message = self.client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify(exc) from None
        except requests.RequestException as exc:
            if _never_reached(exc):
                raise TransientError(f"could not reach Twilio ({type(exc).__name__}); trying again later") from None
            return self._find_lost(params, started, exc)
        except TwilioException as exc:
            raise TransientError(f"Twilio client error: {exc}") from None
        return Receipt(provider_id=message.sid,
                       detail=f"{message.status}, {message.num_segments or '?'} segment(s)")

    def _find_lost(self, params: dict, started: datetime, exc: Exception) -> Receipt:
        """The request went out but no answer came back: did Twilio create the message?"""
        what = f"Twilio's answer was lost ({type(exc).__name__})"
        try:
            recent = self.client.messages.list(to=params["to"], from_=params["from_"], limit=20)
        except (TwilioException, requests.RequestException) as lookup:
            raise UncertainDelivery(f"{what} and looking it up failed too ({type(lookup).__name__}): it may "
                                    "or may not have gone out; check before resending") from None
        for message in recent:
            created = message.date_created
            if not str(message.direction or "").startswith("outbound") or not isinstance(created, datetime):
                continue
            if created >= started - LOOKUP_MARGIN and ("body" not in params or message.body == params["body"]):
                log.info("found text %s after a lost answer from Twilio", message.sid)
                return Receipt(provider_id=message.sid, detail=f"{what}; found it by listing recent messages")
        raise TransientError(f"{what}, and Twilio has no such message: trying again later")

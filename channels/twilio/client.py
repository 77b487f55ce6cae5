"""The one place a ``twilio.rest.Client`` is built from settings.

Used by the send job (``channels.twilio.send``) and the poll job (``channels.twilio.poll``).
``[twilio] api_base_url`` points the client at another API host — the loopback fake in tests —
by setting the base URL of the client's ``api`` domain, the attribute every Messages request
(and every next page of a list) is built from; the client's own request building, basic auth
and error parsing stay as they are. Edge/region routing (``TWILIO_EDGE``/``TWILIO_REGION``)
only rewrites twilio.com host names, so it is switched off for such a URL.
"""
from __future__ import annotations

import logging

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from responder.core.errors import ConfigError
from responder.core.settings import Settings

TIMEOUT_S = 15.0
# The library logs every request's URL and query (phone numbers) at INFO; ours stay readable.
_http_log = logging.getLogger("deskhand.twilio.http")
_http_log.setLevel(logging.WARNING)


def make_client(settings: Settings) -> Client:
    """A client for ``[twilio]``; ``ConfigError`` when texting is off or the token is missing."""
    cfg = settings.twilio
    if not cfg.enabled:
        raise ConfigError("[twilio] account_sid is empty, so SMS and WhatsApp are off.")
    # No retries inside requests: a repeated POST could send a text twice; the outbox retries.
    http = TwilioHttpClient(timeout=TIMEOUT_S, logger=_http_log)
    client = Client(cfg.account_sid, cfg.auth_token(), http_client=http)
    base = cfg.api_base_url.strip().rstrip("/")
    if base:
        if not base.startswith(("http://", "https://")):
            raise ConfigError("[twilio] api_base_url must start with http:// or https://.")
        client.api.base_url = base
        client.edge = client.region = None
    return client

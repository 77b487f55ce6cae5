"""The channel registry: which ``Channel`` carries which outbox channel names.

Read by the send job (``responder.ops.sending``). A carrier is one way out that one send worker
drives (email over SMTP; SMS and WhatsApp through Twilio; the site chat); each has its own worker so that an
outage of one never holds up the other. Adding a channel is a module in ``channels/`` (a
``Channel`` subclass that implements ``deliver``) and one line here; the pipeline does not change.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from channels.base import Channel
from channels.chat.send import ChatSender
from channels.email.smtp import SmtpSender
from channels.twilio.send import TwilioSender
from responder.core.settings import Settings


def _mailer(s: Settings) -> Channel | None:
    return SmtpSender(s.email, from_address=s.reply_address, from_name=s.store.name) if s.email.smtp_enabled else None


@dataclass(frozen=True)
class Carrier:
    channels: tuple[str, ...]                      # the outbox rows' channel names it sends
    open: Callable[[Settings], Channel | None]     # None: switched off in the settings


CARRIERS: dict[str, Carrier] = {
    "email": Carrier(("email",), _mailer),
    "texts": Carrier(("sms", "whatsapp"), lambda s: TwilioSender(s) if s.twilio.enabled else None),
    # The site chat: delivered to the visitor's panel, or mailed to one who left an address.
    "chat": Carrier(("chat",), lambda s: ChatSender(shop=s.store.name, mailer=_mailer(s)) if s.chat.enabled else None),
}
TEXTS = CARRIERS["texts"].channels

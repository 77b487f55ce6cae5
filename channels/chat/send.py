"""The chat channel's delivery: a reply reaches the visitor's panel, or their mailbox if they've gone.

Runs in the send job's chat worker (``responder.send.registry``), after the shared rules of
``channels.base``. A reply to a chat visitor is part of their conversation the moment it is
recorded sent: the panel's long poll shows it (``hub`` wakes it in this process; others see it
on their next read). ``facts.present`` says whether the panel asked for news in the last minute.
When it didn't and the visitor left an email address, the reply is also mailed there, through
the mail channel the registry hands in (this module knows no SMTP); with no address, or for a
holding reply ("I've passed this to …", no answer yet), it waits in the conversation for the
visitor's return. Nothing here touches the database.
"""
from __future__ import annotations

import dataclasses

from channels.base import Channel, Outbound, Receipt
from responder.core.errors import PermanentError
from responder.core.models import CUSTOMER_KINDS, OutboxKind

ANSWER_BY_MAIL = ("{text}\n\n-- \nAbout what you asked in the chat on {shop}'s website. "
                  "Reply to this email if there's anything else.")


class ChatSender(Channel):
    key = "chat"

    def __init__(self, *, shop: str, mailer: Channel | None = None):
        self.shop = shop
        self.mailer = mailer  # the email channel, or None when sending mail is off

    async def deliver(self, outbound: Outbound) -> Receipt:
        if outbound.kind not in CUSTOMER_KINDS:
            raise PermanentError(f"a {outbound.kind} message can't go to a chat visitor")
        facts = outbound.facts
        if facts is not None and facts.present:
            return Receipt(provider_id=f"chat:{outbound.outbox_id}", detail="shown in the visitor's open chat")
        email = facts.visitor_email if facts is not None else ""
        if not email or self.mailer is None or outbound.kind == OutboxKind.HOLDING:
            why = "no email address left" if not email else "sending email is off" if self.mailer is None \
                else "a holding reply is not worth an email"
            return Receipt(provider_id=f"chat:{outbound.outbox_id}",
                           detail=f"kept in the chat for the visitor's return (panel closed, {why})")
        mail = dataclasses.replace(outbound, recipient=email, channel="email", facts=None,
                                   subject=f"Your question to {self.shop}",
                                   body_text=ANSWER_BY_MAIL.format(text=outbound.body_text, shop=self.shop))
        async with self.mailer:
            receipt = await self.mailer.deliver(mail)
        return Receipt(provider_id=receipt.provider_id or f"chat:{outbound.outbox_id}",
                       detail=f"emailed to {email}: the visitor's chat was closed")

"""SMTP adapter (aiosmtplib): delivers composed replies over one connection per batch.

STARTTLS or implicit TLS as configured (``[email] smtp_tls``). Errors are sorted the way
Mailman's ``deliver.py`` sorts them: a 4xx reply or a network/TLS failure is transient (the
outbox retries with backoff), a 5xx reply is permanent (the outbox marks the row failed and the
owner sees it). Nothing here touches the database.
"""
from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib

from channels.base import Outbound, Receipt
from channels.email.compose import compose
from responder.errors import PermanentError, TransientError


def _classify(exc: Exception) -> Exception:
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
    text = f"SMTP {code}: {getattr(exc, 'message', exc)}" if code else f"SMTP error: {exc}"
    if isinstance(code, int) and 500 <= code < 600:
        return PermanentError(text, code=code)
    return TransientError(text, code=code)


class SmtpSender:
    """``async with SmtpSender(cfg) as s: await s.send(outbound)`` — one connection, many mails."""

    def __init__(self, email_settings, *, from_name: str, timeout: float = 30):
        self.cfg = email_settings
        self.from_name = from_name
        self.from_address = email_settings.from_address
        context = ssl.create_default_context()
        if not email_settings.tls_verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self.credentials = email_settings.smtp_credentials()
        self.client = aiosmtplib.SMTP(
            hostname=email_settings.smtp_host, port=email_settings.smtp_port, timeout=timeout,
            use_tls=email_settings.smtp_tls == "ssl",
            start_tls=True if email_settings.smtp_tls == "starttls" else False,
            tls_context=context, validate_certs=email_settings.tls_verify)

    async def __aenter__(self) -> "SmtpSender":
        try:
            await self.client.connect()
            # Log in where the server offers AUTH; a local relay (Postfix on localhost) may not.
            if self.credentials and self.client.supports_extension("auth"):
                await self.client.login(*self.credentials)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            # Connecting or logging in failed: a server or settings problem, not this mail's.
            # Transient, so nothing is marked failed while the owner fixes it.
            raise TransientError(f"cannot connect to SMTP {self.cfg.smtp_host}: {exc}") from exc
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.client.quit()
        except Exception:
            self.client.close()

    def build(self, outbound: Outbound) -> EmailMessage:
        try:
            return compose(outbound, from_address=self.from_address, from_name=self.from_name)
        except (ValueError, TypeError) as exc:  # e.g. a recipient that is not an address
            raise PermanentError(f"could not build the email: {exc}") from exc

    async def send(self, outbound: Outbound) -> Receipt:
        message = self.build(outbound)
        try:
            await self.client.send_message(message, sender=self.from_address,
                                           recipients=[outbound.recipient])
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise _classify(exc) from exc
        return Receipt(provider_id=outbound.message_id)

    @property
    def is_connected(self) -> bool:
        return self.client.is_connected

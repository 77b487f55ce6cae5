"""SMTP adapter (aiosmtplib): delivers composed replies over one connection per batch.

STARTTLS or implicit TLS as configured (``[email] smtp_tls``). Errors are sorted the way
Mailman's ``deliver.py`` sorts them: a 4xx reply or a network/TLS failure is transient (the
outbox retries with backoff), a 5xx reply is permanent (the outbox marks the row failed and the
owner sees it). One case is neither: once the DATA phase has begun, a dropped connection or a
timeout means the server may already have the message (RFC 5321 §4.1.1.4: it takes
responsibility when it answers the final ".", and that answer is what got lost), so the send
raises ``UnknownOutcome`` and the outbox marks the row ``unknown`` instead of sending it twice.
Nothing here touches the database.
"""
from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib

from channels.base import Channel, Outbound, Receipt
from channels.email.compose import compose
from responder.core.errors import (
    ConfigError,
    PermanentError,
    TransientError,
    UnknownOutcome,
)

NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError)


def _classify(exc: Exception) -> Exception:
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
    text = f"SMTP {code}: {getattr(exc, 'message', exc)}" if code else f"SMTP error: {exc}"
    if isinstance(code, int) and 500 <= code < 600:
        return PermanentError(text, code=code)
    return TransientError(text, code=code)


def _tls_hint(exc: BaseException, cfg) -> str | None:
    """What to check when connecting failed in TLS (None when TLS was not the problem)."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 5:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    if not (any(isinstance(e, ssl.SSLError) for e in chain) or "SSL" in text or "TLS" in text
            or "upgrading transport" in text):
        return None
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return (f'the server does not speak TLS from the first byte on port {cfg.smtp_port}: '
                'check [email] smtp_tls ("ssl" is for port 465, "starttls" for 587) and smtp_port')
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ("the server's certificate is not trusted (expired, self-signed or for another host "
                "name): fix the certificate on the server; [email] tls_verify = false is for test servers only")
    if "STARTTLS" in text and "not supported" in text:
        return 'the server does not offer STARTTLS: check [email] smtp_tls and smtp_port'
    return "the TLS handshake failed or was cut off: check [email] smtp_tls and smtp_port"


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when DATA begins: past that point the server may have the mail."""

    data_started = False

    async def data(self, message, /, **kwargs):
        self.data_started = True
        return await super().data(message, **kwargs)


class SmtpSender(Channel):
    """The email channel: ``async with SmtpSender(cfg) as s: await s.send(outbound)`` — one
    connection, many mails (``Channel.send`` checks, ``deliver`` hands the mail to SMTP)."""

    def __init__(self, email_settings, *, from_address: str, from_name: str, timeout: float = 30):
        self.cfg = email_settings
        self.from_name = from_name
        if "@" not in (from_address or ""):
            raise ConfigError("no address to send from: set [store] support_email (or [email] from_address)")
        self.from_address = from_address  # Settings.reply_address: [email] from_address, else [store] support_email
        context = ssl.create_default_context()
        if not email_settings.tls_verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self.credentials = email_settings.smtp_credentials()
        self.client = _Client(
            hostname=email_settings.smtp_host, port=email_settings.smtp_port, timeout=timeout,
            use_tls=email_settings.smtp_tls == "ssl",
            start_tls=True if email_settings.smtp_tls == "starttls" else False,
            tls_context=context, validate_certs=email_settings.tls_verify)

    @property
    def where(self) -> str:
        return f"{self.cfg.smtp_host}:{self.cfg.smtp_port}"

    @property
    def key(self) -> str:
        return f"smtp:{self.where}"

    async def open(self) -> None:
        try:
            await self.client.connect()
            # Log in where the server offers AUTH; a local relay (Postfix on localhost) may not.
            # aiosmtplib's connect() leaves the extensions unknown (none sent yet, or cleared by
            # STARTTLS, RFC 3207 §4.2): ask with EHLO first, or AUTH would never be seen.
            if self.credentials:
                await self.client.ehlo()
                if self.client.supports_extension("auth"):
                    await self.client.login(*self.credentials)
        except NETWORK_ERRORS as exc:
            # Connecting, TLS or logging in failed: a server or settings problem, not this mail's.
            # Transient, so nothing is marked failed while the owner fixes it.
            self.client.close()
            hint = _tls_hint(exc, self.cfg)
            if hint:
                raise TransientError(f"TLS with the SMTP server {self.where} failed ({exc}); {hint}") from exc
            raise TransientError(f"cannot connect to SMTP {self.where}: {exc}") from exc

    async def close(self) -> None:
        try:
            await self.client.quit()
        except Exception:
            self.client.close()

    def build(self, outbound: Outbound) -> EmailMessage:
        try:
            return compose(outbound, from_address=self.from_address, from_name=self.from_name)
        except (ValueError, TypeError) as exc:  # e.g. a recipient that is not an address
            raise PermanentError(f"could not build the email: {exc}") from exc

    async def deliver(self, outbound: Outbound) -> Receipt:
        message = self.build(outbound)
        self.client.data_started = False
        try:
            await self.client.send_message(message, sender=self.from_address,
                                           recipients=[outbound.recipient])
        except NETWORK_ERRORS as exc:
            # A reply code is the server's decision either way; silence after DATA began is not.
            if self.client.data_started and not isinstance(exc, aiosmtplib.SMTPResponseException):
                raise UnknownOutcome(
                    f"the SMTP server {self.where} lost the connection after the message was handed "
                    f"over, before confirming it ({type(exc).__name__}: {exc}); it may have been "
                    "delivered, so it is not sent again: check with the customer before resending") from exc
            raise _classify(exc) from exc
        return Receipt(provider_id=outbound.message_id)

    @property
    def is_connected(self) -> bool:
        return self.client.is_connected

"""``python run.py check``: reach every service the settings name, and say exactly what failed.

Runs before the daemon is trusted with a shop: a settings file that parses is not a daemon that
works. Each check connects the way the daemon will (the same adapters), with a short timeout,
and answers one line: the database (migrated), the IMAP mailbox (log in, open the folder), the
SMTP server (connect, TLS, log in), Twilio (list one message with the account's credentials) and
the language model's endpoint (list its models). A service the settings leave off is said to be
off, not checked.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import openai
from twilio.base.exceptions import TwilioException

from channels.email.imap import IMAP_ERRORS, ImapMailbox
from channels.email.smtp import SmtpSender
from channels.twilio.client import make_client
from channels.twilio.send import classify
from responder.core.errors import DeskhandError
from responder.core.settings import Settings

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: switched off in the settings, not checked
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "off "}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


def _failed(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def check_imap(settings: Settings) -> Check:
    cfg = settings.email
    if not cfg.imap_enabled:
        return Check("mailbox (IMAP)", None, "no [email] imap_host: mail is not read")
    where = f"{cfg.username}@{cfg.imap_host}:{cfg.imap_port}"
    try:
        with ImapMailbox(cfg, timeout=TIMEOUT_S) as box:
            state = box.state
    except (DeskhandError, *IMAP_ERRORS) as exc:
        return Check("mailbox (IMAP)", False, f"{where}: {_failed(exc)}")
    return Check("mailbox (IMAP)", True, f"logged in to {where}, {cfg.mailbox} holds {state.exists} message(s)")


def check_smtp(settings: Settings) -> Check:
    cfg = settings.email
    if not cfg.smtp_enabled:
        return Check("sending (SMTP)", None, "no [email] smtp_host: replies are not sent")

    async def connect() -> None:
        async with SmtpSender(cfg, from_address=settings.reply_address, from_name=settings.store.name,
                              timeout=TIMEOUT_S):
            pass
    try:
        asyncio.run(connect())
    except DeskhandError as exc:
        return Check("sending (SMTP)", False, _failed(exc))
    login = f" as {cfg.smtp_credentials()[0]}" if cfg.smtp_credentials() else ""
    return Check("sending (SMTP)", True, f"connected to {cfg.smtp_host}:{cfg.smtp_port}{login}; "
                                         f"replies go out from {settings.reply_address}")


def check_twilio(settings: Settings) -> Check:
    if not settings.twilio.enabled:
        return Check("texts (Twilio)", None, "no [twilio] account_sid: SMS and WhatsApp are off")
    try:
        make_client(settings).messages.list(limit=1)
    except TwilioException as exc:
        return Check("texts (Twilio)", False, _failed(classify(exc)))
    except (DeskhandError, OSError) as exc:
        return Check("texts (Twilio)", False, _failed(exc))
    return Check("texts (Twilio)", True, f"account {settings.twilio.account_sid} answers")


def check_llm(settings: Settings) -> Check:
    cfg = settings.llm
    if cfg.provider != "openai":
        return Check("language model", None, "the offline drafter (no model): nothing to reach")
    try:
        client = openai.OpenAI(base_url=cfg.base_url or None, api_key=os.environ.get(cfg.api_key_env) or "not-needed",
                               timeout=TIMEOUT_S, max_retries=0)
        models = [m.id for m in client.models.list()]
    except openai.APIStatusError as exc:
        return Check("language model", False, f"{cfg.base_url or 'OpenAI'} answered {exc.status_code}: {exc.message}")
    except (openai.APIError, DeskhandError) as exc:
        return Check("language model", False, f"{cfg.base_url or 'OpenAI'}: {_failed(exc)}")
    if cfg.model and models and cfg.model not in models:
        return Check("language model", False, f"{cfg.base_url or 'OpenAI'} has no model {cfg.model!r} "
                                              f"(it has {', '.join(models[:8])})")
    return Check("language model", True, f"{cfg.base_url or 'OpenAI'} answers; model {cfg.model}")


CHECKS = (check_imap, check_smtp, check_twilio, check_llm)


def run_checks(settings: Settings) -> list[Check]:
    return [check(settings) for check in CHECKS]

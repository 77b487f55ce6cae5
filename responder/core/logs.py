"""Plain log lines a shop owner can read, with personal data and secrets redacted.

Zulip's ``redact_email_address`` keeps the domain and hides the person; we do the same for
phone numbers (last two digits kept) so logs can be shared when asking for help. Secrets never
reach a line: the values of the environment variables the settings name (``password_env``,
``api_key_env``, ``secret_env``, ``auth_token_env``) or whose name says they hold one
(``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ``*API_KEY*``), passwords and keys in URLs,
``Basic``/``Bearer`` credentials, ``sk-…`` API keys and the signed tokens of one-click links
(``/a/…``, ``/f/…``, ``/l/…``: whoever has one can use it) all become ``***``.

Redaction happens when a record is made (``logging.setLogRecordFactory``), so every handler
writes redacted lines, also the ones libraries install for themselves (uvicorn's), and a
traceback is redacted once, before any formatter sees it.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
import traceback

from responder.core.settings import Settings

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
# A phone number: "+" and 8-15 digits, or 10-15 digits in the usual groupings. Dates, times,
# IP addresses and ports don't match (no ":" or "/" around, at most one "." separator kind).
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ()\-]{6,18}\d(?!\w)"
                    r"|(?<![\w.:/+-])(?:\(?\d{3}\)?[ .\-]?\d{3}[ .\-]\d{4}|\d{10,15})(?![\w.:/-])")
_CREDENTIALS = [
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@", re.I), r"\1***@"),  # scheme://user:PASSWORD@
    (re.compile(r"([?&][\w.\-]*(?:token|key|secret|passw|sig|auth)[\w.\-]*=)[^&\s#'\"]+", re.I), r"\1***"),
    (re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~\-]{8,}"), r"\1 ***"),       # Authorization headers
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-***"),                          # OpenAI-style keys
    (re.compile(r"(/[afl]/)[A-Za-z0-9_\-.]{20,}"), r"\1***"),                      # signed link tokens
]
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIAL", re.I)
MIN_SECRET = 6          # shorter values would hide ordinary words; no real secret is this short
_named_secrets: set[str] = set()
_factory_installed = False


def watch_secrets(settings: Settings) -> None:
    """Redact the values of the environment variables these settings read secrets from, whatever
    they are called (``password_env = "MY_MAIL_PW"`` included)."""
    for section, key in (("email", "password_env"), ("email", "smtp_password_env"), ("llm", "api_key_env"),
                         ("embeddings", "api_key_env"), ("web", "secret_env"), ("twilio", "auth_token_env")):
        name = getattr(getattr(settings, section, None), key, "")
        if name:
            _named_secrets.add(name)


def _secret_values() -> tuple[str, ...]:
    # Read on every record: a secret set or rotated after start-up is still hidden. Variables
    # ending in _ENV hold a variable's name (DESKHAND_WEB__SECRET_ENV), not a secret.
    values = {value.strip() for name, value in os.environ.items()
              if (name in _named_secrets or (_SECRET_NAME.search(name) and not name.upper().endswith("_ENV")))
              and len(value.strip()) >= MIN_SECRET}
    return tuple(sorted(values, key=lambda v: (-len(v), v)))


@functools.lru_cache(maxsize=4)
def _secrets_pattern(values: tuple[str, ...]) -> re.Pattern | None:
    return re.compile("|".join(re.escape(v) for v in values)) if values else None


def redact(text: str) -> str:
    """Hide secrets, the local part of addresses and the middle of phone numbers."""
    pattern = _secrets_pattern(_secret_values())
    if pattern is not None:  # first: a secret may hold digits or an @ the rules below would split
        text = pattern.sub("***", text)
    for rule, replacement in _CREDENTIALS:
        text = rule.sub(replacement, text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)
    return _PHONE.sub(_hide_phone, text)


def _hide_phone(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "+***" + digits[-2:] if 8 <= len(digits) <= 15 else match.group(0)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record's message, traceback and stack in place (and return it)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports that itself when it formats
        return record
    clean = redact(message)
    if clean != message:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access formatter unpacks the arguments: keep their shape.
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        else:
            record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatter.format() uses exc_text as it is: set here, no handler prints the raw one.
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFormatter(logging.Formatter):
    """Redacts the message and any traceback (again, for records made before set-up)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = redact(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return redact(super().formatException(ei))


def _install_factory() -> None:
    global _factory_installed
    if _factory_installed:
        return
    make = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *args, **kwargs: redact_record(make(*args, **kwargs)))
    _factory_installed = True


def setup_logging(level: str = "INFO", settings: Settings | None = None) -> None:
    """One handler on stderr for everything; ``settings`` names more secrets (``watch_secrets``)."""
    if settings is not None:
        watch_secrets(settings)
    _install_factory()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                            "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn() text goes through the redaction too
    sys.excepthook = _log_crash
    threading.excepthook = lambda hook: None if hook.exc_type is SystemExit else \
        _log_crash(hook.exc_type, hook.exc_value, hook.exc_traceback)
    # Even at DEBUG these stay quiet: their debug lines dump whole requests (prompts with the
    # customer's words, form bodies) or protocol chatter nobody reads.
    for noisy in ("apscheduler", "uvicorn.access", "httpx", "httpcore", "httpx2", "httpcore2", "openai",
                  "imapclient", "aiosmtplib", "mail-parser-reply", "alembic", "python_multipart", "multipart",
                  "urllib3", "PIL", "filelock", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _log_crash(kind, value, tb) -> None:
    """An uncaught exception (of the process or of a thread) goes to the log, redacted, instead of
    a raw traceback on stderr."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("deskhand").critical("stopped by an unexpected error", exc_info=(kind, value, tb))

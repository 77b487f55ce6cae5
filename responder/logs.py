"""Plain log lines a shop owner can read, with email addresses and phone numbers redacted.

Zulip's ``redact_email_address`` keeps the domain and hides the person; we do the same for
phone numbers (last two digits kept) so logs can be shared when asking for help.
"""
from __future__ import annotations

import logging
import re
import sys

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
# A phone number: "+" and 8-15 digits, or 10-15 digits in the usual groupings. Dates, times,
# IP addresses and ports don't match (no ":" or "/" around, at most one "." separator kind).
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ()\-]{6,18}\d(?!\w)"
                    r"|(?<![\w.:/+-])(?:\(?\d{3}\)?[ .\-]?\d{3}[ .\-]\d{4}|\d{10,15})(?![\w.:/-])")


def redact(text: str) -> str:
    """Hide the local part of addresses and the middle of phone numbers."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)
    return _PHONE.sub(_hide_phone, text)


def _hide_phone(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "+***" + digits[-2:] if 8 <= len(digits) <= 15 else match.group(0)


class RedactingFormatter(logging.Formatter):
    """Redacts the message and any traceback; the timestamp and logger name stay as they are."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = redact(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return redact(super().formatException(ei))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                            "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("apscheduler", "uvicorn.access", "httpx", "imapclient", "aiosmtplib",
                  "mail-parser-reply", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

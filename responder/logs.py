"""Plain log lines a shop owner can read, with email addresses and phone numbers redacted.

Zulip's ``redact_email_address`` keeps the domain and hides the person; we do the same for
phone numbers (last two digits kept) so logs can be shared when asking for help.
"""
from __future__ import annotations

import logging
import re
import sys

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"(?<![\w])\+?\d[\d ().\-]{7,}\d(?![\w])")


def redact(text: str) -> str:
    """Hide the local part of addresses and the middle of phone numbers."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: "+***" + re.sub(r"\D", "", m.group(0))[-2:], text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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

"""What a chat request may carry, decided without I/O (the edge, ``responder/web/chat_api.py``, asks).

- A visitor is a random token the widget keeps (in the page's localStorage, written only once
  the panel is opened: no cookie, no consent banner) and, inside Deskhand, an address
  ``chat:<random id>``. Only the token's SHA-256 is stored: a database leak lets nobody speak as a
  visitor, and a visitor's address is not a credential.
- Origins: a request is served only when its ``Origin`` header is one the owner allowed (or the
  daemon's own address, for its demo page); no header, no service (fail closed).
- Text: trimmed, NUL-free, capped; an email address is one plain address, nothing more.
- Hours: outside ``[chat] hours`` (OpenStreetMap's opening_hours syntax) the widget says when a
  person will reply.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

SENDER_PREFIX = "chat:"
PERSON_TEXT = "I'd like to talk to a person, please."
MAX_CLIENT_ID = 64
EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class Refused(Exception):
    """A request answered with ``status`` and ``reason`` (a sentence the widget may show)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def new_visitor() -> tuple[str, str, str]:
    """(token for the widget, its hash to store, the visitor's address)."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token), SENDER_PREFIX + secrets.token_hex(12)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; ``Refused(401)`` otherwise."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not (20 <= len(token) <= 200) or not token.isascii():
        raise Refused(401, "This chat has expired; reload the page to start a new one.")
    return token


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case, as a browser writes it in ``Origin``."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def check_origin(origin: str | None, allowed: set[str], *, fetch_site: str | None = None, own: str = "") -> str:
    """The request's origin when allowed; ``Refused(403)`` otherwise (a missing header too, except
    for a same-origin GET, which browsers send without Origin but with ``Sec-Fetch-Site:
    same-origin``: a page of the daemon's own, such as /shop)."""
    value = (origin or "").strip().lower()
    if not value and (fetch_site or "").strip().lower() == "same-origin" and own:
        return own
    if not value or value == "null":
        raise Refused(403, "This chat works only on the shop's own pages.")
    if value not in allowed:
        raise Refused(403, f"This chat is not enabled on {value[:100]}.")
    return value


def message_text(text, max_chars: int) -> str:
    """The visitor's words as stored: text, trimmed, no NUL, at most ``max_chars``."""
    if not isinstance(text, str):
        raise Refused(400, "The message must be text.")
    text = text.replace("\x00", "").replace("\r\n", "\n").strip()
    if not text:
        raise Refused(400, "The message is empty.")
    if len(text) > max_chars:
        raise Refused(413, f"That message is too long: at most {max_chars:,} characters, please.")
    return text


def client_id(value) -> str | None:
    """The widget's id for a message (a retry carries the same one); None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not CLIENT_ID.fullmatch(value):
        raise Refused(400, "The message id is not valid.")
    return value


def email_address(value) -> str:
    value = value.strip() if isinstance(value, str) else ""
    if not EMAIL.fullmatch(value):
        raise Refused(400, "That doesn't look like an email address.")
    return value.lower()


def hours_note(hours: str, now: datetime, tz: ZoneInfo) -> str:
    """When a person will reply, if the shop is closed at ``now``; "" when open or no hours are set."""
    if not hours:
        return ""
    from opening_hours import OpeningHours  # loaded only when hours are set
    local = now.astimezone(tz)
    table = OpeningHours(hours)
    if table.is_open(local):
        return ""
    opens = table.next_change(local)
    if opens is None:
        return "We're closed now; a person will reply as soon as we're back."
    opens = opens if opens.tzinfo else opens.replace(tzinfo=tz)
    if opens.date() == local.date():
        day = "today"
    elif opens.date() == (local + timedelta(days=1)).date():
        day = "tomorrow"
    else:
        day = "on " + opens.strftime("%A")
    return f"We're closed now; a person will reply from {opens.strftime('%-H:%M')} {day}."

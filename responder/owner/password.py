"""The owner's password for the web pages, and the sessions it opened.

Set by ``python run.py set-password``, checked by the login page (``web/auth.py``). Stored as
``scrypt$n$r$p$salt$hash`` (base64) in the ``OwnerSetting`` row ``web_password``. Every login opens
a session kept on the server (row ``web_sessions``: a SHA-256 of each session id and when it
ends), so a session ends for real: logging out closes it, ``session_hours`` ends it, setting a
new password closes them all. A cookie copied before any of those opens nothing afterwards.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta

from responder.core.clock import utcnow
from responder.core.models import OwnerSetting

PASSWORD_KEY = "web_password"
MIN_LENGTH = 10
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1   # 16 MiB, ~50 ms: RFC 7914's interactive-login range


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        n, r, p = int(n), int(r), int(p)
        if scheme != "scrypt" or not (2 <= n <= 2 ** 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(password.encode()[:4096], salt=base64.b64decode(salt), n=n, r=r, p=p,
                               dklen=len(expected), maxmem=256 * r * n + 2 ** 20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


def stored_hash(session) -> str:
    row = session.get(OwnerSetting, PASSWORD_KEY)
    return row.value if row is not None else ""


def store_password(session, password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"The password must have at least {MIN_LENGTH} characters.")
    row = session.get(OwnerSetting, PASSWORD_KEY) or OwnerSetting(key=PASSWORD_KEY)
    row.value, row.updated_at = hash_password(password), utcnow()
    session.add(row)
    close_all_sessions(session)  # a new password signs every browser out


def fingerprint(stored: str) -> str:
    return hashlib.sha256(stored.encode()).hexdigest()[:24]


# --- sessions ---------------------------------------------------------------------------------------

SESSIONS_KEY = "web_sessions"


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _open_sessions(session) -> dict[str, str]:
    """{hash of a session id: when it ends (ISO)}, the ended ones left out."""
    row = session.get(OwnerSetting, SESSIONS_KEY)
    try:
        found = json.loads(row.value) if row is not None and row.value else {}
    except ValueError:
        found = {}  # unreadable: every session is closed (fail closed), the owner logs in again
    now = utcnow()
    return {h: until for h, until in found.items() if isinstance(until, str) and _ends(until) > now}


def _ends(until: str) -> datetime:
    try:
        return datetime.fromisoformat(until)
    except ValueError:
        return datetime.min.replace(tzinfo=utcnow().tzinfo)


def _save_sessions(session, sessions: dict[str, str]) -> None:
    row = session.get(OwnerSetting, SESSIONS_KEY) or OwnerSetting(key=SESSIONS_KEY)
    row.value, row.updated_at = json.dumps(sessions, sort_keys=True), utcnow()
    session.add(row)


def open_session(session, hours: float) -> str:
    """A new session id (for the cookie); the server keeps its hash until it ends."""
    sid = secrets.token_urlsafe(32)
    sessions = _open_sessions(session)
    sessions[_sid_hash(sid)] = (utcnow() + timedelta(hours=hours)).isoformat()
    _save_sessions(session, sessions)
    return sid


def session_is_open(session, sid: object) -> bool:
    return isinstance(sid, str) and bool(sid) and _sid_hash(sid) in _open_sessions(session)


def close_session(session, sid: object) -> None:
    sessions = _open_sessions(session)
    if isinstance(sid, str) and sessions.pop(_sid_hash(sid), None) is not None:
        _save_sessions(session, sessions)


def close_all_sessions(session) -> None:
    if session.get(OwnerSetting, SESSIONS_KEY) is not None:
        _save_sessions(session, {})

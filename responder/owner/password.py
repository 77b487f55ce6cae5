"""The owner's password for the web pages: a scrypt hash in the ``OwnerSetting`` row ``web_password``.

Set by ``python run.py set-password``, checked by the login page (``web/auth.py``). Stored as
``scrypt$n$r$p$salt$hash`` (base64); a session remembers a fingerprint of the hash, so setting a
new password signs every browser out.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

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


def fingerprint(stored: str) -> str:
    return hashlib.sha256(stored.encode()).hexdigest()[:24]

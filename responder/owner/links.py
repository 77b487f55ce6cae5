"""Signed one-click links in emails: approve / edit / reject a draft, thumbs up / down, accept a lesson.

Runs where emails are written (digest, notifications, automatic replies) and in the web pages
that receive the clicks. A link carries its purpose and data signed with HMAC (itsdangerous,
keyed by ``settings.secret()``) and a timestamp, so a changed character or an old link is
refused with a clear page. Links that change something carry a nonce that is stored when used
(``use_once``), so each works once. A GET never changes anything: link scanners in mail
clients open every link, so the page a link opens only offers a button that POSTs.
"""
from __future__ import annotations

import secrets

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from responder.core.clock import utcnow
from responder.core.models import UsedLink
from responder.core.settings import Settings

PURPOSES = ("draft", "feedback", "lesson")  # what a link may be for; each has its own salt


class LinkError(Exception):
    """A link that can't be used; ``reason`` is one of tampered | expired | used | wrong."""

    MESSAGES = {
        "tampered": "This link is not valid: it was changed or cut short. Nothing was done.",
        "expired": "This link has expired. Nothing was done; open the queue to act on the draft.",
        "used": "This link was already used. Nothing more was done.",
        "wrong": "This link is not for this page. Nothing was done.",
    }

    def __init__(self, reason: str):
        super().__init__(self.MESSAGES.get(reason, reason))
        self.reason = reason


class ClockSigner(TimestampSigner):
    """Link ages read Deskhand's clock, so tests jump ahead instead of waiting days."""

    def get_timestamp(self) -> int:
        return int(utcnow().timestamp())


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    return URLSafeTimedSerializer(settings.secret(), salt=f"deskhand.{purpose}", signer=ClockSigner)


def sign(settings: Settings, purpose: str, **data) -> str:
    """A token for ``data`` (small JSON values), with a fresh nonce for ``use_once``."""
    return _serializer(settings, purpose).dumps({**data, "n": secrets.token_urlsafe(12)})


def verify(settings: Settings, purpose: str, token: str, *, max_age_s: float) -> dict:
    """The signed data, or ``LinkError`` (tampered or expired)."""
    try:
        return _serializer(settings, purpose).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise LinkError("expired") from None
    except BadSignature:
        raise LinkError("tampered") from None


def is_used(session: Session, data: dict) -> bool:
    return session.exec(select(UsedLink.id).where(UsedLink.nonce == data.get("n", ""))).first() is not None


def use_once(session: Session, data: dict, purpose: str) -> None:
    """Record the link's nonce; ``LinkError('used')`` if it was used before (even concurrently)."""
    try:
        with session.begin_nested():
            session.add(UsedLink(nonce=str(data.get("n", ""))[:64], purpose=purpose))
            session.flush()
    except IntegrityError:
        raise LinkError("used") from None


# --- the URLs emails carry ------------------------------------------------------------------

def draft_link(settings: Settings, draft_id: int, action: str, token: str = "") -> str:
    """``action``: approve | edit | reject. Opens a confirmation page; nothing happens on GET.

    ``token`` (the draft's own) is signed in too, so a link can only ever reach the draft it
    was made for, even where an erased draft's id is used again (SQLite reuses the top rowid)."""
    return f"{settings.base_url}/a/{sign(settings, 'draft', d=draft_id, a=action, **_bound(token))}"


def feedback_link(settings: Settings, draft_id: int, vote: str, token: str = "") -> str:
    return f"{settings.base_url}/f/{sign(settings, 'feedback', d=draft_id, v=vote, **_bound(token))}"


def _bound(token: str) -> dict:
    return {"t": token[:12]} if token else {}


def is_for(data: dict, draft) -> bool:
    """The draft a verified link names is the one it was made for (links without "t" predate it)."""
    return draft is not None and ("t" not in data or draft.token[:12] == data["t"])


def lesson_link(settings: Settings, lesson_id: int, action: str = "accept") -> str:
    return f"{settings.base_url}/l/{sign(settings, 'lesson', l=lesson_id, a=action)}"


def ttl_s(settings: Settings, purpose: str) -> float:
    if purpose == "feedback":
        return settings.approvals.feedback_ttl_days * 86400
    return settings.approvals.link_ttl_hours * 3600

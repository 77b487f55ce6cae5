"""Request-level protection for every page: security headers, the session key and CSRF tokens.

Sits between the browser and the pages (``create_app`` installs it). Sessions are Starlette's
signed cookies (itsdangerous), keyed by a value derived from ``settings.secret()`` so a session
cookie can never pass for a signed email link or the other way round. Every owner form carries
a random token kept in the session (OWASP's synchronizer-token pattern); the signed link pages
(/a, /f, /l) don't need one: their unguessable, signed token is the proof.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from responder.core.settings import Settings

SESSION_COOKIE = "deskhand_session"

# No scripts at all (the pages are plain forms, the charts plain SVG). Inline styles stay allowed:
# the layout's CSS is one inline <style> element.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                           "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"x-frame-options", b"DENY"),
    # Link tokens sit in the URL path: they must never travel on in a Referer header.
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
]


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response; pages are never cached."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in HEADERS if name not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def session_key(settings: Settings) -> str:
    """The session cookie's signing key, separate from the link-signing key (same root secret)."""
    return hmac.new(settings.secret(), b"deskhand.web-session", hashlib.sha256).hexdigest()


class CsrfRejected(Exception):
    """A POST without the form token of this session: shown as a 403 page, nothing done."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def new_csrf_token(request: Request) -> str:
    request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its ``csrf`` field matches the session's token (a dependency)."""
    form = await request.form()
    expected = request.session.get("csrf") or ""
    given = form.get("csrf")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise CsrfRejected()
    return form


async def posted_form(request: Request) -> FormData:
    """The POSTed form without a CSRF check: only for the signed-link pages (see above)."""
    return await request.form()


def form_text(form: FormData, name: str, limit: int = 20_000) -> str:
    """A text field with browser line endings (CRLF) made plain, cut at ``limit`` characters."""
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return value.replace("\r\n", "\n").replace("\r", "\n")[:limit]


def is_local_path(target: str) -> bool:
    """Only a path on this site may follow a login (no open redirect via ``next``)."""
    return (target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not any(ord(c) < 32 for c in target))

"""The owner's login: the password (``python run.py set-password``), sessions and throttling.

Sits in front of every owner page. The password is stored as a scrypt hash in the
``OwnerSetting`` row ``web_password`` (``scrypt$n$r$p$salt$hash``, base64). A login opens a
session the server keeps (``owner.password.open_session``): logout, ``session_hours`` and a new
password end it for good, whatever cookie a browser still holds. Until a password
is set (a fresh install on localhost) the status page and Try it are open and the other pages
say how to set one; a server reachable from other machines (a public URL, or listening beyond
loopback) opens nothing before a password is set, since Try it spends LLM money for whoever calls
it. Afterwards everything but /healthz, /login, Twilio's signed webhooks and the signed link
pages needs a login. Wrong passwords slow down (``LoginThrottle``): after five from a client, or
twenty from all, each next try waits twice as long, up to a minute; X-Forwarded-For names the
client only when a ``[web] trusted_proxies`` proxy sent it.
"""
from __future__ import annotations

import hmac
import math
import threading
from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse
from starlette.requests import Request

from responder.core.clock import utcnow
from responder.core.settings import Settings
from responder.owner.password import (  # noqa: F401
    MIN_LENGTH,
    PASSWORD_KEY,
    check_password,
    close_session,
    fingerprint,
    hash_password,
    open_session,
    session_is_open,
    store_password,
    stored_hash,
)
from responder.web.pages import WebState, clear_page, page, state
from responder.web.security import checked_form, is_local_path, new_csrf_token

# --- who may see a page --------------------------------------------------------------------

class NeedsLogin(Exception):
    def __init__(self, next_path: str):
        self.next_path = next_path


class NeedsPassword(Exception):
    """No password yet: only the status page and Try it are open, and only on a loopback-only server."""


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_exposed(settings: Settings) -> bool:
    """Other machines can reach the pages: a public URL is set, or the server listens beyond loopback."""
    return bool(settings.web.public_url or settings.twilio.public_url) or settings.web.host not in LOOPBACK_HOSTS


def access(request: Request) -> tuple[bool, bool]:
    """(a password is set, this session is logged in with it)."""
    with state(request).ctx.db.transaction() as session:
        stored = stored_hash(session)
        logged_in = bool(stored) and bool(request.session.get("owner")) and \
            hmac.compare_digest(str(request.session.get("pw", "")), fingerprint(stored)) and \
            session_is_open(session, request.session.get("sid"))
    return bool(stored), logged_in


def _next_path(request: Request) -> str:
    if request.method != "GET":
        return "/"  # a form's target can't be reopened by GET after logging in
    query = f"?{request.url.query}" if request.url.query else ""
    return request.url.path + query


def require_owner(request: Request) -> WebState:
    has_password, logged_in = access(request)
    if not has_password:
        raise NeedsPassword()
    if not logged_in:
        raise NeedsLogin(_next_path(request))
    return state(request)


def require_owner_or_fresh(request: Request) -> WebState:
    """Open on a fresh install (no password yet) that only this machine reaches; otherwise like
    ``require_owner``."""
    has_password, logged_in = access(request)
    if not has_password and is_exposed(state(request).ctx.settings):
        raise NeedsPassword()
    if has_password and not logged_in:
        raise NeedsLogin(_next_path(request))
    return state(request)


def login_redirect(request: Request, exc: NeedsLogin) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


def needs_password_page(request: Request, exc: NeedsPassword | None = None):
    if is_exposed(state(request).ctx.settings):  # the usual page offers Try it, which is closed here
        return clear_page(request, "Set a password first", "This server can be reached from other machines, so "
                          "every page needs a password, Try it included. On the computer running Deskhand, run "
                          "python run.py set-password, then log in here.", status=403)
    return page(request, "needs_password.html.j2", status=403)


# --- throttling ----------------------------------------------------------------------------

class LoginThrottle:
    """Slows wrong passwords down rather than locking the owner out (in memory, per process).

    After ``limit`` failures within ``window`` from one client, each next try must wait twice as
    long as the one before (2 s, 4 s, ... up to ``longest``) after the last failure; a try sooner
    is refused unread. The same holds across all clients after ``limit_all`` failures, so guesses
    from many addresses (or ones a header made up) slow down together. A right password clears the
    client's count. The owner waits seconds, never minutes."""

    ALL = "*"

    def __init__(self, limit: int = 5, limit_all: int = 20, window: timedelta = timedelta(minutes=15),
                 first: float = 2.0, longest: float = 60.0):
        self.limits = {self.ALL: limit_all}
        self.limit, self.window, self.first, self.longest = limit, window, first, longest
        self._failures: dict[str, list] = {}
        self._lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        """Seconds this client must still wait before a try is read (0: go ahead)."""
        now = utcnow()
        with self._lock:
            return max(self._wait(key, now) for key in (client, self.ALL))

    def _wait(self, key: str, now) -> float:
        recent = [t for t in self._failures.get(key, []) if t > now - self.window]
        over = len(recent) - self.limits.get(key, self.limit)
        if over < 0:
            return 0.0
        delay = min(self.first * 2 ** over, self.longest)
        return max(0.0, (recent[-1] - now).total_seconds() + delay)

    def fail(self, client: str) -> None:
        now = utcnow()
        with self._lock:
            for other in [c for c, times in self._failures.items() if times[-1] <= now - self.window]:
                del self._failures[other]  # forget old failures, so the table stays small
            for key in (client, self.ALL):
                self._failures[key] = [t for t in self._failures.get(key, []) if t > now - self.window] + [now]

    def clear(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


# --- pages ---------------------------------------------------------------------------------

router = APIRouter()


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login")
def login_page(request: Request, next_path: str = Query("/", alias="next")):
    has_password, logged_in = access(request)
    target = next_path if is_local_path(next_path) else "/"
    if not has_password:
        return needs_password_page(request)
    if logged_in:
        return RedirectResponse(target, status_code=303)
    return page(request, "login.html.j2", next=target, error="")


@router.post("/login")
def login(request: Request, form=Depends(checked_form)):
    st, client = state(request), _client(request)
    target = str(form.get("next") or "/")
    target = target if is_local_path(target) else "/"
    wait = st.throttle.wait_for(client)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        response = page(request, "login.html.j2", status=429, next=target,
                        error=f"Too many wrong passwords; wait {seconds} second{'s' * (seconds != 1)} and try again.")
        response.headers["Retry-After"] = str(seconds)
        return response
    with st.ctx.db.transaction() as session:
        stored = stored_hash(session)
    if not stored:
        return needs_password_page(request)
    password = form.get("password")
    if not isinstance(password, str) or not check_password(password, stored):
        st.throttle.fail(client)
        return page(request, "login.html.j2", status=401, next=target, error="Wrong password.")
    st.throttle.clear(client)
    with st.ctx.db.transaction() as session:
        close_session(session, request.session.get("sid"))  # a login replaces this browser's old session
        sid = open_session(session, st.ctx.settings.web.session_hours)
    request.session.clear()
    request.session.update(owner=True, pw=fingerprint(stored), sid=sid)
    new_csrf_token(request)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, form=Depends(checked_form)):
    with state(request).ctx.db.transaction() as session:
        close_session(session, request.session.get("sid"))  # a copy of the cookie opens nothing now
    request.session.clear()
    return clear_page(request, "Logged out", "You are logged out.", link=("/login", "Log in again"))

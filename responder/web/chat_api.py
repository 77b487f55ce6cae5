"""The site chat's edge: the widget script, its JSON API and the sample shop's page.

``GET /chat/widget.js`` is the one script a shop pastes on its pages; ``/chat/api/*`` is what it
calls (the contract is in the widget's header). Zulip's accept-then-process: a visitor's message
is stored and the process job woken; it is answered through the same pipeline as email and texts,
and the reply reaches the panel through the send job's chat worker (``channels.chat.send``),
which wakes the panel's long poll (``channels.chat.hub``).

Every API request is checked before anything is read (``channels.chat.visitor``): its Origin
must be an allowed origin (CORS preflights are answered by Starlette's ``CORSMiddleware`` for those
origins only, and a request from any other origin is refused, not just left unreadable), the body
is capped, and sessions and messages are counted per visitor and per address with ``limits``'
moving windows (in memory, per process). ``GET /shop`` shows the widget live on the sample shop
(``knowledge/shop.html``) under a strict Content-Security-Policy.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
from functools import lru_cache, partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from channels.chat.visitor import (
    PERSON_TEXT,
    Refused,
    bearer,
    check_origin,
    client_id,
    email_address,
    hours_note,
    message_text,
    origin_of,
)
from responder.core.clock import utcnow
from responder.core.db import DatabaseUnavailable
from responder.web import chat_state
from responder.web.pages import WebState

log = logging.getLogger("deskhand.chat")
WIDGET = Path(__file__).resolve().parents[2] / "channels" / "chat" / "static" / "widget.js"
MAX_BODY = 64 * 1024
LONG_POLL_S = 25.0
# On PostgreSQL a poll reads the database again after this long without news: what another daemon
# on it did is seen within it (this process's replies and routed messages wake a poll at once). On
# SQLite there is one daemon, so only a wake-up or the poll's end reads again.
RECHECK_S = 12.0
SHOP_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@lru_cache(maxsize=1)
def widget_file(mtime: float) -> tuple[bytes, bytes, str]:
    """The script, gzipped once (35 KB -> 11 KB on every shop page view), and its ETag."""
    body = WIDGET.read_bytes()
    return body, gzip.compress(body, compresslevel=9, mtime=0), '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def widget_response(request: Request) -> Response:
    body, packed, etag = widget_file(WIDGET.stat().st_mtime)
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300", "Vary": "Accept-Encoding",
               # a script for other sites' pages: loadable cross-origin (and with crossorigin="anonymous")
               "Cross-Origin-Resource-Policy": "cross-origin", "Access-Control-Allow-Origin": "*"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body, headers["Content-Encoding"] = packed, "gzip"
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


class Limits:
    """Per-visitor and per-address request counts (moving windows, this process)."""

    def __init__(self, chat):
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.sessions = RateLimitItemPerHour(chat.sessions_per_hour_per_address)
        self.per_visitor = RateLimitItemPerMinute(chat.messages_per_minute)
        self.per_address = RateLimitItemPerMinute(chat.messages_per_minute_per_address)
        self.reads = RateLimitItemPerMinute(120)  # a panel asks about twice a minute; a loop, far more

    def take(self, item, *keys: str, what: str) -> None:
        if not self.limiter.hit(item, *keys):
            raise Refused(429, f"Too many {what} at once; please wait a moment and try again.")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


async def json_body(request: Request) -> dict:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 9 or int(declared) > MAX_BODY):
        raise Refused(413, "That request is too large.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused(413, "That request is too large.")
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "The request is not JSON.") from None
    if not isinstance(data, dict):
        raise Refused(400, "The request is not a JSON object.")
    return data


def chat_app(st: WebState) -> FastAPI:
    """The API, mounted at /chat/api: its own CORS policy, errors as {"error": sentence}."""
    ctx, chat = st.ctx, st.ctx.settings.chat
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(CORSMiddleware, allow_origins=sorted(chat_state.allowed_origins(ctx.settings, "")),
                       allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"],
                       allow_credentials=False, max_age=600)
    limits = Limits(chat)

    @app.exception_handler(Refused)
    def refused(request: Request, exc: Refused):
        if exc.status in (403, 429):
            log.info("chat request %s %s refused (%d): %s", request.method, request.url.path, exc.status, exc.reason)
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    @app.exception_handler(DatabaseUnavailable)
    def away(request: Request, exc: DatabaseUnavailable):
        return JSONResponse({"error": "The chat is unavailable for a moment; please try again shortly."},
                            status_code=503)

    def origin(request: Request) -> str:
        own = origin_of(str(request.base_url))
        return check_origin(request.headers.get("origin"), chat_state.allowed_origins(ctx.settings, own),
                            fetch_site=request.headers.get("sec-fetch-site"), own=own)

    async def visitor(request: Request) -> chat_state.Visitor:
        origin(request)
        token = bearer(request.headers.get("authorization"))
        return await run_in_threadpool(chat_state.visitor, ctx, token)

    def kick() -> None:
        if st.on_inbound is None:
            return
        try:
            st.on_inbound()
        except Exception:  # stored; the process job's timer answers it
            log.exception("waking the process job failed; the chat message is answered on its next run")

    @app.get("/config")
    def config(request: Request):
        origin(request)
        s = ctx.settings
        return {"shop": s.store.name, "title": f"Chat with {s.store.name}", "greeting": chat.greeting,
                "max_chars": chat.max_chars, "offer_person_after": chat.offer_person_after,
                "hours_note": hours_note(chat.hours, utcnow(), s.tz)}

    @app.post("/sessions", status_code=201)
    async def new_session(request: Request):
        where = origin(request)
        limits.take(limits.sessions, "session", client_address(request), what="new chats from your address")
        return {"token": await run_in_threadpool(chat_state.start, ctx, where)}

    @app.get("/messages")
    async def messages(request: Request, after: str = "", wait: float = 0):
        who = await visitor(request)
        limits.take(limits.reads, "read", who.sender, what="requests")
        _, _, saw_typing = chat_state.parse_cursor(after)
        remaining = min(max(wait, 0.0), LONG_POLL_S)
        with ctx.chat_hub.listening(who.sender) as news:  # before the first read: no reply slips between
            first = True
            while True:
                view = await run_in_threadpool(partial(chat_state.view, present=first), ctx, who, after)
                first = False
                if view.items or view.typing != saw_typing or remaining <= 0 or await request.is_disconnected():
                    return view.as_json()
                step = min(RECHECK_S, remaining) if ctx.db.is_postgres else remaining
                remaining -= step
                await news.wait(step)

    async def store(request: Request, who: chat_state.Visitor, text: str, given: str | None):
        limits.take(limits.per_visitor, "msg", who.sender, what="messages")
        limits.take(limits.per_address, "msg-ip", client_address(request), what="messages from your address")
        stored = await run_in_threadpool(chat_state.post, ctx, who, text, given)
        if stored.pop("new"):
            kick()
            ctx.chat_hub.notify(who.sender)  # the visitor's own open polls: their message, and "typing"
        return JSONResponse(stored, status_code=202)

    @app.post("/messages")
    async def post_message(request: Request):
        who = await visitor(request)
        data = await json_body(request)
        text = message_text(data.get("text"), chat.max_chars)
        return await store(request, who, text, client_id(data.get("client_id")))

    @app.post("/person")
    async def person(request: Request):
        who = await visitor(request)
        data = await json_body(request)
        return await store(request, who, PERSON_TEXT, client_id(data.get("client_id")))

    @app.post("/email")
    async def email(request: Request):
        who = await visitor(request)
        address = email_address((await json_body(request)).get("email"))
        limits.take(limits.per_visitor, "msg", who.sender, what="requests")
        if await run_in_threadpool(chat_state.leave_email, ctx, who, address):
            kick()
        return {"email": address}

    @app.post("/feedback")
    async def feedback(request: Request):
        who = await visitor(request)
        data = await json_body(request)
        limits.take(limits.per_visitor, "msg", who.sender, what="requests")
        vote = await run_in_threadpool(chat_state.vote, ctx, who, data.get("rate"), data.get("vote"),
                                       data.get("comment") or "")
        return {"vote": vote}

    return app


def shop_page(st: WebState) -> Response:
    """The sample shop's page with the widget on it (``knowledge/shop.html``), as a shop's site would."""
    path = st.ctx.settings.knowledge_dir / "shop.html"
    if not path.is_file():
        return HTMLResponse("<!doctype html><title>No shop page</title><p>There is no shop.html in the knowledge "
                            "folder.</p>", status_code=404)
    return HTMLResponse(path.read_text(encoding="utf-8"), headers={"Content-Security-Policy": SHOP_CSP})


def install(app: FastAPI, st: WebState) -> None:
    """The chat's routes on the daemon's app; nothing when ``[chat] enabled = false``."""
    if not st.ctx.settings.chat.enabled:
        return
    app.add_api_route("/chat/widget.js", widget_response, methods=["GET"], include_in_schema=False)
    app.add_api_route("/shop", lambda: shop_page(st), methods=["GET"], include_in_schema=False)
    app.mount("/chat/api", chat_app(st))

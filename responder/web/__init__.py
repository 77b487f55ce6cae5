"""The web server (FastAPI): the owner's pages, the one-click email links, health and status.

Served by the daemon on ``[web] host:port`` (127.0.0.1 by default). ``create_app`` wires the
pieces: security headers and signed session cookies around everything, the login guard
(``auth``), the queue (``owner_pages``), conversations, lessons, the dashboard, Try it and the
signed link pages. No LLM call or mailbox I/O runs inside a request, except Try it, which runs
the configured drafter in a worker thread; approving only queues the reply in the outbox and
calls ``on_outbox`` so the daemon's send worker delivers it at once.
"""
from __future__ import annotations

from typing import Callable

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from sqlmodel import func, select
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request

from responder.core.db import DatabaseUnavailable
from responder.core.models import Draft, Message, Outbox
from responder.ops.context import Context
from responder.web import (
    auth,
    chat_api,
    customer_pages,
    dashboard,
    lesson_pages,
    link_pages,
    owner_pages,
    thread_pages,
    tryit,
    twilio_hooks,
)
from responder.web.auth import LoginThrottle, NeedsLogin, NeedsPassword  # noqa: F401
from responder.web.pages import WebState, clear_page, page
from responder.web.security import (
    SESSION_COOKIE,
    CsrfRejected,
    SecurityHeaders,
    session_key,
)

__all__ = ["create_app", "cmd_set_password", "counts"]


def counts(ctx: Context) -> dict:
    with ctx.db.read() as session:
        def grouped(column):
            return dict(session.exec(select(column, func.count()).group_by(column)).all())
        return {"messages": grouped(Message.status), "routes": grouped(Draft.route),
                "outbox": grouped(Outbox.status)}


def _status_page(request: Request, st: WebState, *, has_password: bool):
    s = st.ctx.settings
    return page(request, "status.html.j2", email_on=s.email.imap_enabled, smtp_on=s.email.smtp_enabled,
                password_env=s.email.password_env, has_password=has_password,
                try_first=not (s.email.imap_enabled and has_password), **counts(st.ctx))


def _csrf_rejected(request: Request, exc: CsrfRejected):
    return clear_page(request, "Form expired", "This form was not accepted (its security token is missing or "
                      "out of date). Nothing was changed; go back, reload the page and try again.", status=403)


def _database_unavailable(request: Request, exc: DatabaseUnavailable):
    # responder.core.db has logged the outage once; each request adds nothing to the log.
    return clear_page(request, "Database unavailable", "The database can't be reached right now, so nothing was "
                      "read or changed. Deskhand keeps trying by itself: reload this page in a minute.", status=503)


def _http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == 404:
        return clear_page(request, "Not found", "There is no page here.", status=404, link=("/", "Home"))
    return clear_page(request, "Not possible", str(exc.detail), status=exc.status_code, link=("/", "Home"))


def create_app(ctx: Context, on_outbox: Callable[[], None] | None = None,
               on_inbound: Callable[[], None] | None = None) -> FastAPI:
    """The ASGI app. ``on_outbox`` is called after an approval commits (the daemon wakes its
    send worker with it); it must not block."""
    settings = ctx.settings
    app = FastAPI(title="Deskhand", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.deskhand = WebState(ctx=ctx, on_outbox=on_outbox, on_inbound=on_inbound, throttle=LoginThrottle())
    app.add_middleware(SessionMiddleware, secret_key=session_key(settings), session_cookie=SESSION_COOKIE,
                       max_age=int(settings.web.session_hours * 3600), same_site="lax",
                       https_only=settings.web.public_url.startswith("https://"))
    app.add_middleware(SecurityHeaders)  # added last: the outermost, so every response has the headers
    app.add_exception_handler(NeedsLogin, auth.login_redirect)
    app.add_exception_handler(NeedsPassword, auth.needs_password_page)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, **counts(ctx)}

    @app.get("/")
    def home(request: Request, st: WebState = Depends(auth.require_owner_or_fresh)):
        has_password, _ = auth.access(request)
        if has_password and st.ctx.settings.email.imap_enabled:
            return RedirectResponse("/queue", status_code=303)
        return _status_page(request, st, has_password=has_password)

    @app.get("/status")
    def status(request: Request, st: WebState = Depends(auth.require_owner_or_fresh)):
        return _status_page(request, st, has_password=auth.access(request)[0])

    for module in (auth, owner_pages, thread_pages, customer_pages, lesson_pages, dashboard, tryit, link_pages,
                   twilio_hooks):  # twilio_hooks: Twilio's webhooks (signed, no login)
        app.include_router(module.router)
    chat_api.install(app, app.state.deskhand)  # the site chat: widget, API (its own CORS), /shop
    return app

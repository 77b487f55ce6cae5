"""The web server (FastAPI): health and a status page for now; webhooks and the owner's pages
hang off the same app. No LLM call or mailbox I/O ever runs inside a request.
"""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from sqlmodel import func, select

from responder.context import Context
from responder.models import Draft, Message, Outbox
from responder.templating import render


def counts(ctx: Context) -> dict:
    with ctx.db.transaction() as session:
        def grouped(column):
            return dict(session.exec(select(column, func.count()).group_by(column)).all())
        return {"messages": grouped(Message.status), "routes": grouped(Draft.route),
                "outbox": grouped(Outbox.status)}


def create_app(ctx: Context) -> FastAPI:
    app = FastAPI(title="Deskhand", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, **counts(ctx)}

    @app.get("/", response_class=HTMLResponse)
    def status_page() -> str:
        s = ctx.settings
        return render("web/status.html.j2", store=s.store, email_on=s.email.imap_enabled,
                      smtp_on=s.email.smtp_enabled, password_env=s.email.password_env, **counts(ctx))

    return app

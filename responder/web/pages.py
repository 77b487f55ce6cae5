"""Shared by every page module: the app's state, rendering a page, and display formatting.

Pages render ``templates/web/*.html.j2`` through ``responder.core.templating`` (autoescaped, so
customer text is always shown as text); every page gets the shop, the session's CSRF token,
a one-time flash line and a formatter for times, rates and money.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from fastapi.responses import HTMLResponse
from starlette.requests import Request

from responder.core.clock import as_utc, utcnow
from responder.core.settings import Settings
from responder.core.templating import render
from responder.ops.context import Context
from responder.owner.report import format_duration, format_money, format_percent
from responder.web.security import csrf_token

log = logging.getLogger("deskhand.web")


@dataclass
class WebState:
    ctx: Context
    on_outbox: Callable[[], None] | None = None
    on_inbound: Callable[[], None] | None = None  # a webhook stored a message: wake the process job
    throttle: object = None                  # auth.LoginThrottle
    # Try it calls the drafter (maybe an LLM): one trial at a time.
    try_lock: threading.Lock = field(default_factory=threading.Lock)

    def kick_outbox(self) -> None:
        """An approval committed: wake the daemon's send worker (else its next tick sends)."""
        if self.on_outbox is None:
            return
        try:
            self.on_outbox()
        except Exception:  # the reply is safely queued; the send job's timer still delivers it
            log.exception("waking the send worker failed; the reply goes out on the next send run")


def state(request: Request) -> WebState:
    return request.app.state.deskhand


class Formatter:
    """How times, durations, rates and money read on the pages (shop's time zone)."""

    def __init__(self, settings: Settings):
        self.tz = settings.tz

    def when(self, value: datetime | None) -> str:
        return as_utc(value).astimezone(self.tz).strftime("%Y-%m-%d %H:%M") if value else ""

    def age(self, value: datetime | None) -> str:
        if not value:
            return ""
        seconds = max(0.0, (utcnow() - as_utc(value)).total_seconds())
        return self.duration(seconds)

    # One set of number formats for the digest, `run.py stats` and these pages (responder.owner.report).
    duration = staticmethod(format_duration)
    pct = staticmethod(format_percent)

    @staticmethod
    def money(value: float | None) -> str:
        return "–" if value is None else format_money(value)


ROUTE_WORDS = {
    "auto": "would be answered automatically",
    "review": "held for your review",
    "handoff": "handed to you (the customer gets a short holding reply)",
    "ignore": "no reply (automated mail)",
    "throttled": "not answered alone (part of a burst of messages)",
}


def page(request: Request, template: str, *, status: int = 200, public: bool = False, **values) -> HTMLResponse:
    """Render one page. ``public`` pages (customers' feedback links) show no owner navigation."""
    settings = state(request).ctx.settings
    common = dict(store=settings.store, fmt=Formatter(settings), route_words=ROUTE_WORDS, public=public,
                  owner=bool(request.session.get("owner")) and not public,
                  csrf="" if public else csrf_token(request),
                  flash="" if public else request.session.pop("flash", ""))
    return HTMLResponse(render(f"web/{template}", **{**common, **values}), status_code=status)


def clear_page(request: Request, title: str, message: str, *, status: int = 200, public: bool = False,
               link: tuple[str, str] | None = None) -> HTMLResponse:
    """A page that says one thing plainly (a refused link, a missing draft, a done action)."""
    return page(request, "message.html.j2", status=status, public=public, title=title, message=message,
                link=link)


def flash(request: Request, text: str) -> None:
    request.session["flash"] = text


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff as (css class, line) pairs; the template escapes each line."""
    out = []
    for line in diff.splitlines():
        kind = "meta" if line.startswith(("---", "+++", "@@")) else \
            "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        out.append((kind, line))
    return out

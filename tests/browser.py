"""Support for the web tests: the app on a real database, held drafts from the real pipeline,
the app served by uvicorn on a free port, and headless Chromium driven by Playwright.

- ``web_base`` (module scope): settings on a COPY of the sample knowledge folder and one context
  (the embedding model loads once per test module); ``make_web(base, url)`` gives each test its
  own database (and app, TestClient and a record of ``on_outbox`` calls) on that context.
- ``hold(ctx, text)``: a customer email stored and run through ``process_pending``.
- ``serve(app)``: uvicorn in a background thread on 127.0.0.1; yields the base URL.
- ``browser_page``: a Playwright page in Debian's Chromium (/usr/bin/chromium). Missing Chromium
  or Playwright: the test skips, or fails when CI=true (as ``servers.require_dovecot``).

Test modules import the fixtures they use from here (conftest.py is shared with other suites).
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from helpers import ROOT, customer_mail, write_settings
from sqlmodel import select

from responder.core.db import Database
from responder.core.models import Draft
from responder.core.settings import load_settings
from responder.intake.store import store_inbound_email
from responder.knowledge.index import KnowledgeIndex
from responder.knowledge.retrieve import Retriever
from responder.ops.context import Context, build_context
from responder.ops.jobs import process_pending

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "candle-owner-pw-2024"
HUMAN = "How much is shipping to Texas? Can I speak to a person?"  # handoff: asks for a person
UNKNOWN = "Do you ship live goldfish to Antarctica by drone?"  # review: low confidence
SHIPPING = "Hi! How much is shipping to Texas?"                # auto
_uids = itertools.count(1000)


# --- the app on a real database ------------------------------------------------------------

@pytest.fixture(scope="module")
def web_base(tmp_path_factory) -> Iterator[Context]:
    folder = tmp_path_factory.mktemp("web")
    knowledge = folder / "knowledge"
    shutil.copytree(ROOT / "knowledge", knowledge)
    url = f"sqlite:///{folder / 'base.sqlite3'}"
    ctx = build_context(load_settings(write_settings(folder, database_url=url, knowledge_dir=knowledge)))
    yield ctx
    ctx.db.dispose()


def own_knowledge(base: Context, folder: Path) -> Context:
    """A context like ``base`` on its own copy of the knowledge folder (for tests that write to it);
    the loaded embedding model is shared."""
    knowledge = folder / "knowledge-own"
    shutil.copytree(ROOT / "knowledge", knowledge)
    settings = base.settings.model_copy(update={"knowledge": base.settings.knowledge.model_copy(
        update={"dir": knowledge})})
    retriever = Retriever(KnowledgeIndex(knowledge, folder / "own-index", base.retriever.index.embedder))
    retriever.refresh(force=True)
    return Context(settings=settings, db=base.db, drafter=base.drafter, retriever=retriever)


@contextmanager
def make_web(base: Context, database_url: str, **app_options):
    """A fresh database on ``base``'s settings and models, the app on it and a TestClient."""
    from fastapi.testclient import TestClient

    from responder.web import create_app

    ctx = Context(settings=base.settings, db=Database(database_url), drafter=base.drafter, retriever=base.retriever)
    ctx.db.migrate()
    kicks: list[int] = []
    app = create_app(ctx, on_outbox=lambda: kicks.append(1), **app_options)
    try:
        with TestClient(app) as client:
            yield SimpleNamespace(ctx=ctx, app=app, client=client, kicks=kicks)
    finally:
        ctx.db.dispose()


def set_password(ctx: Context, password: str = PASSWORD) -> None:
    from responder.owner.password import store_password
    with ctx.db.transaction() as session:
        store_password(session, password)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def login(client, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "password": password, "next": "/queue"},
                       follow_redirects=False)


def hold(ctx: Context, text: str, *, sender: str = "Jamie Rivera <jamie@customer.test>",
         subject: str = "A question", message_id: str | None = None, in_reply_to: str | None = None) -> Draft:
    """One customer email through the real pipeline; returns its draft (check the route!)."""
    raw = customer_mail(text, sender=sender, subject=subject, message_id=message_id, in_reply_to=in_reply_to,
                        references=in_reply_to)
    with ctx.db.transaction() as session:
        message = store_inbound_email(session=session, raw=raw, mailbox="INBOX", uidvalidity=1, uid=next(_uids))
        message_id_ = message.id
    process_pending(ctx)
    with ctx.db.transaction() as session:
        return session.exec(select(Draft).where(Draft.message_id == message_id_)).one()




def link_path(url: str) -> str:
    return urlsplit(url).path


# --- the app served over HTTP ----------------------------------------------------------------

@contextmanager
def serve(app) -> Iterator[str]:
    """uvicorn in a background thread on a free port; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- headless Chromium -----------------------------------------------------------------------

def _require_browser() -> None:
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"Chromium is not installed at {CHROMIUM} (Debian package `chromium`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright for Python is not installed (requirements-dev.txt)"
    if reason is None:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser_page():
    """A fresh Playwright page in headless Chromium; the browser closes after the test."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone's width
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
            context.close()
        finally:
            browser.close()

"""The site chat as a shopper meets it: headless Chromium on a shop page served from ANOTHER origin
(``http://localhost:<port>``, under a strict Content-Security-Policy) with the one script tag the
README tells the owner to paste, against the daemon as a real process (``python run.py``) with the
settings the README tells the owner to write ([chat] allowed_origins, nothing more), and an
aiosmtpd server for its mail.

Open the panel, ask, see the answer; reload and change page and see the history; thumbs; "talk to a
person" and the email form; a fourth message within 10 s; an XSS payload shown as text; a second
browser context can't read the first's chat; a page on a disallowed origin is refused; the owner's
reply from the queue reaches the open panel, and is emailed once the panel is closed.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, _require_browser
from daemons import http_ok, start_daemon, wait_until
from helpers import ROOT, write_settings
from servers import SmtpCapture, free_port
from sqlmodel import col, select

from responder.core.clock import utcnow
from responder.core.db import Database
from responder.core.models import ChatSession, Draft, Feedback, Message, Outbox

HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/site.css"></head><body><h1>{title}</h1><p>A product page.</p>
<a href="/other">Another page</a>
<script src="{daemon}/chat/widget.js" defer></script></body></html>"""


def host_server(daemon: str, port: int) -> ThreadingHTTPServer:
    """The shop's own site: two pages with the script tag and a strict CSP (no inline script or style)."""
    policy = (f"default-src 'none'; script-src {daemon}; connect-src {daemon}; style-src 'self'; "
              "img-src 'self'; base-uri 'none'; form-action 'none'")

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/site.css":
                body, kind = b"body { font-family: Georgia, serif; }", "text/css"
            else:
                title = "Other page" if self.path.startswith("/other") else "Candle shop"
                body, kind = HOST_PAGE.format(title=title, daemon=daemon).encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Security-Policy", policy)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    _require_browser()
    folder = tmp_path_factory.mktemp("chat-site")
    port, site_port, evil_port = free_port(), free_port(), free_port()
    daemon, site = f"http://127.0.0.1:{port}", f"http://localhost:{site_port}"
    with SmtpCapture() as smtp:
        config = write_settings(folder, database_url=f"sqlite:///{folder / 'deskhand.sqlite3'}", smtp=smtp,
                                web_port=port, extra=f'[chat]\nallowed_origins = ["{site}"]\n')
        log_path = folder / "daemon.log"
        process = start_daemon(config, log_path)
        servers = [host_server(daemon, site_port), host_server(daemon, evil_port)]
        try:
            wait_until(lambda: http_ok(port), 90, "the daemon's web server")
            wait_until(lambda: "ready:" in log_path.read_text(), 120, "the warm-up")
            subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "set-password",
                            "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, cwd=ROOT)
            from playwright.sync_api import sync_playwright
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                yield SimpleNamespace(daemon=daemon, site=site, evil=f"http://localhost:{evil_port}", smtp=smtp,
                                      browser=browser, db=Database(f"sqlite:///{folder / 'deskhand.sqlite3'}"),
                                      log=log_path)
                browser.close()
        finally:
            for server in servers:
                server.shutdown()
            process.terminate()
            process.wait(timeout=30)


class Shopper:
    """One browser context (one visitor) on the shop's page; collects CSP violations and errors."""

    def __init__(self, shop, origin: str | None = None, path: str = "/"):
        self.context = shop.browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.origin = origin or shop.site
        self.page.goto(self.origin + path)
        self.page.wait_for_selector("#deskhand-chat .launcher")

    def part(self, selector: str):
        return self.page.locator(f"#deskhand-chat {selector}")

    def open(self) -> None:
        self.part(".launcher").click()
        self.part("textarea").wait_for()

    def ask(self, text: str) -> None:
        self.part("textarea").fill(text)
        self.part("textarea").press("Enter")

    def shop_says(self, count: int, timeout: float = 20) -> list[str]:
        """The shop's messages once there are at least ``count``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = self.part(".msg.shop").all_inner_texts()
            if len(texts) >= count:
                return texts
            time.sleep(0.1)
        raise AssertionError(f"the panel shows {self.part('.msg.shop').all_inner_texts()}, not {count} answers")

    def close(self) -> None:
        csp = [p for p in self.problems if "Content Security Policy" in p or "Refused to" in p]
        self.context.close()
        assert not csp, csp


@pytest.fixture
def shopper(shop):
    made: list[Shopper] = []

    def make(origin: str | None = None, path: str = "/") -> Shopper:
        made.append(Shopper(shop, origin, path))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_ask_see_the_answer_and_keep_it_across_reloads_and_pages(shop, shopper):
    me = shopper()
    assert me.page.evaluate("localStorage.length") == 0 and me.context.cookies() == []  # nothing before opening
    me.open()
    assert me.part(".launcher").get_attribute("aria-expanded") == "true"
    assert me.part("[role=log]").get_attribute("aria-live") == "polite"
    me.ask("How much is shipping to Texas?")
    [answer] = me.shop_says(1)
    assert "$7" in answer
    assert me.context.cookies() == [] and me.context.cookies(shop.daemon) == []  # no cookie, ever
    me.page.reload()
    assert me.shop_says(1)[0] == answer  # the panel opens again with the conversation
    assert me.part(".msg.visitor").all_inner_texts() == ["How much is shipping to Texas?"]
    me.page.goto(shop.site + "/other")
    assert me.shop_says(1)[0] == answer


def test_the_sample_shop_page_on_the_daemon_itself(shop, shopper):
    me = shopper(shop.daemon, "/shop")  # same origin: the browser sends its polls without an Origin header
    me.open()
    me.ask("How long does Amber Noir burn?")
    assert "45 hours" in me.shop_says(1)[0]
    me.page.reload()
    assert "45 hours" in me.shop_says(1)[0]


def test_thumbs_up_then_down_with_a_reason(shop, shopper):
    me = shopper()
    me.open()
    me.ask("How long does Amber Noir burn?")
    me.shop_says(1)
    up, down = me.part(".msg.shop .up"), me.part(".msg.shop .down")
    up.click()
    wait_until(lambda: up.get_attribute("aria-pressed") == "true", 10, "the thumbs up to show")
    down.click()
    me.part(".why input").fill("I wanted the 12 oz jar")
    me.part(".why button").click()

    def recorded() -> bool:
        with shop.db.read() as session:  # a new transaction each time: one would keep its first snapshot
            return any(f.comment == "I wanted the 12 oz jar" for f in session.exec(select(Feedback)).all())

    wait_until(recorded, 10, "the vote with its reason")


def test_talk_to_a_person_then_leave_an_email(shop, shopper):
    me = shopper()
    me.open()
    me.part(".person").first.click()
    [holding] = me.shop_says(1)
    assert "Maya" in holding and "get back to you" in holding
    me.part("form.email input").fill("rowan@customer.test")
    me.part("form.email button").click()
    me.page.wait_for_function("""() => document.querySelector('#deskhand-chat').shadowRoot
        .textContent.includes("rowan@customer.test")""")
    with shop.db.read() as session:
        assert session.exec(select(ChatSession).where(ChatSession.email == "rowan@customer.test")).first()


def test_a_fourth_message_within_ten_seconds_is_answered_with_the_burst(shop, shopper):
    me = shopper()
    me.open()
    for text in ("How much is shipping to Texas?", "Do you ship to the UK?", "What are your candles made of?",
                 "How long does the 8 oz tin burn?"):
        me.ask(text)
    assert len(me.shop_says(3)) >= 3
    started = time.monotonic()
    me.shop_says(4, timeout=30)  # the fourth waits for the burst window, then is answered
    assert time.monotonic() - started > 3
    with shop.db.read() as session:
        held = session.exec(select(Message).where(Message.channel == "chat", Message.burst == True)).all()  # noqa: E712
        assert held


def test_an_xss_payload_is_shown_as_text(shop, shopper):
    me = shopper()
    me.open()
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>[x](javascript:window.__xss=3)'
    me.ask(payload)
    me.shop_says(1)
    assert me.part(".msg.visitor").all_inner_texts() == [payload]
    assert me.page.evaluate("window.__xss") is None
    assert me.part(".msg img").count() == 0 and me.part(".msg script").count() == 0
    assert me.part(".msg a[href^='javascript']").count() == 0


def test_a_second_visitor_cannot_read_the_first_ones_chat(shop, shopper):
    first, second = shopper(), shopper()
    first.open()
    first.ask("Do you ship to the UK? My name is Ada Quill.")
    first.shop_says(1)
    second.open()
    second.ask("How much is shipping?")
    second.shop_says(1)
    seen = second.part(".panel").inner_text()
    assert "Ada Quill" not in seen and "UK" not in seen


def test_a_page_on_another_site_is_refused(shop, shopper):
    stranger = shopper(shop.evil)
    refused: list[int] = []
    stranger.page.on("response", lambda r: refused.append(r.status) if "/chat/api/" in r.url else None)
    with shop.db.read() as session:
        before = len(session.exec(select(ChatSession)).all())
    stranger.part(".launcher").click()
    stranger.part("textarea").fill("hello?")
    stranger.part("textarea").press("Enter")
    stranger.part(".notice").wait_for()
    with shop.db.read() as session:
        assert len(session.exec(select(ChatSession)).all()) == before
    assert stranger.part(".msg.shop").count() == 0
    stranger.problems.clear()  # the browser logs the refused CORS requests as errors: that is the point


def answers_mailed(shop, address: str) -> list:
    return [m for m in shop.smtp.messages
            if address in m.rcpt_tos and m.message()["Subject"].startswith("Your question to")]


def test_the_owners_reply_reaches_the_open_panel_and_the_mailbox_once_closed(shop, shopper):
    me = shopper()
    me.open()
    me.ask("Do you ship live goldfish to Antarctica by drone?")
    [holding] = me.shop_says(1)
    assert "Maya" in holding
    me.part("form.email input").fill("jo@customer.test")
    me.part("form.email button").click()
    me.page.wait_for_function("""() => document.querySelector('#deskhand-chat').shadowRoot
        .textContent.includes("jo@customer.test")""")
    with shop.db.read() as session:
        [draft] = session.exec(select(Draft).join(Message, Draft.message_id == Message.id).where(
            col(Message.text).contains("goldfish"))).all()
    owner = shop.browser.new_context().new_page()
    owner.goto(f"{shop.daemon}/queue/{draft.id}")
    owner.fill("#password", PASSWORD)
    owner.click("form[action='/login'] button[type=submit]")
    owner.wait_for_url(f"{shop.daemon}/queue/{draft.id}")
    owner.fill("#text", "Sorry, no live animals <b>ever</b>. We only ship candles.")
    owner.click("form.approve button[type=submit]")
    owner.wait_for_url(f"{shop.daemon}/queue")
    said = me.shop_says(3)  # the holding reply, the linking code's note, the owner's answer
    assert "type it back to link your email and this chat" in said[1]
    assert said[2] == "Sorry, no live animals <b>ever</b>. We only ship candles."  # text, as the owner wrote it
    assert me.part(".msg.shop b").count() == 0
    assert not answers_mailed(shop, "jo@customer.test")  # the panel was open
    [code] = [m for m in shop.smtp.messages if "jo@customer.test" in m.rcpt_tos]  # to link their email, if typed
    assert code.message()["Subject"].startswith("Your code to link this chat with")

    # Closed a minute ago: the next answer goes by mail too.
    me.part(".close").click()
    me.open()
    me.ask("Can I pay by cheque?")
    assert "Maya" in me.shop_says(4)[-1]
    me.part(".close").click()
    with shop.db.transaction() as session:
        [second] = session.exec(select(Draft).join(Message, Draft.message_id == Message.id).where(
            col(Message.text).contains("cheque"))).all()
        for row in session.exec(select(ChatSession).where(ChatSession.email == "jo@customer.test")):
            row.last_seen_at = utcnow() - timedelta(minutes=5)
    owner.goto(f"{shop.daemon}/queue/{second.id}")
    owner.fill("#text", "We take cards and PayPal, not cheques.")
    owner.click("form.approve button[type=submit]")
    owner.wait_for_url(f"{shop.daemon}/queue")
    wait_until(lambda: answers_mailed(shop, "jo@customer.test"), 30, "the answer by mail")
    [mail] = answers_mailed(shop, "jo@customer.test")
    text = mail.message().get_body(("plain",)).get_content()
    assert "We take cards and PayPal, not cheques." in text and "chat on" in text
    with shop.db.read() as session:
        row = session.exec(select(Outbox).where(Outbox.draft_id == second.id, Outbox.kind == "reply")).one()
        assert row.status == "sent" and row.channel == "chat"
    me.open()
    assert me.shop_says(5)[-1] == "We take cards and PayPal, not cheques."  # and in the chat on return
    owner.context.close()


def test_usable_by_keyboard_and_on_a_phone(shop, shopper):
    me = shopper()
    page = me.page
    launcher = me.part(".launcher")
    assert launcher.get_attribute("aria-label") and launcher.evaluate("e => e.tagName") == "BUTTON"
    launcher.focus()
    page.keyboard.press("Enter")  # a real button: Enter opens it
    me.part("textarea").wait_for()
    active = "() => document.querySelector('#deskhand-chat').shadowRoot.activeElement"
    assert page.evaluate(f"({active})().tagName") == "TEXTAREA"  # the focus moves into the panel
    for button in me.part(".panel button").all():  # every button has a name a screen reader reads
        assert (button.get_attribute("aria-label") or button.inner_text()).strip()
    assert me.part("textarea").evaluate("e => e.labels.length") == 1
    box, screen = me.part(".panel").bounding_box(), page.viewport_size
    assert box["width"] >= screen["width"] - 2 and box["height"] >= screen["height"] * 0.9  # fills the phone
    page.keyboard.type("How much is shipping to Texas?")
    page.keyboard.press("Enter")
    assert "$7" in me.shop_says(1)[0]
    page.keyboard.press("Escape")  # closes, and the focus goes back to the launcher
    assert me.part(".panel").is_hidden() and launcher.get_attribute("aria-expanded") == "false"
    assert page.evaluate(f"({active})().className").startswith("launcher")

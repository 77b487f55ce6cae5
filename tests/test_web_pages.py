"""The owner's pages through FastAPI's TestClient, on SQLite and PostgreSQL: login, sessions,
CSRF, the queue (approve with an edit, reject, thread moved on), conversations, lessons, the
dashboard and Try it. Held drafts come from the real pipeline (``browser.hold``).
"""
from __future__ import annotations

import html
import io
import re
import sys
from argparse import Namespace

import pytest
from browser import (  # noqa: F401
    HUMAN,
    PASSWORD,
    SHIPPING,
    UNKNOWN,
    csrf_of,
    hold,
    login,
    make_web,
    own_knowledge,
    set_password,
    web_base,
)
from helpers import rows, write_settings
from sqlmodel import func, select

from responder.cli.customer_cmds import cmd_set_password
from responder.core.clock import clock
from responder.core.models import (
    Customer,
    Draft,
    DraftEvent,
    Lesson,
    Message,
    Outbox,
    OwnerSetting,
    Thread,
)
from responder.core.settings import load_settings
from responder.owner.password import PASSWORD_KEY, check_password

HELD = ("review", "handoff")
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def web(web_base, database_url):
    with make_web(web_base, database_url) as w:
        yield w


@pytest.fixture
def owner(web):
    """The app with a password set and the TestClient logged in."""
    set_password(web.ctx)
    assert login(web.client).status_code == 303
    return web


def replies(ctx, draft_id: int) -> list[Outbox]:
    return rows(ctx, Outbox, Outbox.draft_id == draft_id, Outbox.kind == "reply")


def count(ctx, model) -> int:
    with ctx.db.transaction() as session:
        return session.exec(select(func.count()).select_from(model)).one()


# --- password, login, sessions ----------------------------------------------------------------

def test_set_password_command_stores_a_scrypt_hash(tmp_path, database_url, monkeypatch, capsys):
    settings = load_settings(write_settings(tmp_path, database_url=database_url))
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cmd_set_password(settings, Namespace(password_stdin=True)) == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    assert cmd_set_password(settings, Namespace(password_stdin=True)) == 0
    assert "Password set" in capsys.readouterr().out

    from responder.core.db import Database
    db = Database(database_url)
    with db.transaction() as session:
        stored = session.get(OwnerSetting, PASSWORD_KEY).value
    db.dispose()
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1") and salt and digest
    assert check_password("a long enough password", stored)
    assert not check_password("a long enough passwort", stored)


def test_fresh_install_offers_try_it_and_asks_for_a_password(web):
    home = web.client.get("/")
    assert home.status_code == 200 and 'href="/try"' in home.text and "Try it first" in home.text
    assert web.client.get("/try").status_code == 200
    for path in ("/queue", "/dashboard", "/lessons", "/conversations"):
        page = web.client.get(path, follow_redirects=False)
        assert page.status_code == 403 and "python run.py set-password" in page.text
    headers = home.headers
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no scripts at all
    assert "default-src 'none'" in headers["content-security-policy"]


def test_pages_need_a_login_once_a_password_is_set(web):
    set_password(web.ctx)
    client = web.client
    for path in ("/", "/queue", "/try", "/dashboard", "/status", "/conversations/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    assert client.get("/healthz").json()["ok"] is True

    wrong = client.post("/login", data={"csrf": csrf_of(client.get("/login").text), "password": "not it at all"},
                        follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    assert client.get("/queue", follow_redirects=False).status_code == 303

    page = client.get("/login?next=/dashboard%3Fdays%3D7")
    assert 'value="/dashboard?days=7"' in page.text
    ok = client.post("/login", data={"csrf": csrf_of(page.text), "password": PASSWORD, "next": "/dashboard?days=7"},
                     follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard?days=7"
    cookie = ok.headers["set-cookie"].lower()
    assert "deskhand_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/queue").status_code == 200

    # A new password signs every browser out.
    set_password(web.ctx, "another password 42")
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_login_only_returns_to_a_local_path(web):
    set_password(web.ctx)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        page = web.client.get("/login")
        response = web.client.post("/login", data={"csrf": csrf_of(page.text), "password": PASSWORD, "next": target},
                                   follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/"


def test_logout(owner):
    page = owner.client.get("/queue")
    assert owner.client.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 200
    assert owner.client.get("/queue", follow_redirects=False).status_code == 303


def test_wrong_passwords_slow_down_and_the_owner_gets_in_after_seconds(web):
    set_password(web.ctx)
    client = web.client

    def attempt(password):
        return client.post("/login", data={"csrf": csrf_of(client.get("/login").text), "password": password},
                           follow_redirects=False)

    for _ in range(5):
        assert attempt("wrong password!").status_code == 401
    slowed = attempt(PASSWORD)  # even the right password is not read this soon
    assert slowed.status_code == 429 and slowed.headers["Retry-After"] == "2" and "wait 2 seconds" in slowed.text
    assert client.get("/queue", follow_redirects=False).status_code == 303
    clock.advance(seconds=3)  # seconds, not minutes: the owner is slowed, not locked out
    assert attempt("wrong password!").status_code == 401
    assert attempt(PASSWORD).headers["Retry-After"] == "4"  # each failure doubles the wait
    clock.advance(seconds=5)
    assert attempt(PASSWORD).status_code == 303 and client.get("/queue").status_code == 200


@pytest.mark.parametrize("trusted, slowed_at", [([], 6), (["127.0.0.1"], 21)])
def test_x_forwarded_for_resets_nothing_unless_a_trusted_proxy_sent_it(web_base, database_url, trusted, slowed_at):
    """The daemon's own uvicorn settings (ops.daemon.server_config) on a real socket: guesses that
    each claim another X-Forwarded-For address are one client when no proxy is trusted (slowed at
    the 6th), and still slow down together behind a trusted proxy (at the 21st, across clients)."""
    import threading
    import time

    import httpx
    import uvicorn

    from responder.ops.daemon import server_config
    from responder.web import create_app

    web_settings = web_base.settings.web.model_copy(update={"host": "127.0.0.1", "port": 0,
                                                            "trusted_proxies": trusted})
    settings = web_base.settings.model_copy(update={"web": web_settings})
    base = web_base.__class__(settings=settings, db=web_base.db, drafter=web_base.drafter, retriever=web_base.retriever)
    with make_web(base, database_url) as w:
        set_password(w.ctx)
        server = uvicorn.Server(server_config(create_app(w.ctx), settings.web))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                codes = []
                for n in range(slowed_at):
                    token = csrf_of(client.get("/login").text)
                    codes.append(client.post("/login", data={"csrf": token, "password": "wrong password!"},
                                             headers={"X-Forwarded-For": f"203.0.113.{n + 1}"}).status_code)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    assert codes == [401] * (slowed_at - 1) + [429]


def test_a_post_without_the_right_csrf_token_changes_nothing(owner):
    draft = hold(owner.ctx, HUMAN)
    assert draft.route in HELD
    for data in ({"text": "Sure, calling you now."}, {"text": "Sure", "csrf": "forged-token"}):
        response = owner.client.post(f"/queue/{draft.id}/approve", data=data)
        assert response.status_code == 403 and "Nothing was changed" in response.text
        response = owner.client.post(f"/queue/{draft.id}/reject", data=data)
        assert response.status_code == 403
    assert owner.client.post("/login", data={"password": PASSWORD}).status_code == 403
    assert replies(owner.ctx, draft.id) == []
    assert rows(owner.ctx, DraftEvent) == []
    assert rows(owner.ctx, Draft, Draft.id == draft.id)[0].status == "pending"
    assert owner.kicks == []


# --- the queue --------------------------------------------------------------------------------

def test_approve_with_an_edit_from_the_queue(owner):
    draft = hold(owner.ctx, UNKNOWN, subject="Goldfish delivery")
    assert draft.route in HELD and draft.status == "pending"
    queue = owner.client.get("/queue")
    assert "Goldfish delivery" in queue.text and "live goldfish" in queue.text
    assert all(reason in html.unescape(queue.text) for reason in draft.reasons)
    page = owner.client.get(f"/queue/{draft.id}")
    assert page.status_code == 200 and draft.text.split("\n")[0][:40] in page.text

    edited = "Sorry, we can't ship live animals.\r\nWe only sell candles."  # browsers send CRLF
    response = owner.client.post(f"/queue/{draft.id}/approve", data={"csrf": csrf_of(page.text), "text": edited},
                                 follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    assert "approved with your edits" in owner.client.get("/queue").text

    [reply] = replies(owner.ctx, draft.id)
    assert "Sorry, we can't ship live animals.\nWe only sell candles." in reply.body_text
    assert reply.automatic is False and reply.status == "queued" and reply.recipient == "jamie@customer.test"
    [after] = rows(owner.ctx, Draft, Draft.id == draft.id)
    assert after.text == draft.text  # the bot's draft is kept
    assert after.sent_text == "Sorry, we can't ship live animals.\nWe only sell candles."
    assert after.edited is True and after.status == "approved" and after.decided_by == "owner (web)"
    [event] = rows(owner.ctx, DraftEvent, DraftEvent.draft_id == draft.id)
    assert (event.action, event.actor) == ("approved", "owner (web)") and "edited" in event.detail
    assert owner.kicks == [1]
    # Approving again is refused with a clear message, and nothing more is queued.
    again = owner.client.post(f"/queue/{draft.id}/approve", data={"csrf": csrf_of(page.text), "text": edited})
    assert again.status_code == 409 and "already approved" in again.text
    assert len(replies(owner.ctx, draft.id)) == 1


def test_approve_unchanged_text_is_not_an_edit(owner):
    draft = hold(owner.ctx, HUMAN, sender="Ana <ana@customer.test>")
    assert draft.route in HELD
    with owner.ctx.db.transaction() as session:  # a draft of two lines, as the LLM backend writes them
        session.get(Draft, draft.id).text = draft.text + "\nAnything else I can help with?"
    page = owner.client.get(f"/queue/{draft.id}")
    assert "\nAnything else I can help with?</textarea>" in page.text
    as_sent_by_browser = draft.text + "\r\nAnything else I can help with?"
    owner.client.post(f"/queue/{draft.id}/approve", data={"csrf": csrf_of(page.text), "text": as_sent_by_browser})
    [after] = rows(owner.ctx, Draft, Draft.id == draft.id)
    assert after.status == "approved" and after.edited is False
    assert rows(owner.ctx, Lesson) == []


def test_reject_from_the_queue(owner):
    draft = hold(owner.ctx, HUMAN)
    page = owner.client.get(f"/queue/{draft.id}")
    response = owner.client.post(f"/queue/{draft.id}/reject", data={"csrf": csrf_of(page.text),
                                                                    "reason": "I phoned her instead"})
    assert response.status_code == 200 and "rejected: nothing was sent" in response.text
    [after] = rows(owner.ctx, Draft, Draft.id == draft.id)
    assert after.status == "rejected" and replies(owner.ctx, draft.id) == []
    [event] = rows(owner.ctx, DraftEvent, DraftEvent.draft_id == draft.id)
    assert event.action == "rejected" and event.detail == "I phoned her instead"
    assert str(draft.id) not in re.findall(r'data-draft="(\d+)"', owner.client.get("/queue").text)


def test_thread_moved_on_warns_before_sending(owner):
    first = hold(owner.ctx, HUMAN, subject="Order help", message_id="<first@customer.test>")
    later = hold(owner.ctx, "Also, my order number is 5521.", subject="Re: Order help",
                 message_id="<second@customer.test>", in_reply_to="<first@customer.test>")
    assert first.route in HELD and later.thread_id == first.thread_id
    page = owner.client.get(f"/queue/{first.id}")
    token = csrf_of(page.text)

    warned = owner.client.post(f"/queue/{first.id}/approve", data={"csrf": token, "text": first.text})
    assert warned.status_code == 409
    assert "wrote 1 more message" in warned.text and 'name="force"' in warned.text
    assert "my order number is 5521" in warned.text  # the thread is on the page
    assert replies(owner.ctx, first.id) == []
    assert rows(owner.ctx, Draft, Draft.id == first.id)[0].status == "pending"

    sent = owner.client.post(f"/queue/{first.id}/approve", data={"csrf": token, "text": first.text, "force": "1"},
                             follow_redirects=False)
    assert sent.status_code == 303
    assert len(replies(owner.ctx, first.id)) == 1
    [event] = rows(owner.ctx, DraftEvent, DraftEvent.draft_id == first.id)
    assert "although the customer wrote 1 more" in event.detail


def test_customer_html_is_escaped_on_every_owner_page(owner):
    draft = hold(owner.ctx, f"{SCRIPT} {HUMAN}", subject="<b>bold</b> question",
                 sender='"<img src=x>" <evil@customer.test>')
    assert draft.route in HELD
    pages = [owner.client.get(path) for path in
             ("/queue", f"/queue/{draft.id}", f"/conversations/{draft.thread_id}", "/conversations")]
    for page in pages:
        assert page.status_code == 200
        assert SCRIPT not in page.text and "<b>bold</b>" not in page.text and "<img src=x>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2].text
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages[1].text


def test_conversation_shows_each_draft_with_route_and_reasons(owner):
    auto = hold(owner.ctx, SHIPPING, subject="Shipping", message_id="<s1@customer.test>")
    held = hold(owner.ctx, HUMAN, subject="Re: Shipping", message_id="<s2@customer.test>",
                in_reply_to="<s1@customer.test>")
    assert auto.route == "auto" and held.thread_id == auto.thread_id
    page = owner.client.get(f"/conversations/{auto.thread_id}")
    assert page.status_code == 200
    assert "How much is shipping to Texas?" in page.text and HUMAN in page.text
    assert re.findall(r'data-draft="(\d+)"', page.text) == [str(auto.id), str(held.id)]
    assert all(reason in html.unescape(page.text) for reason in held.reasons)
    assert f'href="/queue/{held.id}"' in page.text
    assert owner.client.get("/conversations/99999").status_code == 404


def test_home_goes_to_the_queue_when_email_is_on(owner):
    settings = owner.ctx.settings
    owner.ctx.settings = settings.model_copy(update={"email": settings.email.model_copy(
        update={"imap_host": "imap.example.test", "username": "shop@example.test"})})
    try:
        response = owner.client.get("/", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/queue"
    finally:
        owner.ctx.settings = settings
    assert "Try it first" in owner.client.get("/").text  # no mailbox: Try it comes first


# --- lessons ------------------------------------------------------------------------------------

def test_accepting_a_lesson_writes_the_knowledge_and_reindexes(web_base, database_url, tmp_path):
    base = own_knowledge(web_base, tmp_path)
    with make_web(base, database_url) as web:
        set_password(web.ctx)
        login(web.client)
        draft = hold(web.ctx, UNKNOWN)
        assert draft.route in HELD
        answer = "Yes: live goldfish ship to Antarctica by drone for $95, in a heated tank."
        page = web.client.get(f"/queue/{draft.id}")
        web.client.post(f"/queue/{draft.id}/approve", data={"csrf": csrf_of(page.text), "text": answer})
        [lesson] = rows(web.ctx, Lesson)
        assert lesson.kind == "faq" and lesson.status == "proposed"

        listing = web.client.get("/lessons")
        assert "+## Do you ship live goldfish to Antarctica by drone?" in listing.text
        assert f'data-lesson="{lesson.id}"' in listing.text
        faq = base.settings.knowledge_dir / "faq.md"
        before = faq.read_text(encoding="utf-8")
        assert "goldfish" not in before
        assert not any("goldfish" in hit.source for hit in web.ctx.retriever.search("goldfish to Antarctica"))

        response = web.client.post(f"/lessons/{lesson.id}/accept", data={"csrf": csrf_of(listing.text)})
        assert response.status_code == 200 and "re-indexed" in response.text
        after = faq.read_text(encoding="utf-8")
        assert after.startswith(before.rstrip("\n")) and answer in after
        assert rows(web.ctx, Lesson)[0].status == "accepted"
        hits = web.ctx.retriever.search("Do you ship live goldfish to Antarctica?")
        assert hits and "goldfish" in hits[0].source.lower()
        # Accepting twice does nothing more.
        web.client.post(f"/lessons/{lesson.id}/accept", data={"csrf": csrf_of(listing.text)})
        assert faq.read_text(encoding="utf-8") == after


# --- dashboard -------------------------------------------------------------------------------

def test_dashboard_shows_numbers_and_five_charts(owner):
    for text in (SHIPPING, HUMAN, UNKNOWN):
        hold(owner.ctx, text, sender=f"C <c{len(text)}@customer.test>")
    page = owner.client.get("/dashboard?days=14")
    assert page.status_code == 200
    charts = re.findall(r'<figure class="chart" data-chart="(\w+)"><svg', page.text)
    assert charts == ["auto_rate", "handoff_rate", "first_response", "thumbs_down", "llm_spend"]
    assert "Answered automatically" in page.text and "1 of 3 needing a reply" in page.text
    assert owner.client.get("/dashboard?days=0").status_code == 200


# --- Try it -----------------------------------------------------------------------------------

def test_try_it_shows_the_outcome_and_stores_nothing(web):
    hold(web.ctx, HUMAN)  # something in the real database already
    tables = (Message, Draft, Outbox, Customer, Thread, DraftEvent)
    before = {model.__name__: count(web.ctx, model) for model in tables}
    client = web.client
    page = client.get("/try")  # no password yet: open
    result = client.post("/try", data={"csrf": csrf_of(page.text), "channel": "email", "sender": "kim@example.org",
                                       "subject": "Shipping", "text": SHIPPING})
    assert result.status_code == 200
    assert re.search(r'data-route="auto"', result.text) and "$7" in result.text
    assert "faq.md#How much is shipping?" in result.text

    sms = client.post("/try", data={"csrf": csrf_of(page.text), "channel": "sms", "text": HUMAN})
    assert 'data-route="handoff"' in sms.text and "asked for a person" in sms.text
    too_long = client.post("/try", data={"csrf": csrf_of(page.text), "channel": "email", "text": "x" * 20_001})
    assert too_long.status_code == 400 and "longer than 20,000" in too_long.text
    escaped = client.post("/try", data={"csrf": csrf_of(page.text), "channel": "email", "text": SCRIPT})
    assert SCRIPT not in escaped.text and "&lt;script&gt;" in escaped.text
    assert {model.__name__: count(web.ctx, model) for model in tables} == before
    assert web.kicks == []

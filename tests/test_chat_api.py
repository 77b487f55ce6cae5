"""The site chat's API through FastAPI's TestClient, on SQLite and PostgreSQL, with the real pipeline
and the real send job's chat worker: origins, sessions, answers, thumbs, "talk to a person", the
email a visitor leaves (answers by mail, and the code that links them to their email customer),
caps, one visitor never reading another's chat, and a reply waking an open long poll.
"""
from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import httpx
import pytest
from browser import HUMAN, hold, serve  # noqa: F401
from fastapi.testclient import TestClient
from helpers import ROOT, write_settings
from sqlmodel import select

from responder.core.clock import clock
from responder.core.db import Database
from responder.core.models import (
    ChatSession,
    Customer,
    Draft,
    Feedback,
    Identity,
    Message,
    Outbox,
    OutboxKind,
)
from responder.core.settings import load_settings
from responder.ops import sending
from responder.ops.context import Context, build_context
from responder.ops.jobs import process_pending
from responder.ops.privacy import forget_customer
from responder.owner import metrics
from responder.owner.approvals import newer_messages
from responder.owner.report import format_channels
from responder.web import chat_api, create_app

SHOP = "http://shop.test:8000"
SHIPPING = "How much is shipping to Texas?"


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory):
    """The sample shop with its site allowed, as the README tells an owner to write it."""
    folder = tmp_path_factory.mktemp("chat")
    knowledge = folder / "knowledge"
    shutil.copytree(ROOT / "knowledge", knowledge)
    path = write_settings(folder, database_url=f"sqlite:///{folder / 'base.sqlite3'}", knowledge_dir=knowledge,
                          extra=f'[chat]\nallowed_origins = ["{SHOP}"]\n')
    ctx = build_context(load_settings(path))
    yield ctx
    ctx.db.dispose()


@pytest.fixture
def chat(chat_base, database_url):
    ctx = Context(settings=chat_base.settings, db=Database(database_url), drafter=chat_base.drafter,
                  retriever=chat_base.retriever)
    ctx.db.migrate()
    woken: list[int] = []
    app = create_app(ctx, on_inbound=lambda: woken.append(1))
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        yield SimpleNamespace(ctx=ctx, app=app, client=client, woken=woken)
    ctx.db.dispose()


class Visitor:
    def __init__(self, chat, origin: str = SHOP):
        self.chat, self.origin = chat, origin
        answer = chat.client.post("/chat/api/sessions", headers={"Origin": origin})
        assert answer.status_code == 201, answer.text
        self.token = answer.json()["token"]
        self.cursor = ""
        self.n = 0

    @property
    def headers(self) -> dict:
        return {"Origin": self.origin, "Authorization": f"Bearer {self.token}"}

    def say(self, text: str, client_id: str | None = None):
        self.n += 1
        return self.chat.client.post("/chat/api/messages", headers=self.headers,
                                     json={"text": text, "client_id": client_id or f"c{self.n}"})

    def read(self, after: str | None = None) -> dict:
        answer = self.chat.client.get("/chat/api/messages", headers=self.headers,
                                      params={"after": self.cursor if after is None else after})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        self.cursor = body["cursor"]
        return body


def answer_all(ctx) -> None:
    """What the daemon does after a chat message: the process job, then the chat send worker."""
    process_pending(ctx)
    asyncio.run(sending.send_outbox(ctx, "chat"))


def shop_items(view: dict) -> list[dict]:
    return [i for i in view["items"] if i["role"] == "shop"]


# --- origins ---------------------------------------------------------------------------------------

def test_only_the_allowed_sites_and_the_daemons_own_pages_may_use_the_chat(chat):
    assert chat.client.get("/chat/api/config", headers={"Origin": SHOP}).status_code == 200
    assert chat.client.get("/chat/api/config", headers={"Origin": "http://127.0.0.1:8025"}).status_code == 200
    for origin in (None, "null", "http://evil.test", "http://shop.test:8001", "https://shop.test:8000"):
        answer = chat.client.post("/chat/api/sessions", headers={"Origin": origin} if origin else {})
        assert answer.status_code == 403, origin
        assert "error" in answer.json()
    with chat.ctx.db.read() as session:
        assert session.exec(select(ChatSession)).all() == []
    # The browser's preflight: only an allowed origin is told it may send the token.
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = chat.client.options("/chat/api/messages", headers={"Origin": SHOP, **ask})
    assert allowed.headers["access-control-allow-origin"] == SHOP
    refused = chat.client.options("/chat/api/messages", headers={"Origin": "http://evil.test", **ask})
    assert "access-control-allow-origin" not in refused.headers
    # A token taken to another site is refused there too.
    visitor = Visitor(chat)
    stolen = chat.client.get("/chat/api/messages", headers={**visitor.headers, "Origin": "http://evil.test"})
    assert stolen.status_code == 403


def test_the_widget_script_is_served_for_other_sites(chat):
    if not chat_api.WIDGET.exists():
        pytest.skip("the widget script is not written yet")
    answer = chat.client.get("/chat/widget.js")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["cross-origin-resource-policy"] == "cross-origin"
    again = chat.client.get("/chat/widget.js", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    assert "set-cookie" not in answer.headers


def test_the_sample_shop_page_shows_the_widget_under_a_strict_policy(chat):
    page = chat.client.get("/shop")
    assert page.status_code == 200 and '<script src="/chat/widget.js" defer></script>' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy and "'unsafe-inline'" not in \
        policy.split("script-src")[1].split(";")[0]
    assert "set-cookie" not in page.headers


# --- a conversation --------------------------------------------------------------------------------

def test_a_question_is_answered_by_the_pipeline_and_shown_once(chat):
    visitor = Visitor(chat)
    sent = visitor.say(SHIPPING, "first")
    assert sent.status_code == 202 and sent.json() == {"id": sent.json()["id"], "client_id": "first"}
    assert chat.woken == [1]  # the process job was woken
    again = visitor.say(SHIPPING, "first")  # the widget's retry after a lost answer
    assert again.json()["id"] == sent.json()["id"] and chat.woken == [1]
    view = visitor.read()
    assert [i["text"] for i in view["items"]] == [SHIPPING] and view["items"][0]["client_id"] == "first"
    assert view["typing"] is True
    answer_all(chat.ctx)
    view = visitor.read()
    [reply] = view["items"]
    assert reply["role"] == "shop" and reply["kind"] == "reply" and "$7" in reply["text"]
    assert reply["rate"].startswith("d-") and reply["vote"] is None and view["typing"] is False
    assert visitor.read()["items"] == []  # nothing new after the cursor
    assert len(visitor.read(after="")["items"]) == 2  # a reload sees the whole conversation
    with chat.ctx.db.read() as session:
        message = session.exec(select(Message).where(Message.channel == "chat", Message.direction == "in")).one()
        assert message.sender.startswith("chat:") and message.customer_id is not None
        identity = session.exec(select(Identity).where(Identity.customer_id == message.customer_id)).one()
        assert identity.kind == "chat" and identity.value == message.sender
        assert session.exec(select(Draft)).one().route == "auto"


def test_a_visitor_never_sees_or_rates_another_visitors_chat(chat):
    first, second = Visitor(chat), Visitor(chat)
    first.say(SHIPPING)
    answer_all(chat.ctx)
    rate = shop_items(first.read())[0]["rate"]
    assert second.read(after="")["items"] == []
    vote = chat.client.post("/chat/api/feedback", headers=second.headers, json={"rate": rate, "vote": "down"})
    assert vote.status_code == 404
    for header in ("Bearer " + "x" * 43, "Bearer", "Basic abc", ""):
        answer = chat.client.get("/chat/api/messages", headers={"Origin": SHOP, "Authorization": header})
        assert answer.status_code == 401


def test_thumbs_are_recorded_once_per_answer_and_counted_for_the_owner(chat):
    visitor = Visitor(chat)
    visitor.say(SHIPPING)
    answer_all(chat.ctx)
    rate = shop_items(visitor.read())[0]["rate"]
    post = lambda body: chat.client.post("/chat/api/feedback", headers=visitor.headers, json=body)  # noqa: E731
    assert post({"rate": rate, "vote": "up"}).json() == {"vote": "up"}
    assert post({"rate": rate, "vote": "down", "comment": "It didn't say how long   it takes"}).json() == \
        {"vote": "down"}
    assert post({"rate": rate, "vote": "maybe"}).status_code == 400
    assert post({"rate": "d-999999", "vote": "up"}).status_code == 404
    assert shop_items(visitor.read(after=""))[0]["vote"] == "down"
    with chat.ctx.db.read() as session:
        [row] = session.exec(select(Feedback)).all()
        assert row.vote == "down" and row.comment == "It didn't say how long it takes"
        start = datetime(2000, 1, 1, tzinfo=timezone.utc)
        counted = metrics.compute(session, start=start, end=datetime(2100, 1, 1, tzinfo=timezone.utc),
                                  settings=chat.ctx.settings)
        assert (counted.thumbs_up, counted.thumbs_down) == (0, 1) and counted.messages_in == 1
        assert counted.by_channel == {"chat": 1} and format_channels(counted.by_channel) == "1 site chat"


def test_talk_to_a_person_hands_off_and_offers_the_email_form(chat):
    visitor = Visitor(chat)
    assert chat.client.post("/chat/api/person", headers=visitor.headers, json={"client_id": "p1"}).status_code == 202
    answer_all(chat.ctx)
    view = visitor.read()
    asked, told = view["items"]
    assert asked["text"] == "I'd like to talk to a person, please."
    assert told["kind"] == "holding" and "Maya" in told["text"] and told["rate"] is None
    assert view["handed_off"] is True and view["offer_person"] is False and view["email"] == ""
    with chat.ctx.db.read() as session:
        draft = session.exec(select(Draft)).one()
        assert draft.route == "handoff" and any("asked for a person" in r for r in draft.reasons)


def test_the_person_button_is_offered_after_five_messages(chat):
    visitor = Visitor(chat)
    clock.freeze(clock.now())
    for n, text in enumerate(["How much is shipping?", "Do you ship to the UK?", "What are your candles made of?",
                              "How long do they burn?", "Can I return one?"], 1):
        visitor.say(text)
        answer_all(chat.ctx)
        assert visitor.read()["offer_person"] is (n >= 5), n
        clock.advance(seconds=20)  # one question at a time, as people type


def test_a_left_email_gets_answers_by_mail_and_links_the_customer_by_code(chat):
    ctx = chat.ctx
    earlier = hold(ctx, "Do you ship to Canada?", sender="Jamie Rivera <jamie@customer.test>")  # their email thread
    visitor = Visitor(chat)
    visitor.say(HUMAN)
    answer_all(ctx)
    assert visitor.read()["handed_off"] is True
    bad = chat.client.post("/chat/api/email", headers=visitor.headers, json={"email": "jamie@"})
    assert bad.status_code == 400
    left = chat.client.post("/chat/api/email", headers=visitor.headers, json={"email": "Jamie@Customer.test"})
    assert left.json() == {"email": "jamie@customer.test"}
    answer_all(ctx)
    view = visitor.read()
    assert view["email"] == "jamie@customer.test"
    said, told = view["items"]
    assert said["text"] == "My email is jamie@customer.test"
    assert "type it back to link your email and this chat" in told["text"]
    with ctx.db.read() as session:
        mail = session.exec(select(Outbox).where(Outbox.kind == OutboxKind.LINK_CODE)).one()
        assert mail.recipient == "jamie@customer.test" and "in the chat on our website" in mail.body_text
        assert mail.subject.startswith("Your code to link this chat with")
        code = re.search(r"Your code: (\d{6})", mail.body_text).group(1)
    visitor.say(code)
    answer_all(ctx)
    assert shop_items(visitor.read())[-1]["text"] == "Thanks, your email and this chat are linked."
    with ctx.db.read() as session:
        chat_customer = session.exec(select(Message.customer_id).where(Message.channel == "chat")).first()
        assert chat_customer == session.exec(select(Message.customer_id).where(
            Message.id == earlier.message_id)).one()
        kinds = {i.kind for i in session.exec(select(Identity).where(Identity.customer_id == chat_customer))}
        assert kinds == {"chat", "email"} and len(session.exec(select(Customer)).all()) == 1


def test_caps_on_size_and_rate(chat):
    visitor = Visitor(chat)
    too_long = visitor.say("x" * (chat.ctx.settings.chat.max_chars + 1))
    assert too_long.status_code == 413 and "at most 2,000 characters" in too_long.json()["error"]
    huge = chat.client.post("/chat/api/messages", headers={**visitor.headers, "Content-Type": "application/json"},
                            content=b'{"text": "' + b"y" * 70_000 + b'"}')
    assert huge.status_code == 413
    assert chat.client.post("/chat/api/messages", headers=visitor.headers, content=b"not json").status_code == 400
    assert visitor.say("   ").status_code == 400
    assert chat.client.post("/chat/api/messages", headers=visitor.headers,
                            json={"text": "hi", "client_id": "<script>"}).status_code == 400
    codes = [visitor.say(f"question {n}").status_code for n in range(chat.ctx.settings.chat.messages_per_minute + 1)]
    assert codes[:-1] == [202] * chat.ctx.settings.chat.messages_per_minute and codes[-1] == 429
    with chat.ctx.db.read() as session:
        stored = session.exec(select(Message).where(Message.channel == "chat")).all()
        assert len(stored) == chat.ctx.settings.chat.messages_per_minute
    news = [chat.client.post("/chat/api/sessions", headers={"Origin": SHOP}).status_code
            for _ in range(chat.ctx.settings.chat.sessions_per_hour_per_address)]
    assert news.count(201) == chat.ctx.settings.chat.sessions_per_hour_per_address - 1 and news[-1] == 429


def test_more_than_three_messages_in_ten_seconds_are_answered_together(chat):
    visitor = Visitor(chat)
    clock.freeze(clock.now())
    questions = ["How much is shipping to Texas?", "Do you ship to the UK?", "What are your candles made of?",
                 "How long does the 8 oz tin burn?", "Do you sell gift cards?", "Can I return a used candle?"]
    for text in questions:
        assert visitor.say(text).status_code == 202
    answer_all(chat.ctx)
    view = visitor.read()
    assert len(shop_items(view)) == 3 and view["typing"] is True  # the rest wait for the burst to end
    clock.advance(seconds=12)
    answer_all(chat.ctx)
    view = visitor.read()
    assert len(shop_items(view)) == 1 and view["typing"] is False  # one answer for the three held
    with chat.ctx.db.read() as session:
        routes = [d.route for d in session.exec(select(Draft).order_by(Draft.id))]
        assert routes.count("throttled") == 2


def test_forgetting_the_customer_ends_the_chat_session(chat):
    visitor = Visitor(chat)
    visitor.say(SHIPPING)
    answer_all(chat.ctx)
    with chat.ctx.db.transaction() as session:
        customer = session.get(Customer, session.exec(select(Message.customer_id).where(
            Message.channel == "chat")).first())
        forget_customer(session, customer, settings=chat.ctx.settings)
    answer = chat.client.get("/chat/api/messages", headers=visitor.headers)
    assert answer.status_code == 401


# --- the long poll -----------------------------------------------------------------------------------

def while_polling(chat, visitor: Visitor, act) -> dict:
    """``act(base_url)`` while the visitor's panel waits in a 20 s long poll over real HTTP; what
    the poll answered and how long it took."""
    with serve(chat.app) as base:
        got: dict = {}

        def poll():
            started = time.monotonic()
            answer = httpx.get(f"{base}/chat/api/messages", params={"after": visitor.cursor, "wait": 20},
                               headers=visitor.headers, timeout=30)
            got.update(answer=answer.json(), took=time.monotonic() - started)

        waiting = threading.Thread(target=poll)
        waiting.start()
        time.sleep(0.5)
        act(base)
        waiting.join(timeout=30)
    return got


def test_a_reply_wakes_the_open_long_poll_at_once(chat, monkeypatch):
    monkeypatch.setattr(chat_api, "RECHECK_S", 60.0)  # only the send job's wake-up can end the wait early
    visitor = Visitor(chat)
    visitor.say(SHIPPING)
    visitor.read()
    got = while_polling(chat, visitor, lambda base: answer_all(chat.ctx))
    assert shop_items(got["answer"]) and got["took"] < 15, got


def test_the_conversation_remembers_the_product(chat):
    visitor = Visitor(chat)
    clock.freeze(clock.now())
    visitor.say("I'm looking at the Amber Noir candle.")
    answer_all(chat.ctx)
    clock.advance(seconds=30)
    visitor.say("How long does it burn?")
    answer_all(chat.ctx)
    assert "45 hours" in shop_items(visitor.read())[-1]["text"]


def test_outside_the_shops_hours_the_chat_says_when_a_person_will_reply(chat):
    settings = chat.ctx.settings.model_copy(update={"chat": chat.ctx.settings.chat.model_copy(
        update={"hours": "Mo-Fr 09:00-17:00"})})
    ctx = Context(settings=settings, db=chat.ctx.db, drafter=chat.ctx.drafter, retriever=chat.ctx.retriever)
    client = TestClient(create_app(ctx), base_url="http://127.0.0.1:8025")
    clock.freeze(datetime(2026, 12, 5, 15, tzinfo=timezone.utc))  # a Saturday (the test shop is on UTC)
    assert client.get("/chat/api/config", headers={"Origin": SHOP}).json()["hours_note"] == \
        "We're closed now; a person will reply from 9:00 on Monday."
    visitor = Visitor(SimpleNamespace(client=client))
    assert visitor.read()["hours_note"].startswith("We're closed now")
    clock.freeze(datetime(2026, 12, 7, 10, tzinfo=timezone.utc))  # Monday morning
    assert visitor.read()["hours_note"] == ""


def test_leaving_an_email_is_not_writing_again_after_a_held_draft(chat):
    visitor = Visitor(chat)
    visitor.say("Do you ship live goldfish to Antarctica by drone?")
    answer_all(chat.ctx)
    chat.client.post("/chat/api/email", headers=visitor.headers, json={"email": "jo@customer.test"})
    answer_all(chat.ctx)
    with chat.ctx.db.read() as session:
        held = session.exec(select(Draft).where(Draft.route.in_(["review", "handoff"]))).one()
        assert newer_messages(session, held) == []
    visitor.say("Hello? Anyone there?")
    answer_all(chat.ctx)
    with chat.ctx.db.read() as session:
        assert [m.text for m in newer_messages(session, held)] == ["Hello? Anyone there?"]


def test_every_held_chat_question_is_said_to_be_held(chat):
    visitor = Visitor(chat)
    clock.freeze(clock.now())
    for question in ("Can I change my order after I placed it?", "Do you ship live goldfish by drone?"):
        visitor.say(question)
        answer_all(chat.ctx)
        clock.advance(seconds=30)
    view = visitor.read()
    assert [i["kind"] for i in shop_items(view)] == ["holding", "holding"] and view["typing"] is False


def test_many_visitors_asking_the_same_question_is_no_loop(chat):
    routes = []
    for _ in range(chat.ctx.settings.routing.loop_threshold + 1):
        visitor = Visitor(chat)
        visitor.say("How much is shipping to Texas for one candle?")
        answer_all(chat.ctx)
        routes.append(shop_items(visitor.read())[0]["kind"])
    assert routes == ["reply"] * len(routes)


def test_each_routed_message_is_reported_for_the_chat_sender(chat):
    visitor = Visitor(chat)
    visitor.say(SHIPPING)
    seen: list[str] = []
    assert process_pending(chat.ctx, on_routed=lambda *routed: seen.append(routed)) == 1
    [(channel, sender, route)] = seen
    assert channel == "chat" and sender.startswith("chat:") and route == "auto"


def test_the_widget_goes_out_gzipped_when_the_browser_takes_it(chat):
    if not chat_api.WIDGET.exists():
        pytest.skip("the widget script is not written yet")
    plain = chat.client.get("/chat/widget.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == chat_api.WIDGET.read_bytes()
    packed = chat.client.get("/chat/widget.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    assert packed.content == plain.content  # httpx decoded it


def test_the_visitors_own_message_wakes_their_open_long_poll(chat, monkeypatch):
    monkeypatch.setattr(chat_api, "RECHECK_S", 60.0)
    visitor = Visitor(chat)
    visitor.read()

    def send(base):
        assert httpx.post(f"{base}/chat/api/messages", headers=visitor.headers,
                          json={"text": SHIPPING, "client_id": "w1"}).status_code == 202

    got = while_polling(chat, visitor, send)
    assert got["answer"]["items"][0]["client_id"] == "w1" and got["answer"]["typing"] is True
    assert got["took"] < 15

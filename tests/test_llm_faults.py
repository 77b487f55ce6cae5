"""LLM faults through the whole pipeline: a stored customer email, ``process_pending``, one routed draft.

The openai backend talks to the loopback chat server (``fakes.openai_chat``, real ``openai`` client)
scripted to fail the way real servers do: no answer within the timeout, 429 with Retry-After
(short, too long, forever), 500, a reply that is malformed JSON, a 200 whose body is not JSON at
all (a proxy's error page, a cut-off answer), an empty reply, a server that is down. Whatever
happens, the message is processed (not retried, not quarantined), its draft has a route and a
reason in plain words, and the whole step takes no longer than ``[llm] budget_s`` plus a margin
for retrieval and the guard on a busy machine.
"""
from __future__ import annotations

import time

import pytest
from fakes.openai_chat import FakeOpenAIChat
from helpers import customer_mail, write_settings
from sqlmodel import select

from responder.core.models import Draft, Message, MessageStatus
from responder.core.settings import load_settings
from responder.draft.openai_backend import OpenAIDrafter
from responder.intake.store import store_inbound_email
from responder.ops.context import Context, build_context
from responder.ops.jobs import process_pending

pytestmark = pytest.mark.timeout(60)

TIMEOUT_S, BUDGET_S = 1.0, 4.0
MARGIN_S = 2.5   # retrieval, the guard and the database, on two cores shared with other work
QUESTION = "How much is shipping to Ohio?"
SHIPPING = "faq.md#How much is shipping?"
GOOD = {"reply": "Shipping in the US is a flat $7 per order, and it's free on orders over $60.",
        "confidence": 0.93, "sources": [SHIPPING], "needs_human": False}


class FaultyLLM(FakeOpenAIChat):
    """The scripted chat server, plus raw answers: a 200 whose body is whatever bytes we say."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_bodies: list[bytes] = []
        fake, scripted_handler = self, self.server.RequestHandlerClass

        class RawHandler(scripted_handler):
            def do_POST(self):
                with fake._lock:
                    body = fake.raw_bodies.pop(0) if fake.raw_bodies else None
                if body is None:
                    return super().do_POST()
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake._lock:
                    fake.requests.append((self.path, {}))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server.RequestHandlerClass = RawHandler

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.raw_bodies.clear()
            self.requests.clear()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """One shop with the openai backend on the faulty server; the first message warms retrieval up."""
    tmp = tmp_path_factory.mktemp("llm-faults")
    with FaultyLLM() as fake:
        extra = (f'[llm]\nprovider = "openai"\nbase_url = "{fake.base_url}"\ntimeout_s = {TIMEOUT_S}\n'
                 f"budget_s = {BUDGET_S}\n[routing]\nmax_auto_replies_per_hour = 1000\nloop_threshold = 1000\n")
        ctx = build_context(load_settings(write_settings(tmp, database_url=f"sqlite:///{tmp / 'db.sqlite3'}",
                                                         extra=extra)))
        fake.enqueue(GOOD)
        route(ctx)
        yield ctx, fake
        ctx.db.dispose()


_uids = iter(range(1, 10_000))


def route(ctx: Context) -> tuple[Draft, Message, float]:
    """Store one customer email, process it, and return its draft, its message and the seconds it took."""
    uid = next(_uids)
    raw = customer_mail(QUESTION, sender=f"Jamie <jamie{uid}@customer.test>", subject="Shipping")
    with ctx.db.transaction() as session:
        message_id = store_inbound_email(session=session, raw=raw, mailbox="INBOX", uidvalidity=1, uid=uid).id
    started = time.monotonic()
    assert process_pending(ctx) == 1
    took = time.monotonic() - started
    with ctx.db.transaction() as session:
        message = session.get(Message, message_id)
        draft = session.exec(select(Draft).where(Draft.message_id == message_id)).one()
        session.expunge_all()
    return draft, message, took


# (fault, how to script it, route, a reason that must be given, at least this many chat requests)
FAULTS = [
    ("timeout", lambda f: [f.enqueue(GOOD, delay_s=TIMEOUT_S + 1.5) for _ in range(4)],
     "review", "the language model failed (no answer within", 2),
    ("429 then an answer", lambda f: (f.enqueue("slow down", status=429, retry_after=1), f.enqueue(GOOD)),
     "auto", None, 2),
    ("429 asking for a minute", lambda f: f.enqueue("slow down", status=429, retry_after=60),
     "review", "HTTP 429: slow down (asked to wait 60 s)", 1),
    ("429 every time", lambda f: [f.enqueue("slow down", status=429, retry_after=1) for _ in range(6)],
     "review", "HTTP 429: slow down; gave up after", 2),
    ("500 then an answer", lambda f: (f.enqueue("boom", status=500), f.enqueue(GOOD)), "auto", None, 2),
    ("500 every time", lambda f: [f.enqueue("boom", status=500) for _ in range(6)],
     "review", "the language model failed (HTTP 500: boom", 2),
    ("malformed JSON with a reply in it", lambda f: f.enqueue('{"reply": "Shipping in the US is a flat $7 per order'),
     "review", "the model returned malformed JSON", 1),
    ("malformed JSON, nothing usable", lambda f: f.enqueue('{"confidence": 0.9, reply: oops'),
     "review", "the language model failed (it returned malformed JSON with no reply in it)", 1),
    ("a body that is not JSON", lambda f: f.raw_bodies.extend([b"<html>502 Bad Gateway</html>"] * 6),
     "review", "the language model failed (its answer was not JSON", 2),
    ("a cut-off body, then an answer", lambda f: (f.raw_bodies.append(b'{"id": "x", "choices": ['), f.enqueue(GOOD)),
     "auto", None, 2),
    ("JSON that is no chat completion", lambda f: f.raw_bodies.append(b'{"error": "upstream"}'),
     "review", "the language model failed (its answer was not a chat completion)", 1),
    ("an empty reply", lambda f: f.enqueue(""), "review", "the model returned an empty reply", 1),
    ("a null reply", lambda f: f.enqueue(None), "review", "the model returned an empty reply", 1),
    ("an empty reply field", lambda f: f.enqueue({"reply": "", "confidence": 0.9}),
     "review", "the model returned an empty reply", 1),
]


@pytest.mark.parametrize("fault, script, expected, reason, asked", FAULTS, ids=[f[0] for f in FAULTS])
def test_every_fault_still_routes_the_message_in_bounded_time(shop, fault, script, expected, reason, asked):
    ctx, fake = shop
    fake.reset()
    script(fake)
    draft, message, took = route(ctx)
    chats = [path for path, _ in fake.requests if path.endswith("/chat/completions")]
    assert message.status == MessageStatus.PROCESSED and message.attempts == 0, (message.status, message.last_error)
    assert draft.route == expected, (fault, draft.route, draft.reasons)
    if reason:
        assert any(reason in r for r in draft.reasons), (fault, draft.reasons)
    print(f"{fault}: {draft.route} in {took:.2f} s")
    assert took < BUDGET_S + MARGIN_S, (fault, took)
    assert len(chats) >= asked, (fault, len(chats))
    if draft.route == "auto":  # the model's own answer went out, once it came
        assert draft.backend == "openai" and "$7" in draft.text
    elif draft.backend == "offline":  # the fallback: the offline drafter's answer, held for the owner
        assert "$7" in draft.text and draft.confidence <= 0.5


def test_retry_after_is_honoured_inside_the_budget(shop):
    ctx, fake = shop
    fake.reset()
    fake.enqueue("slow down", status=429, retry_after=1)
    fake.enqueue(GOOD)
    draft, _, took = route(ctx)
    assert draft.route == "auto" and 1.0 <= took < BUDGET_S + MARGIN_S, (draft.route, took)


def test_a_server_that_is_down_falls_back_within_the_budget(shop):
    ctx, _ = shop
    settings = ctx.settings.model_copy(deep=True)
    settings.llm.base_url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    down = Context(settings, ctx.db, OpenAIDrafter(settings), ctx.retriever)
    draft, message, took = route(down)
    assert message.status == MessageStatus.PROCESSED
    assert draft.route == "review" and draft.backend == "offline", (draft.route, draft.reasons)
    assert any("the language model failed (could not connect" in r for r in draft.reasons), draft.reasons
    assert took < BUDGET_S + MARGIN_S, took

"""The one-click links in emails (/a draft, /f feedback, /l lesson) through FastAPI's TestClient,
on SQLite and PostgreSQL. A GET never changes anything (link scanners open every link); a POST
acts once; changed, expired and used links get a clear page and nothing happens.
"""
from __future__ import annotations

import time

import pytest
from browser import (  # noqa: F401
    HUMAN,
    SHIPPING,
    UNKNOWN,
    hold,
    link_path,
    login,
    make_web,
    own_knowledge,
    set_password,
    web_base,
)
from helpers import rows
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from responder.core.models import Draft, DraftEvent, Feedback, Lesson, Outbox, UsedLink
from responder.owner import links

HELD = ("review", "handoff")
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def web(web_base, database_url):
    with make_web(web_base, database_url) as w:
        yield w


def replies(ctx, draft_id: int) -> list[Outbox]:
    return rows(ctx, Outbox, Outbox.draft_id == draft_id, Outbox.kind == "reply")


def draft_link(ctx, draft_id: int, action: str = "approve") -> str:
    return link_path(links.draft_link(ctx.settings, draft_id, action))


def tampered(path: str) -> str:
    """The same link with one character of its signed data changed."""
    i = len(path) // 2
    return path[:i] + ("B" if path[i] != "B" else "C") + path[i + 1:]


def nothing_done(ctx, draft: Draft) -> None:
    assert replies(ctx, draft.id) == []
    assert rows(ctx, Draft, Draft.id == draft.id)[0].status == "pending"
    assert rows(ctx, DraftEvent) == [] and rows(ctx, UsedLink) == []


# --- /a: a held draft --------------------------------------------------------------------------

def test_get_shows_a_confirmation_and_post_approves_once(web):
    draft = hold(web.ctx, HUMAN)
    assert draft.route in HELD
    path = draft_link(web.ctx, draft.id)
    for _ in range(2):  # a link scanner, then the owner
        page = web.client.get(path)
        assert page.status_code == 200 and "Approve &amp; send" in page.text and "<form method=\"post\">" in page.text
        assert "How much is shipping to Texas?" in page.text and draft.reasons[0].split("'")[0] in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["x-frame-options"] == "DENY"
    nothing_done(web.ctx, draft)

    done = web.client.post(path)
    assert done.status_code == 200 and "Approved" in done.text
    [reply] = replies(web.ctx, draft.id)
    assert reply.automatic is False and draft.text in reply.body_text
    [event] = rows(web.ctx, DraftEvent, DraftEvent.draft_id == draft.id)
    assert (event.action, event.actor) == ("approved", "owner (email link)")
    assert web.kicks == [1]

    again = web.client.post(path)
    assert again.status_code == 410 and "already used" in again.text
    assert web.client.get(path).status_code == 410
    assert len(replies(web.ctx, draft.id)) == 1 and web.kicks == [1]


def test_edit_link_sends_the_owners_text(web):
    draft = hold(web.ctx, UNKNOWN)
    assert draft.route in HELD
    path = draft_link(web.ctx, draft.id, "edit")
    page = web.client.get(path)
    assert '<textarea id="text" name="text">' in page.text and ">Send</button>" in page.text
    web.client.post(path, data={"text": "No live animals, sorry!\r\nCandles only."})
    [reply] = replies(web.ctx, draft.id)
    assert "No live animals, sorry!\nCandles only." in reply.body_text
    [after] = rows(web.ctx, Draft, Draft.id == draft.id)
    assert after.edited and after.text == draft.text and after.decided_by == "owner (email link)"


def test_reject_link_sends_nothing(web):
    draft = hold(web.ctx, HUMAN)
    path = draft_link(web.ctx, draft.id, "reject")
    assert 'name="reason"' in web.client.get(path).text
    done = web.client.post(path, data={"reason": "called her"})
    assert done.status_code == 200 and "Nothing was sent" in done.text
    assert rows(web.ctx, Draft, Draft.id == draft.id)[0].status == "rejected" and replies(web.ctx, draft.id) == []
    [event] = rows(web.ctx, DraftEvent, DraftEvent.draft_id == draft.id)
    assert event.detail == "called her" and web.kicks == []


def test_a_changed_link_is_refused(web):
    draft = hold(web.ctx, HUMAN)
    bad = tampered(draft_link(web.ctx, draft.id))
    for response in (web.client.get(bad), web.client.post(bad)):
        assert response.status_code == 400 and "not valid" in response.text and "Nothing was done" in response.text
    nothing_done(web.ctx, draft)


def test_an_expired_link_is_refused(web):
    draft = hold(web.ctx, HUMAN)

    class LongAgo(TimestampSigner):  # signed a day after the link's lifetime ran out
        def get_timestamp(self) -> int:
            return int(time.time() - web.ctx.settings.approvals.link_ttl_hours * 3600 - 86400)

    old = URLSafeTimedSerializer(web.ctx.settings.secret(), salt="deskhand.draft", signer=LongAgo)
    path = f"/a/{old.dumps({'d': draft.id, 'a': 'approve', 'n': 'old-nonce'})}"
    for response in (web.client.get(path), web.client.post(path)):
        assert response.status_code == 410 and "expired" in response.text
    nothing_done(web.ctx, draft)


def test_a_link_to_a_handled_draft_says_what_happened(web):
    draft = hold(web.ctx, HUMAN)
    web.client.post(draft_link(web.ctx, draft.id, "reject"))
    path = draft_link(web.ctx, draft.id, "approve")  # a second email's link
    page = web.client.get(path)
    assert page.status_code == 409 and "already rejected by owner (email link)" in page.text
    assert web.client.post(path).status_code == 409
    assert replies(web.ctx, draft.id) == []
    assert len(rows(web.ctx, UsedLink)) == 1  # the refused approval burned nothing


def test_thread_moved_on_warns_and_keeps_the_link_usable(web):
    first = hold(web.ctx, HUMAN, subject="Order", message_id="<o1@customer.test>")
    hold(web.ctx, "Actually it's order 7731.", subject="Re: Order", message_id="<o2@customer.test>",
         in_reply_to="<o1@customer.test>")
    path = draft_link(web.ctx, first.id)
    page = web.client.get(path)
    assert "wrote 1 more message" in page.text and 'name="force"' in page.text and "order 7731" in page.text

    warned = web.client.post(path)
    assert warned.status_code == 409 and "wrote 1 more message" in warned.text
    assert replies(web.ctx, first.id) == [] and rows(web.ctx, UsedLink) == []
    sent = web.client.post(path, data={"force": "1"})
    assert sent.status_code == 200 and "Approved" in sent.text
    assert len(replies(web.ctx, first.id)) == 1 and len(rows(web.ctx, UsedLink)) == 1


def test_link_page_escapes_customer_html(web):
    draft = hold(web.ctx, f"{SCRIPT} {HUMAN}", subject="<b>hey</b>")
    for action in ("approve", "edit", "reject"):
        page = web.client.get(draft_link(web.ctx, draft.id, action))
        assert SCRIPT not in page.text and "<b>hey</b>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# --- /f: feedback from customers ---------------------------------------------------------------

def test_feedback_links_record_and_change_a_vote(web):
    draft = hold(web.ctx, SHIPPING)
    assert draft.route == "auto"
    up, down = (link_path(links.feedback_link(web.ctx.settings, draft.id, v)) for v in ("up", "down"))

    page = web.client.get(up)
    assert page.status_code == 200 and "Did this answer your question?" in page.text
    assert 'value="up" checked' in page.text and 'href="/queue"' not in page.text  # no owner navigation
    assert 'name="comment"' not in page.text
    assert rows(web.ctx, Feedback) == []  # opening the link is not a vote
    assert "Thank you" in web.client.post(up, data={"vote": "up"}).text
    assert [(f.vote, f.comment) for f in rows(web.ctx, Feedback)] == [("up", "")]

    page = web.client.get(down)
    assert 'value="down" checked' in page.text and "What was missing?" in page.text
    web.client.post(down, data={"vote": "down", "comment": f"The price for Alaska {SCRIPT}"})
    [vote] = rows(web.ctx, Feedback)
    assert vote.vote == "down" and vote.comment == f"The price for Alaska {SCRIPT}" and vote.seen_at is None

    # The owner sees it on the queue page (escaped) and can mark it seen.
    set_password(web.ctx)
    login(web.client)
    queue = web.client.get("/queue")
    assert "The price for Alaska &lt;script&gt;" in queue.text and SCRIPT not in queue.text
    assert f'href="/conversations/{draft.thread_id}"' in queue.text


def test_bad_feedback_links_are_refused(web):
    auto, held = hold(web.ctx, SHIPPING), hold(web.ctx, HUMAN, sender="B <b@customer.test>")
    link = link_path(links.feedback_link(web.ctx.settings, auto.id, "down"))
    assert web.client.get(tampered(link)).status_code == 400
    assert web.client.post(tampered(link), data={"vote": "down"}).status_code == 400
    on_held = link_path(links.feedback_link(web.ctx.settings, held.id, "up"))
    assert web.client.post(on_held, data={"vote": "up"}).status_code == 400
    wrong_purpose = "/f/" + draft_link(web.ctx, auto.id).rsplit("/", 1)[1]  # a draft link's token
    assert web.client.get(wrong_purpose).status_code == 400
    assert rows(web.ctx, Feedback) == []


# --- /l: lessons from the digest ---------------------------------------------------------------

def _lesson(web) -> Lesson:
    draft = hold(web.ctx, UNKNOWN)
    from responder.owner import approvals
    with web.ctx.db.transaction() as session:
        approvals.approve(session, web.ctx.settings, draft.id, actor="test",
                          text="Live goldfish ship to Antarctica for $95 by drone.")
    [lesson] = rows(web.ctx, Lesson)
    return lesson


def test_lesson_link_accepts_once_and_reindexes(web_base, database_url, tmp_path):
    with make_web(own_knowledge(web_base, tmp_path), database_url) as web:
        lesson = _lesson(web)
        faq = web.ctx.settings.knowledge_dir / "faq.md"
        before = faq.read_text(encoding="utf-8")
        path = link_path(links.lesson_link(web.ctx.settings, lesson.id, "accept"))
        page = web.client.get(path)
        assert page.status_code == 200 and "+## Do you ship live goldfish" in page.text and ">Accept</button>" in page.text
        assert faq.read_text(encoding="utf-8") == before and rows(web.ctx, Lesson)[0].status == "proposed"

        done = web.client.post(path)
        assert done.status_code == 200 and "re-indexed" in done.text
        assert "$95 by drone" in faq.read_text(encoding="utf-8")
        assert "goldfish" in web.ctx.retriever.search("live goldfish to Antarctica")[0].source.lower()
        assert web.client.post(path).status_code == 410
        assert faq.read_text(encoding="utf-8").count("$95 by drone") == 1


def test_lesson_dismiss_link(web):
    lesson = _lesson(web)
    faq = web.ctx.settings.knowledge_dir / "faq.md"
    before = faq.read_text(encoding="utf-8")
    path = link_path(links.lesson_link(web.ctx.settings, lesson.id, "dismiss"))
    assert ">Dismiss</button>" in web.client.get(path).text
    assert "dismissed" in web.client.post(path).text
    assert rows(web.ctx, Lesson)[0].status == "dismissed" and faq.read_text(encoding="utf-8") == before
    accept = link_path(links.lesson_link(web.ctx.settings, lesson.id, "accept"))
    assert web.client.get(accept).status_code == 409
    assert web.client.post(accept).status_code == 409 and faq.read_text(encoding="utf-8") == before


def test_a_link_reaches_only_the_draft_it_was_made_for(web):
    """A forgotten customer's draft id can come back on SQLite (the top rowid is reused): the
    draft's own token is signed into the link, so an old link never acts on the new draft."""
    first, second = hold(web.ctx, HUMAN), hold(web.ctx, HUMAN, sender="B <b@customer.test>")
    stale = link_path(links.draft_link(web.ctx.settings, second.id, "approve", token=first.token))
    assert web.client.get(stale).status_code == 404
    assert "no longer exists" in web.client.post(stale).text
    nothing_done(web.ctx, second)
    vote = link_path(links.feedback_link(web.ctx.settings, second.id, "up", token=first.token))
    assert web.client.post(vote, data={"vote": "up"}).status_code == 400 and rows(web.ctx, Feedback) == []
    good = link_path(links.draft_link(web.ctx.settings, second.id, "approve", token=second.token))
    assert web.client.post(good).status_code == 200 and len(replies(web.ctx, second.id)) == 1

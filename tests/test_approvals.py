"""The approval queue's rules (responder.owner.approvals), signed links, lessons and feedback, on both
databases, with rows built directly; and ``run.py queue`` on the same rows."""
from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from helpers import ROOT, write_settings
from sqlmodel import select

import run
from responder.core.clock import clock
from responder.core.db import Database
from responder.core.models import (
    Customer,
    Draft,
    DraftEvent,
    DraftStatus,
    Lesson,
    Message,
    Outbox,
    Route,
    Thread,
    UsedLink,
)
from responder.core.settings import load_settings
from responder.owner import approvals, feedback, lessons, links


@pytest.fixture
def shop(tmp_path, database_url):
    knowledge = tmp_path / "knowledge"
    shutil.copytree(ROOT / "knowledge", knowledge)
    path = write_settings(tmp_path, database_url=database_url, knowledge_dir=knowledge,
                          extra='[digest]\nto = "owner@example.test"\n')
    settings = load_settings(path)
    db = Database(database_url)
    db.migrate()
    yield settings, db, path
    db.dispose()
    clock.reset()


def held(db, *, route=Route.REVIEW, text="Our gift cards come in $25 and $50.", channel="email",
         customer_text="Do you sell gift cards?") -> int:
    with db.transaction() as session:
        customer = Customer(name="Jamie Rivera")
        session.add(customer)
        session.flush()
        thread = Thread(customer_id=customer.id, channel=channel, subject="Gift cards")
        session.add(thread)
        session.flush()
        message = Message(channel=channel, direction="in", provider_id=f"m{thread.id}@customer.test",
                          thread_id=thread.id, customer_id=customer.id, sender="jamie@customer.test",
                          subject="Gift cards", text=customer_text, new_text=customer_text, status="processed",
                          references=["root@customer.test"])
        session.add(message)
        session.flush()
        draft = Draft(message_id=message.id, thread_id=thread.id, route=route, status=DraftStatus.PENDING,
                      text=text, reasons=["confidence 0.41 is below 0.75"])
        session.add(draft)
        session.flush()
        return draft.id


def test_approve_as_drafted_enqueues_one_owner_reply_in_the_thread(shop):
    settings, db, _ = shop
    draft_id = held(db)
    with db.transaction() as session:
        approvals.approve(session, settings, draft_id, actor="owner (cli)")
    with db.transaction() as session:
        draft = session.get(Draft, draft_id)
        [row] = session.exec(select(Outbox)).all()
        events = approvals.events(session, draft_id)
    assert draft.status == DraftStatus.APPROVED and not draft.edited and draft.sent_text == draft.text
    assert row.kind == "reply" and row.automatic is False and row.recipient == "jamie@customer.test"
    assert row.in_reply_to == f"m{row.thread_id}@customer.test"
    assert row.references == ["root@customer.test", row.in_reply_to]
    assert row.subject == "Re: Gift cards" and "Our gift cards come in $25 and $50." in row.body_text
    assert [(e.action, e.actor) for e in events] == [("approved", "owner (cli)")]
    with db.transaction() as session, pytest.raises(approvals.ApprovalError, match="already approved"):
        approvals.approve(session, settings, draft_id, actor="owner (web)")


def test_an_edit_keeps_the_original_and_proposes_a_lesson(shop):
    settings, db, _ = shop
    draft_id = held(db)
    with db.transaction() as session:
        approvals.approve(session, settings, draft_id, actor="owner (web)",
                          text="We sell gift cards for $25, $50 and $100, delivered by email.")
    with db.transaction() as session:
        draft = session.get(Draft, draft_id)
        [lesson] = session.exec(select(Lesson)).all()
        [row] = session.exec(select(Outbox)).all()
    assert draft.edited and draft.text == "Our gift cards come in $25 and $50."
    assert draft.sent_text.startswith("We sell gift cards") and "$100" in row.body_text
    # $100 was not in the bot's draft: the bot lacked a fact, so the lesson is a FAQ entry.
    assert lesson.kind == "faq" and lesson.path == "faq.md"
    assert lesson.addition.startswith("## Do you sell gift cards?\nWe sell gift cards")
    assert "+## Do you sell gift cards?" in lesson.diff
    with db.transaction() as session:
        file = lessons.accept(session, settings, lesson.id)
    assert file.read_text(encoding="utf-8").rstrip().endswith("delivered by email.")
    with db.transaction() as session, pytest.raises(lessons.LessonError, match="already accepted"):
        lessons.accept(session, settings, lesson.id)


def test_a_lesson_keeps_the_facts_not_the_words_to_one_customer(shop):
    """The owner's reply greets Priya, apologises and signs off; the FAQ entry it proposes holds
    only the facts (the next customer is not Priya, and no first answer missed anything)."""
    settings, db, _ = shop
    draft_id = held(db)
    with db.transaction() as session:
        approvals.approve(session, settings, draft_id, actor="owner (web)",
                          text="Hi Priya,\n\nSorry my first answer missed that! We sell gift cards for $25, $50 "
                               "and $100, delivered by email.\n\nThey never expire.\n\nBest,\nMaya")
        [lesson] = session.exec(select(Lesson)).all()
    assert lesson.kind == "faq"
    assert lesson.addition == ("## Do you sell gift cards?\nWe sell gift cards for $25, $50 and $100, delivered "
                               "by email.\n\nThey never expire.\n")


def test_a_wording_edit_becomes_a_tone_example(shop):
    settings, db, _ = shop
    draft_id = held(db)
    with db.transaction() as session:
        approvals.approve(session, settings, draft_id, actor="owner (web)",
                          text="Yes! Gift cards come in $25 and $50 and never expire.")
        [lesson] = session.exec(select(Lesson)).all()
    assert lesson.kind == "example" and lesson.path == "examples.jsonl"
    assert json.loads(lesson.addition) == {"customer": "Do you sell gift cards?",
                                           "reply": "Yes! Gift cards come in $25 and $50 and never expire."}


def test_thread_moved_on_needs_force(shop):
    settings, db, _ = shop
    draft_id = held(db)
    with db.transaction() as session:
        draft = session.get(Draft, draft_id)
        session.add(Message(channel="email", direction="in", provider_id="later@customer.test",
                            thread_id=draft.thread_id, sender="jamie@customer.test", text="never mind",
                            status="processed"))
    with db.transaction() as session, pytest.raises(approvals.ThreadMovedOn, match="1 more message"):
        approvals.approve(session, settings, draft_id, actor="owner (cli)")
    with db.transaction() as session:
        assert session.get(Draft, draft_id).status == DraftStatus.PENDING
        approvals.approve(session, settings, draft_id, actor="owner (cli)", force=True)
        assert "although the customer wrote 1 more" in approvals.events(session, draft_id)[-1].detail


def test_reject_expire_and_reminders(shop):
    settings, db, _ = shop
    rejected, old, fresh = held(db), held(db, route=Route.HANDOFF), held(db)
    with db.transaction() as session:
        approvals.reject(session, rejected, actor="owner (email)", reason="wrong product")
        session.get(Draft, old).created_at -= timedelta(days=15)
        session.get(Draft, fresh).created_at -= timedelta(hours=25)
    with db.transaction() as session:
        assert [d.id for d in approvals.due_reminders(session, settings)] == [old, fresh]
        assert approvals.expire_stale(session, settings) == 1
    with db.transaction() as session:
        statuses = {d.id: d.status for d in session.exec(select(Draft)).all()}
        assert statuses == {rejected: "rejected", old: "expired", fresh: "pending"}
        assert [d.id for d in approvals.pending(session)] == [fresh]
        assert session.exec(select(Outbox)).all() == []
        assert {(e.draft_id, e.action) for e in session.exec(select(DraftEvent)).all()} == {
            (rejected, "rejected"), (old, "expired")}


def test_sent_when_the_outbox_delivers(shop):
    from responder.send import outbox

    settings, db, _ = shop
    draft_id = held(db)
    with db.transaction() as session:
        approvals.approve(session, settings, draft_id, actor="owner (cli)")
    with db.transaction() as session:
        row = outbox.claim_next(session=session, channel="email")
        outbox.mark_sent(session=session, outbox_id=row.id, provider_id=row.message_id)
    with db.transaction() as session:
        assert session.get(Draft, draft_id).status == DraftStatus.SENT
        assert [e.action for e in approvals.events(session, draft_id)] == ["approved", "sent"]


def test_links_are_signed_expire_and_work_once(shop):
    settings, db, _ = shop
    url = links.draft_link(settings, 7, "approve")
    token = url.rsplit("/", 1)[1]
    assert url.startswith("http://127.0.0.1:0/a/")
    data = links.verify(settings, "draft", token, max_age_s=3600)
    assert (data["d"], data["a"]) == (7, "approve")
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    with pytest.raises(links.LinkError) as bad:
        links.verify(settings, "draft", tampered, max_age_s=3600)
    assert bad.value.reason == "tampered"
    with pytest.raises(links.LinkError):  # a feedback link can't pass as an approval link
        links.verify(settings, "draft", links.feedback_link(settings, 7, "up").rsplit("/", 1)[1], max_age_s=3600)
    with db.transaction() as session:
        links.use_once(session, data, "draft")
    with db.transaction() as session, pytest.raises(links.LinkError) as used:
        links.use_once(session, data, "draft")
    assert used.value.reason == "used"
    with db.transaction() as session:
        assert len(session.exec(select(UsedLink)).all()) == 1
    clock.advance(hours=2)
    with pytest.raises(links.LinkError) as old:
        links.verify(settings, "draft", token, max_age_s=3600)
    assert old.value.reason == "expired"


def test_feedback_votes_on_automatic_replies_only(shop):
    settings, db, _ = shop
    auto, review = held(db, route=Route.AUTO), held(db)
    with db.transaction() as session:
        feedback.record_vote(session, auto, "up")
        feedback.record_vote(session, auto, "down", "It didn't say   when it ships")
        with pytest.raises(feedback.FeedbackError):
            feedback.record_vote(session, review, "down")
    with db.transaction() as session:
        [row] = feedback.unseen_thumbs_down(session)
        assert (row.vote, row.comment) == ("down", "It didn't say when it ships")
        feedback.mark_seen(session, [row.id])
    with db.transaction() as session:
        assert feedback.unseen_thumbs_down(session) == []


def test_queue_command(shop, capsys):
    settings, db, path = shop
    first, second = held(db, customer_text="<b>gift</b> cards?"), held(db, route=Route.HANDOFF)
    assert run.main(["--config", str(path), "queue", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in listed] == [first, second] and listed[0]["message"] == "<b>gift</b> cards?"
    assert run.main(["--config", str(path), "queue", "show", str(first)]) == 0
    assert "why held: confidence 0.41 is below 0.75" in capsys.readouterr().out
    assert run.main(["--config", str(path), "queue", "approve", str(first), "--text", "Yes, from $25."]) == 0
    assert "approved draft" in capsys.readouterr().out
    assert run.main(["--config", str(path), "queue", "approve", str(first)]) == 1
    assert "already approved" in capsys.readouterr().out
    assert run.main(["--config", str(path), "queue", "reject", str(second), "--reason", "spam"]) == 0
    assert run.main(["--config", str(path), "queue", "show", "999"]) == 1
    assert "no held draft 999" in capsys.readouterr().out
    with db.transaction() as session:
        [row] = session.exec(select(Outbox)).all()
        assert "Yes, from $25." in row.body_text
        assert session.get(Draft, second).status == "rejected"
        assert approvals.events(session, second)[0].detail == "spam"


def test_a_link_is_not_burned_when_its_transaction_fails(shop):
    """A savepoint that is the first write of a transaction must roll back with it (on SQLite too)."""
    settings, db, _ = shop
    data = links.verify(settings, "draft", links.draft_link(settings, 1, "approve").rsplit("/", 1)[1],
                        max_age_s=60)
    with pytest.raises(RuntimeError), db.transaction() as session:
        links.use_once(session, data, "draft")
        raise RuntimeError("the approval failed after the link was recorded")
    with db.transaction() as session:
        assert not links.is_used(session, data)
        links.use_once(session, data, "draft")
    with db.transaction() as session:
        assert links.is_used(session, data)


def test_an_approved_reply_waits_when_the_customer_wrote_again_before_it_went_out(shop, smtp_capture, tmp_path):
    """The send job's rule (channels.base.wait_for_new_words) over the real SMTP channel: the
    reply is not sent, the row fails with the reason and the draft is back in the owner's queue."""
    import asyncio

    from helpers import make_context

    from responder.ops.sending import send_outbox

    settings, db, _ = shop
    ctx = make_context(write_settings(tmp_path, database_url=str(db.engine.url.render_as_string(hide_password=False)),
                                      smtp=smtp_capture, knowledge_dir=tmp_path / "knowledge"))
    draft_id = held(db)
    with db.transaction() as session:
        approvals.approve(session, settings, draft_id, actor="owner (cli)")
    clock.advance(minutes=5)
    with db.transaction() as session:
        first = session.get(Message, session.get(Draft, draft_id).message_id)
        session.add(Message(channel="email", direction="in", provider_id="later@customer.test",
                            thread_id=first.thread_id, customer_id=first.customer_id, sender=first.sender,
                            subject="Gift cards", text="Actually, never mind.", new_text="Actually, never mind.",
                            status="processed"))
    assert asyncio.run(send_outbox(ctx, "email")) == 1
    assert smtp_capture.messages == []
    with db.transaction() as session:
        draft = session.get(Draft, draft_id)
        [row] = session.exec(select(Outbox).where(Outbox.kind == "reply")).all()
        events = [e.action for e in approvals.events(session, draft_id)]
    assert row.status == "failed" and "wrote 1 more message after you approved" in row.last_error
    assert draft.status == DraftStatus.PENDING and row.last_error in draft.reasons and "returned" in events
    ctx.db.dispose()


def test_queue_list_shows_the_shops_time_like_the_digest(shop, capsys, monkeypatch):
    """The owner reads every time in the shop's timezone: ``queue list`` as the digest and stats."""
    from datetime import datetime, timezone

    settings, db, path = shop
    clock.freeze(datetime(2025, 3, 4, 14, 5, tzinfo=timezone.utc))
    draft_id = held(db)
    clock.reset()
    monkeypatch.setenv("DESKHAND_STORE__TIMEZONE", "America/New_York")
    assert run.main(["--config", str(path), "queue", "list"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"#{draft_id}") and "2025-03-04 09:05" in line and "14:05" not in line

"""Mail to the owner about one held draft: the notification, the reminder, expiry, and the tokens
a reply must carry. On real SQLite and PostgreSQL; the last test runs the whole loop on Dovecot
and the SMTP capture server.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from helpers import (
    PASSWORD_ENV,
    customer_mail,
    held,
    make_context,
    run_until_idle,
    write_settings,
)
from sqlmodel import select

from responder.core.clock import clock
from responder.core.models import (
    Draft,
    DraftEvent,
    Outbox,
    Route,
    new_token,
)
from responder.core.settings import load_settings
from responder.ops.jobs import poll_mailbox
from responder.owner import approvals, links
from responder.owner.owner_mail import (
    REF_RE,
    find_refs,
    notify_held,
    owner_message_id,
    send_reminders,
)

OWNER = 'to = "Owner@Example.test"\n'


# --- tokens in subjects and headers ---------------------------------------------------------------

def test_find_refs_reads_subjects_and_message_ids(tmp_path):
    settings = load_settings(write_settings(tmp_path, database_url="sqlite://"))
    draft_token, digest_token = new_token(), new_token()
    draft_id = owner_message_id(settings, "draft", draft_token)
    assert re.fullmatch(rf"<deskhand\.draft\.{re.escape(draft_token)}\.[0-9a-f]{{8}}@example\.test>", draft_id)
    assert owner_message_id(settings, "draft", draft_token) != draft_id  # random part: every mail unique

    references = f"<q1@customer.test> {owner_message_id(settings, 'digest', digest_token)} {draft_id}"
    assert find_refs(references) == [digest_token, draft_id.split(".")[2]] == [digest_token, draft_token]
    subject = f"Re: Re: [Deskhand] draft for Jamie [REF {draft_token}]"
    assert find_refs(subject) == [draft_token]
    assert find_refs(f"{subject} {draft_id}") == [draft_token]  # no repeats
    # Customers' ordinary ids, short strings and a bare token are not references.
    assert find_refs("<deskhand.0f3a9c@example.test> [ref abc] " + draft_token) == []
    assert REF_RE.search("[ref  " + draft_token + "]")


# --- rows: notification, reminder, expiry ----------------------------------------------------------

@pytest.fixture
def shop(shop_context):
    """``shop(extra) -> Context``: the sample shop with the owner's address set (``shop_context``)."""
    return lambda extra=f"[digest]\n{OWNER}", **kwargs: shop_context(extra, **kwargs)


@pytest.mark.parametrize("mode, notified", [("none", []), ("handoff", [Route.HANDOFF]),
                                            ("all", [Route.REVIEW, Route.HANDOFF])])
def test_notify_follows_the_setting(shop, mode, notified):
    ctx = shop(f'[digest]\n{OWNER}[approvals]\nnotify = "{mode}"\n')
    with ctx.db.transaction() as session:
        for route in (Route.REVIEW, Route.HANDOFF):
            draft = held(session, route, f"a question for {route}")
            notify_held(session, ctx.settings, draft)
            notify_held(session, ctx.settings, draft)  # at most one per draft
    with ctx.db.transaction() as session:
        rows = session.exec(select(Outbox).order_by(Outbox.id)).all()
        assert [session.get(Draft, r.draft_id).route for r in rows] == notified
        for row in rows:
            draft = session.get(Draft, row.draft_id)
            assert row.kind == "notify" and row.recipient == "owner@example.test" and row.thread_id is None
            assert not row.automatic and row.extra == {"auto_generated": True}
            assert row.subject.endswith(f" [ref {draft.token}]")
            assert row.message_id.startswith(f"<deskhand.draft.{draft.token}.")
            assert find_refs(row.subject) == find_refs(row.message_id) == [draft.token]
            assert f"a question for {draft.route}" in row.body_text
            assert "No knowledge above 0.55 similarity" in row.body_text


def test_notify_without_an_owner_address_does_nothing(shop):
    ctx = shop('[approvals]\nnotify = "all"\n')
    with ctx.db.transaction() as session:
        draft = held(session, Route.HANDOFF, "I want a person")
        assert notify_held(session, ctx.settings, draft) is None
    with ctx.db.transaction() as session:
        assert session.exec(select(Outbox)).all() == []


def test_notification_links_and_escaping(shop):
    ctx = shop()
    with ctx.db.transaction() as session:
        draft = held(session, Route.HANDOFF, 'Hello <script>alert("x")</script> & <b>bye</b>',
                     draft="We'll check <i>today</i>.")
        row = notify_held(session, ctx.settings, draft)
    html, text = row.body_html, row.body_text
    assert "<script>" not in html and "&lt;script&gt;alert(" in html and "&lt;i&gt;today" in html
    assert '<script>alert("x")</script>' in text  # plain text shows the words as written
    urls = re.findall(r'href="([^"]+/a/[^"]+)"', html)
    actions = [links.verify(ctx.settings, "draft", url.rsplit("/", 1)[1], max_age_s=60)["a"] for url in urls]
    assert actions == ["approve", "edit", "reject"]
    assert all(links.verify(ctx.settings, "draft", u.rsplit("/", 1)[1], max_age_s=60)["d"] == draft.id for u in urls)
    for url in urls:
        assert url in text  # the plain-text part spells every link out
    [mailto] = re.findall(r'href="(mailto:[^"]+)"', html)
    assert mailto.startswith("mailto:shop@example.test?subject=Re%3A%20%5BDeskhand%5D%20draft%20for%20Jamie")
    assert f"%5Bref%20{draft.token}%5D" in mailto and mailto.endswith("body=approve")
    assert "reply to this email" in text.lower() and "reject" in text


def test_reminder_once_after_the_delay_then_expiry(shop):
    ctx = shop('[digest]\n' + OWNER + '[approvals]\nremind_after_hours = 24\nexpire_days = 3\nnotify = "none"\n')
    clock.freeze(datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc))
    with ctx.db.transaction() as session:
        review_id = held(session, Route.REVIEW, "Do you sell wicks?").id
        handoff_id = held(session, Route.HANDOFF, "I want a person").id
    assert send_reminders(ctx) == 0  # too early
    clock.advance(hours=23)
    assert send_reminders(ctx) == 0
    clock.advance(hours=2)
    assert send_reminders(ctx) == 2
    assert send_reminders(ctx) == 0  # once per draft
    with ctx.db.transaction() as session:
        rows = session.exec(select(Outbox).order_by(Outbox.id)).all()
        assert [(r.kind, r.draft_id) for r in rows] == [("remind", review_id), ("remind", handoff_id)]
        review = session.get(Draft, review_id)
        assert review.reminded_at is not None and "waiting 25 h" in rows[0].subject.lower()
        assert rows[0].subject.endswith(f"[ref {review.token}]") and "25 h" in rows[0].body_text
        assert "expire" in rows[0].body_text and "3 days" in rows[0].body_text
        assert [e.action for e in approvals.events(session, review_id)] == ["reminded"]
        approvals.reject(session, handoff_id, actor="owner (web)")

    clock.advance(days=2)
    assert send_reminders(ctx) == 0
    with ctx.db.transaction() as session:
        review, handoff = session.get(Draft, review_id), session.get(Draft, handoff_id)
        assert review.status == "expired" and review.decided_by == "system"
        assert handoff.status == "rejected"  # decided drafts never expire
        [event] = session.exec(select(DraftEvent).where(DraftEvent.draft_id == review_id,
                                                        DraftEvent.action == "expired")).all()
        assert "3 days" in event.detail
        assert len(session.exec(select(Outbox)).all()) == 2  # nothing more to the owner


def test_without_an_owner_expiry_still_runs(shop):
    ctx = shop('[approvals]\nremind_after_hours = 1\nexpire_days = 1\n')
    clock.freeze(datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc))
    with ctx.db.transaction() as session:
        draft_id = held(session, Route.REVIEW, "Do you sell wicks?").id
    clock.advance(hours=2)
    assert send_reminders(ctx) == 0
    clock.advance(days=1)
    assert send_reminders(ctx) == 0
    with ctx.db.transaction() as session:
        assert session.get(Draft, draft_id).status == "expired"
        assert session.exec(select(Outbox)).all() == []


# --- the whole loop: IMAP in, the owner's notification and reminder out by SMTP --------------------

def test_handoff_notification_and_reminder_arrive_by_mail(tmp_path, monkeypatch, dovecot, smtp_capture,
                                                           database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                          extra=f'[digest]\n{OWNER}[approvals]\nremind_after_hours = 4\nnotify = "all"\n')
    ctx = make_context(path)
    try:
        poll_mailbox(ctx)
        dovecot.append(customer_mail("I want to talk to a real person please <script>x()</script>",
                                     sender="Ana <a@customer.test>"))
        dovecot.append(customer_mail("What is your opinion of the moon landing?", sender="b@customer.test",
                                     subject="random"))
        run_until_idle(ctx)
        with ctx.db.transaction() as session:
            handoff = session.exec(select(Draft).where(Draft.route == Route.HANDOFF)).one()
        to_owner = [m for m in smtp_capture.messages if m.rcpt_tos == ("owner@example.test",)]
        to_customers = sorted(m.rcpt_tos for m in smtp_capture.messages if m not in to_owner)
        assert to_customers == [("a@customer.test",)]  # the holding reply; review waits in silence
        notices = {find_refs(m.message()["Subject"])[0]: m.message() for m in to_owner}
        assert len(notices) == len(to_owner) == 2  # notify = "all": one each, handoff and review
        notice = notices[handoff.token]
        assert notice["Message-ID"].strip().startswith(f"<deskhand.draft.{handoff.token}.")
        assert notice["Subject"].endswith(f"[ref {handoff.token}]") and "Handed off" in notice["Subject"]
        assert notice["Auto-Submitted"] == "auto-generated" and notice["In-Reply-To"] is None
        text = notice.get_body(("plain",)).get_content()
        assert "I want to talk to a real person please" in text and "asked for a person" in text
        html = notice.get_body(("html",)).get_content()
        assert "<script>x()" not in html and "&lt;script&gt;x()" in html
        assert len(re.findall(r'href="http://127\.0\.0\.1:0/a/', html)) == 3

        clock.advance(hours=5)
        assert send_reminders(ctx) == 2
        run_until_idle(ctx)
        assert send_reminders(ctx) == 0
        reminders = [m.message() for m in smtp_capture.messages if m.message()["Subject"].startswith(
            "[Deskhand] Reminder")]
        assert len(reminders) == 2
        assert {find_refs(m["Subject"])[0] for m in reminders} == {d.token for d in _pending(ctx)}
    finally:
        clock.reset()
        ctx.db.dispose()


def test_mail_to_the_owner_does_not_mark_the_original_answered(tmp_path, monkeypatch, dovecot, smtp_capture,
                                                               database_url):
    """\\Answered on the customer's original means "replied to"; a notification to the owner is not a reply."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                          extra=f'[digest]\n{OWNER}[approvals]\nnotify = "all"\n')
    ctx = make_context(path)
    try:
        poll_mailbox(ctx)
        uid = dovecot.append(customer_mail("What is your opinion of the moon landing?", subject="random"))
        run_until_idle(ctx)
        [notice] = smtp_capture.messages
        assert notice.rcpt_tos == ("owner@example.test",)
        run_until_idle(ctx)  # the flag sync runs on every poll
        assert b"\\Answered" not in dovecot.flags(uid)
    finally:
        ctx.db.dispose()


def test_a_holding_note_does_not_mark_the_original_answered_the_owners_reply_does(tmp_path, monkeypatch, dovecot,
                                                                                 smtp_capture, database_url):
    """A handed-off mail gets "a person will get back to you" at once, but it is not answered
    until the owner's reply goes out: only then does the original get \\Answered."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    ctx = make_context(write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture))
    try:
        poll_mailbox(ctx)
        uid = dovecot.append(customer_mail("Can I talk to a real person please?", subject="Help"))
        run_until_idle(ctx)
        [holding] = smtp_capture.messages
        assert holding.rcpt_tos == ("jamie@customer.test",)
        [draft] = _pending(ctx)
        assert draft.route == Route.HANDOFF
        run_until_idle(ctx)  # the flag sync runs on every poll
        assert b"\\Answered" not in dovecot.flags(uid)
        with ctx.db.transaction() as session:
            approvals.approve(session, ctx.settings, draft.id, actor="owner (test)", text="Maya here: how can I help?")
        run_until_idle(ctx)
        run_until_idle(ctx)
        assert len(smtp_capture.messages) == 2 and b"\\Answered" in dovecot.flags(uid)
    finally:
        ctx.db.dispose()


def _pending(ctx) -> list[Draft]:
    with ctx.db.transaction() as session:
        return approvals.pending(session)

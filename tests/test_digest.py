"""The daily digest: what it lists, once a day, the quiet two-line day, and the email itself as the
owner's mail client receives it (Dovecot in, the SMTP capture server out). SQLite and PostgreSQL.
"""
from __future__ import annotations

import argparse
import re
from datetime import datetime, time, timedelta, timezone
from urllib.parse import unquote

import pytest
from helpers import (
    PASSWORD_ENV,
    customer_mail,
    held,
    make_context,
    rows,
    run_until_idle,
    write_settings,
)
from sqlmodel import select

from responder.cli import owner_cmds
from responder.core.clock import clock
from responder.core.models import Digest, Draft, Feedback, Message, Outbox, Route
from responder.ops.jobs import poll_mailbox
from responder.owner import approvals, digest, feedback, links, metrics
from responder.owner.owner_mail import find_refs

OWNER = '[digest]\nto = "owner@example.test"\n'


@pytest.fixture
def shop(shop_context):
    """``shop(extra) -> Context``: the sample shop with the owner's address set (``shop_context``)."""
    return lambda extra=OWNER, **kwargs: shop_context(extra, **kwargs)




# --- what it says ------------------------------------------------------------------------------

def test_a_quiet_day_is_two_lines(shop):
    ctx = shop()
    with ctx.db.transaction() as session:
        row = digest.enqueue(session, ctx.settings)
    assert row.body_text.strip().splitlines() == [
        "Nothing is waiting for you at Wick & Willow Candle Co.: no held drafts, failed sends, problems or new thumbs down.",
        f"No messages came in yesterday ({_label(metrics.yesterday(ctx.settings))}).",
    ]
    assert row.extra == {"auto_generated": True, "images": []} and "cid:" not in row.body_html
    [stored] = rows(ctx, Digest)
    assert stored.draft_ids == [] and stored.outbox_id == row.id
    assert row.subject.startswith("[Deskhand] All quiet") and find_refs(row.subject) == [stored.token]
    assert row.message_id.startswith(f"<deskhand.digest.{stored.token}.")


def _label(day) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def test_every_section_and_thumbs_down_shown_once(shop):
    ctx = shop()
    with ctx.db.transaction() as session:
        review = held(session, Route.REVIEW, "Do you sell wicks?", draft="")
        review.no_match = True
        handoff = held(session, Route.HANDOFF, "I want a <b>person</b>", reasons=["the customer asked for a person"])
        answered = held(session, Route.AUTO, "How much is shipping?", draft="Shipping is $7.")
        answered.status = "sent"
        session.add(Outbox(draft_id=answered.id, kind="reply", channel="email", recipient="gone@customer.test",
                           subject="Re: shipping", message_id="<r1@example.test>", status="failed",
                           last_error="550 5.1.1 no such user"))
        edited = held(session, Route.REVIEW, "Do you ship to Canada?", draft="We ship to many places.")
        session.flush()
        feedback.record_vote(session, answered.id, "down", "did not answer my question")
        approvals.approve(session, ctx.settings, edited.id, actor="owner (web)",
                          text="Yes, shipping to Canada is $15 and takes a week.")
        ids = (handoff.id, review.id)
    with ctx.db.transaction() as session:
        row = digest.enqueue(session, ctx.settings)
    text = row.body_text
    [stored] = rows(ctx, Digest)
    assert stored.draft_ids == list(ids)  # handoffs first, then drafts to approve
    assert re.search(r"^1\. Jamie Rivera <jamie@customer\.test>", text, re.M)
    assert text.index("HANDED OFF TO YOU") < text.index("I want a <b>person</b>") < \
        text.index("WAITING FOR YOUR APPROVAL") < text.index("2. Jamie Rivera") < text.index("Do you sell wicks?")
    assert "Reply to this digest with 'approve 2' or 'reject 2', or use the links." in text
    assert "No draft: write your own reply with Edit." in text
    assert "550 5.1.1 no such user" in text and "gone@customer.test" in text
    assert "did not answer my question" in text and "Shipping is $7." in text
    assert "new FAQ entry in faq.md" in text and "+Yes, shipping to Canada is $15" in text
    assert f"{ctx.settings.base_url}/l/" in text
    assert '- "Do you sell wicks?"' in text  # what the bot could not answer
    assert "[ref" in row.subject and "2 waiting (1 handed off), 1 failed send" in row.subject

    # Each draft has its signed links and a prepared reply carrying its own token.
    html = row.body_html
    urls = re.findall(r'href="[^"]*/a/([^"]+)"', html)
    signed = [links.verify(ctx.settings, "draft", u, max_age_s=60) for u in urls]
    assert [(s["d"], s["a"]) for s in signed] == [(i, a) for i in ids for a in ("approve", "edit", "reject")]
    with ctx.db.transaction() as session:
        tokens = [session.get(Draft, i).token for i in ids]
    assert [find_refs(unquote(m)) for m in re.findall(r'href="(mailto:[^"]+)"', html)] == [[t] for t in tokens]
    assert "&lt;b&gt;person&lt;/b&gt;" in html and "<b>person" not in html

    # The thumbs-down was shown: the next digest (forced, same day) doesn't repeat it.
    with ctx.db.transaction() as session:
        assert session.exec(select(Feedback)).one().seen_at is not None
        again = digest.enqueue(session, ctx.settings, force=True)
    assert "did not answer my question" not in again.body_text and "I want a <b>person</b>" in again.body_text
    [restored] = rows(ctx, Digest)
    assert restored.token != stored.token and restored.outbox_id == again.id
    assert find_refs(again.subject) == [restored.token]


def test_a_long_queue_is_cut_short(shop):
    ctx = shop()
    with ctx.db.transaction() as session:
        for n in range(digest.MAX_DRAFTS + 2):
            held(session, Route.REVIEW, f"question number {n}")
    with ctx.db.transaction() as session:
        mail = digest.build(session, ctx.settings)
    assert len(mail.draft_ids) == digest.MAX_DRAFTS and f"{digest.MAX_DRAFTS}. Jamie" in mail.text
    assert "...and 2 more waiting" in mail.text and f"question number {digest.MAX_DRAFTS}" not in mail.text
    assert f"{digest.MAX_DRAFTS + 2} waiting" in mail.subject


# --- once a day --------------------------------------------------------------------------------

def test_the_scheduled_digest_goes_once_per_shop_day(shop):
    ctx = shop()
    ctx.settings.store.timezone = "Pacific/Auckland"  # UTC+13 in March
    clock.freeze(datetime(2025, 3, 3, 20, 0, tzinfo=timezone.utc))  # Tuesday 4 March, 09:00 in Auckland
    assert digest.digest_job(ctx) == 1
    assert digest.digest_job(ctx) == 0
    clock.advance(hours=10)  # still the 4th in Auckland
    assert digest.digest_job(ctx) == 0
    [stored] = rows(ctx, Digest)
    assert stored.day == "2025-03-04"
    assert "Mon 3 Mar" in rows(ctx, Outbox)[0].body_text  # yesterday, in the shop's days
    clock.advance(hours=12)
    assert digest.digest_job(ctx) == 1
    assert [d.day for d in rows(ctx, Digest)] == ["2025-03-04", "2025-03-05"]
    assert [o.kind for o in rows(ctx, Outbox)] == ["digest", "digest"]


def test_no_owner_address_no_digest(shop):
    ctx = shop(extra="")
    assert digest.digest_job(ctx) == 0
    with ctx.db.transaction() as session:
        assert digest.enqueue(session, ctx.settings, force=True) is None
    assert rows(ctx, Digest) == [] and rows(ctx, Outbox) == []


def test_disabled_digest_is_not_scheduled(shop):
    ctx = shop(extra=OWNER + "enabled = false\n")
    assert digest.digest_job(ctx) == 0 and rows(ctx, Digest) == []


# --- python run.py digest --print | --send ----------------------------------------------------------

def test_print_renders_without_writing(shop, capsys):
    ctx = shop()
    with ctx.db.transaction() as session:
        held(session, Route.HANDOFF, "Can I speak to Maya about a wedding order?",
             reasons=["the customer asked for a person"])
    assert owner_cmds.cmd_digest(ctx.settings, argparse.Namespace(print=True, send=False)) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: [Deskhand] Digest") and "[ref " in out.splitlines()[0]
    assert "Can I speak to Maya about a wedding order?" in out and "The customer asked for a person" in out
    preview = ctx.settings.data_dir / "digest-preview.html"
    assert f"HTML version: {preview}" in out and "owner@example.test" in out
    html = preview.read_text(encoding="utf-8")
    assert "data:image/png;base64,iVBOR" in html and "cid:" not in html
    assert rows(ctx, Digest) == [] and rows(ctx, Outbox) == []  # printing writes nothing


def test_send_now_and_again(shop, smtp_capture, capsys):
    ctx = shop(smtp=smtp_capture)
    args = argparse.Namespace(print=False, send=True)
    assert owner_cmds.cmd_digest(ctx.settings, args) == 0
    assert capsys.readouterr().out.strip() == "Sent the digest to owner@example.test."
    assert owner_cmds.cmd_digest(ctx.settings, args) == 0  # --send always sends, even on the same day
    first, second = [m.message() for m in smtp_capture.messages]
    [stored] = rows(ctx, Digest)
    assert find_refs(first["Subject"]) != find_refs(second["Subject"]) == [stored.token]

    smtp_capture.fail_next(550, stage="rcpt")
    assert owner_cmds.cmd_digest(ctx.settings, args) == 1
    assert "not sent (failed)" in capsys.readouterr().out.splitlines()[-1]


def test_send_without_owner_says_what_to_set(shop, smtp_capture, capsys):
    ctx = shop(extra="", smtp=smtp_capture)
    assert owner_cmds.cmd_digest(ctx.settings, argparse.Namespace(print=False, send=True)) == 1
    assert "[digest] to" in capsys.readouterr().out and smtp_capture.messages == []


# --- end to end: customer mail in by IMAP, the digest out by SMTP ----------------------------------

def test_digest_email_end_to_end(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture, extra=OWNER)
    ctx = make_context(path)
    try:
        poll_mailbox(ctx)
        dovecot.append(customer_mail('I want to talk to a real person please <script>alert("hi")</script>',
                                     sender="Ana Lima <a@customer.test>"))
        dovecot.append(customer_mail("What is your opinion of the moon landing?", sender="b@customer.test",
                                     subject="random"))
        dovecot.append(customer_mail("How much is shipping?", sender="c@customer.test"))
        run_until_idle(ctx)
        sent_before = len(smtp_capture.messages)
        # The next day at noon (the shop is on UTC): yesterday's numbers are these messages.
        with ctx.db.transaction() as session:
            arrived = max(m.received_at for m in session.exec(select(Message)).all())
        clock.freeze(datetime.combine(arrived.date() + timedelta(days=1), time(12), tzinfo=timezone.utc))
        assert digest.digest_job(ctx) == 1
        run_until_idle(ctx)
        assert digest.digest_job(ctx) == 0  # a second run the same day queues nothing
        run_until_idle(ctx)
        [captured] = smtp_capture.messages[sent_before:]
        assert captured.rcpt_tos == ("owner@example.test",)

        [stored] = rows(ctx, Digest)
        mail = captured.message()
        assert f"[ref {stored.token}]" in mail["Subject"]
        assert mail["Message-ID"].strip().startswith(f"<deskhand.digest.{stored.token}.")
        assert mail["Auto-Submitted"] == "auto-generated"
        with ctx.db.transaction() as session:
            drafts = [session.get(Draft, i) for i in stored.draft_ids]
            messages = [session.get(Message, d.message_id) for d in drafts]
            inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        assert [d.route for d in drafts] == [Route.HANDOFF, Route.REVIEW]

        text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
        for n, (draft, message) in enumerate(zip(drafts, messages), 1):
            assert re.search(rf"^{n}\. .*{re.escape(message.sender)}", text, re.M)
            assert (message.new_text.splitlines()[0] in text) and draft.reasons
            assert all(r[:1].upper() + r[1:] in text for r in draft.reasons)
        assert "approve 2" in text
        yesterday = metrics.yesterday(ctx.settings)
        came_in = sum(m.received_at.astimezone(ctx.settings.tz).date() == yesterday for m in inbound)
        assert re.search(rf"^Messages in:\s+{came_in}$", text, re.M) and came_in == 3

        html_part = mail.get_body(("html",))
        html = html_part.get_content()
        assert '<script>alert("hi")' not in html and "&lt;script&gt;alert(" in html
        for action, label in (("approve", "Approve &amp; send"), ("edit", "Edit"), ("reject", "Reject")):
            found = re.findall(rf'href="{re.escape(ctx.settings.base_url)}/a/([^"]+)"[^>]*>{label}</a>', html)
            signed = [links.verify(ctx.settings, "draft", token, max_age_s=60) for token in found]
            assert [(s["d"], s["a"]) for s in signed] == [(i, action) for i in stored.draft_ids]
        assert 'src="cid:chart14"' in html

        related = next(p for p in mail.walk() if p.get_content_type() == "multipart/related")
        [image] = [p for p in related.iter_parts() if p["Content-ID"] == "<chart14>"]
        assert image.get_content_type() == "image/png" and image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        clock.reset()
        ctx.db.dispose()

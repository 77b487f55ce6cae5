"""Approving held drafts by replying to email, end to end on real servers (Dovecot, aiosmtpd,
SQLite and PostgreSQL), plus the pure reader of the owner's words.

A customer's mail is held (``[routing] auto_send_email = false``), the owner answers with the
draft's token in the subject or References, the jobs run until idle, and the test reads what the
SMTP server captured and the draft's status and events.
"""
from __future__ import annotations

import pytest
from helpers import (
    PASSWORD_ENV,
    customer_mail,
    make_context,
    rows,
    run_until_idle,
    write_settings,
)

from responder.core.models import Digest, Draft, DraftEvent, Message, Outbox, Route
from responder.ops.jobs import poll_mailbox
from responder.owner.owner_replies import (
    Command,
    find_refs,
    read_digest_reply,
    read_reply,
    strip_signature,
)

OWNER = "Maya <owner@example.test>"
JAMIE = "jamie@customer.test"
# Held for review, and no notification mails (so the owner's mailbox holds only confirmations),
# except in the test that answers a real notification.
SETTINGS_EXTRA = ('[digest]\nto = "owner@example.test"\n[routing]\nauto_send_email = false\n'
                  '[approvals]\nnotify = "{notify}"\n')


# --- the reader of the owner's words (pure) -----------------------------------------------------

@pytest.mark.parametrize("text", ["ok", "OK", "Okay.", "approve", "Approved!", "send", "Send it.", "yes",
                                  "Yes please", "👍", "👍🏻", "go ahead", "ok, send it", "  approve  \n"])
def test_approve_words(text):
    assert read_reply(text) == Command("approve")


@pytest.mark.parametrize("text, reason", [
    ("reject", ""), ("Reject: wrong", "wrong"), ("reject wrong price", "wrong price"), ("no", ""),
    ("No.", ""), ("no: not a customer", "not a customer"), ("drop", ""), ("drop it", ""),
    ("discard - spam", "spam"), ("don't send", ""), ("Don’t send it: they already called", "they already called"),
    ("do not send", ""), ("reject:\nthe customer already has the answer", "the customer already has the answer"),
])
def test_reject_words_and_reason(text, reason):
    assert read_reply(text) == Command("reject", text=reason)


@pytest.mark.parametrize("text", [
    "No, we don't ship to Canada yet, sorry.",
    "Drop by the shop any time, we're open until six.",
    "Yes! The Amber Noir candle is back in stock next week.",
    "Hi Jamie,\nok so the parcel left on Monday.",
    "Rejection is never fun, but we can't take returns after 30 days.",
    "Rejected parcels come back to us within two weeks, and then we refund you at once.",
    "Discard the old label\nand use the one attached to this email.",
])
def test_anything_else_is_the_new_text(text):
    assert read_reply(text) == Command("edit", text=text)


@pytest.mark.parametrize("text, expected", [
    ("approve\n\n-- \nMaya\nWick & Willow", Command("approve")),
    ("ok\n\nSent from my iPhone", Command("approve")),
    ("Send it\nSent from my iPad", Command("approve")),
    ("reject: wrong\n\nGet Outlook for iOS", Command("reject", text="wrong")),
    ("We ship there in 5 days.\n\n-- \nMaya", Command("edit", text="We ship there in 5 days.")),
    ("-- \nMaya", Command("empty")),
    ("Sent from my iPhone", Command("empty")),
    ("", Command("empty")),
    ("ok\n> quoted draft\n> more", Command("approve")),
    # Only the quote: the parser falls back to the whole text, which must never become the reply.
    ("On Mon, 3 Jun 2024 at 10:00, Deskhand <shop@example.test> wrote:\n> Hi Jamie,\n> It's $7.", Command("empty")),
    ("ok\n\nOn Mon, 3 Jun 2024 at 10:00, Deskhand <\nshop@example.test> wrote:\n> x", Command("approve")),
    ("Am 03.06.2024 um 10:00 schrieb Deskhand <shop@example.test>:\n> x", Command("empty")),
    ("approve\n-----Original Message-----\nFrom: Deskhand\nSent: Monday", Command("approve")),
    ("yes\n\nFrom: Deskhand <shop@example.test>\nSent: Monday, June 3\nTo: Maya", Command("approve")),
])
def test_signatures_and_phone_lines_are_not_the_reply(text, expected):
    assert read_reply(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("send anyway", Command("force")), ("Approve anyway!", Command("force")), ("ok, send it anyway", Command("force")),
    ("send anyway\nWe ship to Texas for $7.", Command("force", text="We ship to Texas for $7.")),
])
def test_send_anyway(text, expected):
    assert read_reply(text) == expected


@pytest.mark.parametrize("text", ["thanks", "ok but fix the price", "please don't", "You can send it now",
                                  "not this one", "is this draft right?"])
def test_short_mixed_replies_are_never_sent_to_the_customer(text):
    assert read_reply(text).verb == "unclear"


def test_digest_lines():
    commands, unread = read_digest_reply(
        "approve 2\nreject 1 not a real question\nsend 1 3\nok 2, 4\nreject #5: spam\napprove all\n"
        "send 2 anyway\nsend anyway 3\nThanks!\napprove 2 but change the price\n\n-- \nMaya")
    assert commands == [
        Command("approve", numbers=(2,)), Command("reject", text="not a real question", numbers=(1,)),
        Command("approve", numbers=(1, 3)), Command("approve", numbers=(2, 4)),
        Command("reject", text="spam", numbers=(5,)), Command("approve", all=True),
        Command("force", numbers=(2,)), Command("force", numbers=(3,)),
    ]
    assert unread == ["Thanks!", "approve 2 but change the price"]
    assert read_digest_reply("approve") == ([], ["approve"])


def test_strip_signature_keeps_the_words_above_it():
    assert strip_signature("Line one\nLine two\n\n--\nMaya") == "Line one\nLine two"


def test_find_refs():
    draft, digest = "A" * 10 + "b-_" + "c" * 11, "Z" * 24
    assert find_refs(f"Re: [Deskhand] draft for Jamie [ref {draft}]", None, []) == [draft]
    assert find_refs("Re: hello", f"deskhand.draft.{draft}.0a1b@example.test",
                     [f"deskhand.digest.{digest}.99@example.test", "x@customer.test"]) == [draft, digest]
    assert find_refs("Re: [ref short]", "deskhand.0a1b2c@example.test", ["deskhand.draft.@x"]) == []
    assert find_refs("Question about [ref orders]", None, []) == []


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture
def shop(tmp_path, monkeypatch, dovecot, smtp_capture, database_url, request):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    notify = getattr(request, "param", "none")
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                          extra=SETTINGS_EXTRA.format(notify=notify))
    ctx = make_context(path)
    poll_mailbox(ctx)  # first start: only mail from now on is answered
    yield ctx, dovecot, smtp_capture
    ctx.db.dispose()




def held(ctx, dovecot, body="Hi! How much is shipping to Texas?", sender="Jamie Rivera <jamie@customer.test>",
         message_id="<q1@customer.test>") -> Draft:
    dovecot.append(customer_mail(body, sender=sender, message_id=message_id))
    run_until_idle(ctx)
    [message] = rows(ctx, Message, Message.provider_id == message_id.strip("<>"))
    [draft] = rows(ctx, Draft, Draft.message_id == message.id)
    assert draft.route == Route.REVIEW and draft.status == "pending"
    return draft


def owner_says(ctx, dovecot, body, *, token=None, sender=OWNER, subject=None, message_id=None, **headers):
    subject = subject or f"Re: [Deskhand] draft for Jamie [ref {token}]"
    dovecot.append(customer_mail(body, sender=sender, subject=subject, message_id=message_id, **headers))
    run_until_idle(ctx)


def sent_to(smtp, address):
    return [m.message() for m in smtp.messages if m.rcpt_tos == (address,)]


def events(ctx, draft_id):
    return rows(ctx, DraftEvent, DraftEvent.draft_id == draft_id)


def test_ok_sends_the_draft_in_the_customers_thread(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    assert smtp.messages == []
    owner_says(ctx, dovecot, "ok\n\nSent from my iPhone", token=draft.token, message_id="<o1@example.test>")

    [reply] = sent_to(smtp, JAMIE)
    assert reply["In-Reply-To"] == "<q1@customer.test>" and reply["Subject"] == "Re: Question about shipping"
    assert reply["Auto-Submitted"] is None  # the owner sent it: not an automatic reply
    assert draft.text.split()[0] in reply.get_body(("plain",)).get_content()
    [confirmation] = sent_to(smtp, "owner@example.test")
    assert confirmation["Subject"] == f"Re: [Deskhand] draft for Jamie [ref {draft.token}]"
    assert confirmation["In-Reply-To"] == "<o1@example.test>"
    assert confirmation["Auto-Submitted"] == "auto-generated"
    assert f"Sent the draft to Jamie Rivera (draft {draft.id})" in confirmation.get_body(("plain",)).get_content()
    assert len(smtp.messages) == 2

    [after] = rows(ctx, Draft, Draft.id == draft.id)
    assert after.status == "sent" and after.decided_by == "owner (email)" and not after.edited
    assert [(e.action, e.actor) for e in events(ctx, draft.id)] == [("approved", "owner (email)"), ("sent", "system")]
    [mine] = rows(ctx, Draft, Draft.id != draft.id)
    assert mine.route == Route.IGNORE and mine.reasons == [f"owner approved draft {draft.id} by email"]
    [owner_message] = rows(ctx, Message, Message.id == mine.message_id)
    assert owner_message.customer_id is None  # the owner never becomes a customer
    [confirm_row] = rows(ctx, Outbox, Outbox.kind == "confirm")
    assert confirm_row.draft_id == mine.id and not confirm_row.automatic


@pytest.mark.parametrize("shop", ["all"], indirect=True)
def test_answering_the_real_notification(shop):
    """The notification from responder.owner.owner_mail, answered as a mail client would: its subject
    with "Re: ", In-Reply-To its Message-ID."""
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    [notification] = sent_to(smtp, "owner@example.test")
    assert draft.token in notification["Subject"] and draft.token in notification["Message-ID"]
    owner_says(ctx, dovecot, "approve\n\n-- \nMaya", subject="Re: " + notification["Subject"],
               in_reply_to=notification["Message-ID"], references=notification["Message-ID"],
               message_id="<o9@example.test>")
    [reply] = sent_to(smtp, JAMIE)
    assert reply["In-Reply-To"] == "<q1@customer.test>"
    assert rows(ctx, Draft, Draft.id == draft.id)[0].status == "sent"
    confirmation = sent_to(smtp, "owner@example.test")[1]
    assert confirmation["In-Reply-To"] == "<o9@example.test>"
    assert f"Sent the draft to Jamie Rivera (draft {draft.id})" in confirmation.get_body(("plain",)).get_content()


def test_new_text_is_sent_instead_of_the_draft(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    # Replying to the notification itself: the token is in References, not in the subject.
    owner_says(ctx, dovecot, "Shipping to Texas is free this week!\nIt leaves tomorrow.\n\n-- \nMaya",
               subject="Re: A draft is waiting", references=f"<deskhand.draft.{draft.token}.0af3@example.test>")
    [reply] = sent_to(smtp, JAMIE)
    body = reply.get_body(("plain",)).get_content()
    assert "free this week" in body and draft.text.strip() not in body and "-- \nMaya" not in body
    [after] = rows(ctx, Draft, Draft.id == draft.id)
    assert after.text == draft.text and after.edited
    assert after.sent_text == "Shipping to Texas is free this week!\nIt leaves tomorrow."
    [confirmation] = sent_to(smtp, "owner@example.test")
    assert "Sent your edited reply to Jamie Rivera" in confirmation.get_body(("plain",)).get_content()


def test_reject_sends_nothing_to_the_customer(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    owner_says(ctx, dovecot, "reject: wrong", token=draft.token)
    assert sent_to(smtp, JAMIE) == []
    [confirmation] = sent_to(smtp, "owner@example.test")
    assert f"Rejected draft {draft.id} for Jamie Rivera (wrong)" in confirmation.get_body(("plain",)).get_content()
    [after] = rows(ctx, Draft, Draft.id == draft.id)
    assert after.status == "rejected"
    assert [(e.action, e.detail) for e in events(ctx, draft.id)] == [("rejected", "wrong")]


@pytest.mark.parametrize("forgery", [
    dict(sender="Maya <maya@evil.test>"),
    # A relay-style From with the owner's Reply-To: whom we would answer is the owner, but the
    # From header is not.
    dict(sender="noreply@evil.test", headers={"Reply-To": "owner@example.test"}),
])
def test_forged_sender_approves_nothing_and_gets_no_mail(shop, forgery):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    owner_says(ctx, dovecot, "ok", token=draft.token, **forgery)
    assert smtp.messages == []
    [after] = rows(ctx, Draft, Draft.id == draft.id)
    assert after.status == "pending"
    [event] = events(ctx, draft.id)
    assert event.action == "refused" and event.actor.endswith("@evil.test")
    [mine] = rows(ctx, Draft, Draft.id != draft.id)
    assert mine.route == Route.IGNORE and mine.reasons[0].startswith("approval reply refused: from ")
    assert "@evil.test, not the owner's address" in mine.reasons[0] and "maya@" not in mine.reasons[0]
    assert rows(ctx, Outbox) == []


def test_owner_mail_without_a_token(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    # No reference at all: an ordinary message (the owner testing the bot), routed like any other
    # ("ok" from a customer is an acknowledgement that needs no reply).
    owner_says(ctx, dovecot, "ok", subject="Re: [Deskhand] draft for Jamie")
    assert smtp.messages == []
    [test_draft] = rows(ctx, Draft, Draft.id != draft.id)
    assert test_draft.reasons[0] == "an acknowledgement: no reply needed"
    assert rows(ctx, Draft, Draft.id == draft.id)[0].status == "pending"
    # A reference that matches nothing: ignored, and the owner is told.
    owner_says(ctx, dovecot, "ok", token="A" * 24)
    assert sent_to(smtp, JAMIE) == []
    [confirmation] = sent_to(smtp, "owner@example.test")
    assert "matches no draft" in confirmation.get_body(("plain",)).get_content()
    assert rows(ctx, Draft, Draft.id == draft.id)[0].status == "pending"
    assert rows(ctx, Draft)[-1].reasons == ["approval reply ignored: the reference matches no draft"]


def test_a_reply_with_only_the_quote_does_nothing(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    quote = "".join(f"> {line}\n" for line in draft.text.splitlines())
    owner_says(ctx, dovecot, f"On Mon, 3 Jun 2024 at 10:00, Deskhand <shop@example.test> wrote:\n{quote}",
               token=draft.token)
    assert sent_to(smtp, JAMIE) == []
    [confirmation] = sent_to(smtp, "owner@example.test")
    assert "no new words" in confirmation.get_body(("plain",)).get_content()
    assert rows(ctx, Draft, Draft.id == draft.id)[0].status == "pending"


def test_the_same_approval_twice_sends_once(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    owner_says(ctx, dovecot, "approve", token=draft.token)
    owner_says(ctx, dovecot, "approve", token=draft.token)
    assert len(sent_to(smtp, JAMIE)) == 1
    first, second = (m.get_body(("plain",)).get_content() for m in sent_to(smtp, "owner@example.test"))
    assert "Sent the draft" in first and f"Draft {draft.id} is already sent" in second
    assert [e.action for e in events(ctx, draft.id)] == ["approved", "sent"]


def test_thread_moved_on_warns_then_send_anyway(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    dovecot.append(customer_mail("Also, do you ship to Canada?", subject="Re: Question about shipping",
                                 message_id="<q2@customer.test>", in_reply_to="<q1@customer.test>"))
    run_until_idle(ctx)
    owner_says(ctx, dovecot, "ok", token=draft.token, message_id="<o1@example.test>")
    assert sent_to(smtp, JAMIE) == []
    [warning] = sent_to(smtp, "owner@example.test")
    text = warning.get_body(("plain",)).get_content()
    assert "Not sent: Jamie Rivera wrote again" in text and '"send anyway"' in text
    assert rows(ctx, Draft, Draft.id == draft.id)[0].status == "pending"

    # Answering the warning keeps the chain (and so the token) in References.
    owner_says(ctx, dovecot, "send anyway", subject=warning["Subject"], in_reply_to=warning["Message-ID"],
               references=f"<o1@example.test> {warning['Message-ID']}")
    [reply] = sent_to(smtp, JAMIE)
    assert reply["In-Reply-To"] == "<q1@customer.test>"
    [after] = rows(ctx, Draft, Draft.id == draft.id)
    assert after.status == "sent"
    assert "sent although the customer wrote 1 more message(s)" in events(ctx, draft.id)[0].detail
    assert "anyway" in sent_to(smtp, "owner@example.test")[1].get_body(("plain",)).get_content()


def test_digest_reply_acts_on_numbered_drafts(shop):
    ctx, dovecot, smtp = shop
    jamie = held(ctx, dovecot)
    sam = held(ctx, dovecot, body="Do you ship to Canada?", sender="Sam Lee <sam@other.test>",
               message_id="<s1@other.test>")
    with ctx.db.transaction() as session:
        digest = Digest(day="2024-06-03", draft_ids=[jamie.id, sam.id])
        session.add(digest)
        session.flush()
        token = digest.token
    owner_says(ctx, dovecot, "approve 2\nreject 1 not a real question",
               subject=f"Re: [Deskhand] Daily digest [ref {token}]")
    assert sent_to(smtp, JAMIE) == []
    [to_sam] = sent_to(smtp, "sam@other.test")
    assert to_sam["In-Reply-To"] == "<s1@other.test>"
    statuses = {d.id: d.status for d in rows(ctx, Draft)}
    assert statuses[jamie.id] == "rejected" and statuses[sam.id] == "sent"
    assert events(ctx, jamie.id)[0].detail == "not a real question"
    [confirmation] = sent_to(smtp, "owner@example.test")
    text = confirmation.get_body(("plain",)).get_content()
    assert f"Sent the draft to Sam Lee (draft {sam.id})" in text and f"Rejected draft {jamie.id}" in text

    # New text for a digest of several drafts: whose? Nothing is done, the owner is told how to reply.
    owner_says(ctx, dovecot, "We ship everywhere in Canada for $15, usually within a week.",
               subject="Re: Your digest", in_reply_to=f"<deskhand.digest.{token}.77aa@example.test>")
    assert len(smtp.messages) == 3
    explained = sent_to(smtp, "owner@example.test")[1].get_body(("plain",)).get_content()
    assert '"approve 2"' in explained and "lists 2 drafts" in explained


def test_one_draft_digest_takes_a_bare_approve(shop):
    ctx, dovecot, smtp = shop
    draft = held(ctx, dovecot)
    with ctx.db.transaction() as session:
        digest = Digest(day="2024-06-04", draft_ids=[draft.id])
        session.add(digest)
        session.flush()
        token = digest.token
    owner_says(ctx, dovecot, "Yes, shipping to Texas is $7 and takes three days.",
               subject=f"Re: [Deskhand] Daily digest [ref {token}]")
    [reply] = sent_to(smtp, JAMIE)
    assert "takes three days" in reply.get_body(("plain",)).get_content()
    assert rows(ctx, Draft, Draft.id == draft.id)[0].edited

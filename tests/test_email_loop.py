"""The email loop end to end, on real servers: Dovecot (IMAP), aiosmtpd (SMTP), SQLite and
PostgreSQL. Mail is appended to the mailbox, the jobs run until idle, and the test reads what
the SMTP server captured, the stored rows and the flags on the originals.
"""
from __future__ import annotations

import email
import email.policy
import email.utils
from types import SimpleNamespace

import pytest
from helpers import (
    AUTO_REPLY,
    BOUNCE,
    LIST_MAIL,
    PASSWORD_ENV,
    FlakyDrafter,
    customer_mail,
    make_context,
    rows,
    run_until_idle,
    write_settings,
)

from responder.core.models import Draft, MailboxCursor, Message, Outbox, Route
from responder.ops.jobs import poll_mailbox


@pytest.fixture
def loop(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture)
    ctx = make_context(path)
    poll_mailbox(ctx)  # first start: sets the cursor, so only mail from now on is answered
    yield ctx, dovecot, smtp_capture
    ctx.db.dispose()




def test_question_gets_threaded_auto_reply(loop):
    ctx, dovecot, smtp = loop
    raw = customer_mail("Hi! How much is shipping to Texas?", message_id="<q1@customer.test>",
                        references="<earlier@customer.test>")
    uid = dovecot.append(raw)
    run_until_idle(ctx)

    [captured] = smtp.messages
    reply = email.message_from_bytes(captured.data, policy=email.policy.default)
    assert captured.rcpt_tos == ("jamie@customer.test",)
    # The README's settings have no [email] from_address: the reply comes from support_email.
    assert "from_address" not in ctx.settings.email.model_fields_set
    assert captured.mail_from == "shop@example.test"
    assert reply["From"].addresses[0].addr_spec == "shop@example.test"
    assert reply["From"].addresses[0].display_name == "Wick & Willow Candle Co."
    assert reply["Subject"] == "Re: Question about shipping"
    assert reply["In-Reply-To"] == "<q1@customer.test>"
    assert reply["References"].split() == ["<earlier@customer.test>", "<q1@customer.test>"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@example.test>")
    text = reply.get_body(("plain",)).get_content()
    assert "$7" in text and "Hi Jamie," in text and "Maya" in text
    assert "$7" in reply.get_body(("html",)).get_content()

    [message] = rows(ctx, Message, Message.direction == "in")
    assert message.status == "processed" and message.uid == uid and message.sender == "jamie@customer.test"
    [draft] = rows(ctx, Draft)
    assert draft.route == Route.AUTO and draft.sources == ["faq.md#How much is shipping?"]
    [out] = rows(ctx, Outbox)
    assert out.status == "sent" and out.message_id == reply["Message-ID"]
    flags = dovecot.flags(uid)
    assert b"\\Answered" in flags and b"$Deskhand" in flags and b"\\Seen" not in flags


def test_the_greeting_is_a_name_the_guard_passed_or_none(loop):
    """Anyone can set From's display name: a link, or words the guard would never let a reply say
    ("Replacement Sent"), greet "Hi,"; an Outlook "Last, First" greets the first name."""
    ctx, dovecot, smtp = loop
    senders = {"http://evil.example/refund-form <a@customer.test>": "Hi,\n",
               "Replacement Sent <b@customer.test>": "Hi,\n", '"Whitfield, Helen" <c@customer.test>': "Hi Helen,\n"}
    for sender in senders:
        dovecot.append(customer_mail("How much is shipping to Texas?", sender=sender))
    run_until_idle(ctx)
    texts = {}
    for captured in smtp.messages:
        reply = email.message_from_bytes(captured.data, policy=email.policy.default)
        texts[captured.rcpt_tos[0]] = reply.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert len(texts) == 3
    for sender, greeting in senders.items():
        text = texts[email.utils.parseaddr(sender)[1]]
        assert text.startswith(greeting) and "$7" in text and "evil" not in text and "Replacement" not in text
    [forged] = [d for d in rows(ctx, Draft) if any("greeted without a name" in r for r in d.reasons)]
    assert forged.route == Route.AUTO and "promises a replacement" in " ".join(forged.reasons)


def test_automated_mail_gets_no_reply(loop):
    ctx, dovecot, smtp = loop
    for raw in (AUTO_REPLY, LIST_MAIL, BOUNCE):
        dovecot.append(raw)
    run_until_idle(ctx)
    assert smtp.messages == []
    drafts = rows(ctx, Draft)
    assert [d.route for d in drafts] == [Route.IGNORE] * 3
    reasons = " | ".join(r for d in drafts for r in d.reasons)
    assert "automated mail" in reasons
    assert rows(ctx, Outbox) == []


def test_restart_sends_nothing_twice(loop, tmp_path):
    ctx, dovecot, smtp = loop
    for n in range(3):
        dovecot.append(customer_mail("How much is shipping?", sender=f"c{n}@customer.test"))
    run_until_idle(ctx)
    assert len(smtp.messages) == 3
    ctx.db.dispose()
    again = make_context(tmp_path / "settings.toml")
    run_until_idle(again)
    assert len(smtp.messages) == 3
    assert len(rows(again, Message, Message.direction == "in")) == 3
    again.db.dispose()


def test_first_start_leaves_the_backlog_alone(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    for n in range(3):
        dovecot.append(customer_mail("How much is shipping?", sender=f"old{n}@customer.test"))
    ctx = make_context(write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture))
    run_until_idle(ctx)
    assert smtp_capture.messages == [] and rows(ctx, Message) == []
    dovecot.append(customer_mail("How much is shipping?", sender="new@customer.test"))
    run_until_idle(ctx)
    assert [m.rcpt_tos for m in smtp_capture.messages] == [("new@customer.test",)]
    ctx.db.dispose()


def test_backlog_days_answers_recent_mail(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    dovecot.append(customer_mail("How much is shipping?", sender="recent@customer.test"))
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                          email_extra="answer_backlog_days = 2")
    ctx = make_context(path)
    run_until_idle(ctx)
    assert [m.rcpt_tos for m in smtp_capture.messages] == [("recent@customer.test",)]
    ctx.db.dispose()


def test_customer_reply_continues_the_thread(loop):
    ctx, dovecot, smtp = loop
    dovecot.append(customer_mail("How much is shipping?", message_id="<t1@customer.test>"))
    run_until_idle(ctx)
    ours = email.message_from_bytes(smtp.messages[0].data, policy=email.policy.default)["Message-ID"]
    dovecot.append(customer_mail("And can I return a candle?", subject="Re: Question about shipping",
                                 in_reply_to=ours, references=f"<t1@customer.test> {ours}"))
    # Another customer with the same subject never joins that thread.
    dovecot.append(customer_mail("How much is shipping?", sender="Sam <sam@other.test>"))
    run_until_idle(ctx)
    inbound = rows(ctx, Message, Message.direction == "in")
    assert inbound[0].thread_id == inbound[1].thread_id != inbound[2].thread_id
    second = email.message_from_bytes(smtp.messages[1].data, policy=email.policy.default)
    assert ours in second["References"] and "30 days" in second.get_body(("plain",)).get_content()


def test_uidvalidity_change_resyncs_without_reanswering(loop):
    ctx, dovecot, smtp = loop
    dovecot.append(customer_mail("How much is shipping?"))
    run_until_idle(ctx)
    dovecot.set_uidvalidity()
    dovecot.append(customer_mail("Can I return a candle?", sender="later@customer.test"))
    run_until_idle(ctx)
    assert [m.rcpt_tos for m in smtp.messages] == [("jamie@customer.test",), ("later@customer.test",)]
    [cursor] = rows(ctx, MailboxCursor)
    assert cursor.uidvalidity == dovecot.uidvalidity()


def test_a_message_about_one_order_goes_to_the_owner_not_the_faq(loop):
    """"Can I change the address on order #1046?" has an FAQ neighbour (changing an order within
    the hour); only the order's data can answer it, so Maya gets it and the customer is told."""
    ctx, dovecot, smtp = loop
    dovecot.append(customer_mail("I typed the wrong shipping address, can I change it? Order #1046",
                                 subject="address"))
    run_until_idle(ctx)
    [draft] = rows(ctx, Draft)
    assert draft.route == Route.HANDOFF and draft.reasons[0].startswith("about a particular order (a change to the order)")
    [holding] = smtp.messages
    body = holding.message().get_body(("plain",)).get_content()
    assert "Maya, who can look up your order" in body and "within" not in body


def test_handoff_and_review_are_parked(loop):
    ctx, dovecot, smtp = loop
    dovecot.append(customer_mail("I want to talk to a real person please", sender="a@customer.test"))
    dovecot.append(customer_mail("What is your opinion of the moon landing?", sender="b@customer.test",
                                 subject="random"))
    run_until_idle(ctx)
    routes = {d.route: d for d in rows(ctx, Draft)}
    assert set(routes) == {Route.HANDOFF, Route.REVIEW}
    assert routes[Route.HANDOFF].reasons[0].startswith("the customer asked for a person")
    assert routes[Route.HANDOFF].status == routes[Route.REVIEW].status == "pending" and routes[Route.REVIEW].reasons
    # The handed-off customer is told so at once; the one held for review hears nothing yet.
    [holding] = smtp.messages
    assert holding.rcpt_tos == ("a@customer.test",)
    body = holding.message().get_body(("plain",)).get_content()
    assert "passed your message to Maya" in body
    assert holding.message()["Auto-Submitted"] == "auto-replied"
    # Signed by the shop: a note saying it went to Maya is not signed "Maya".
    assert body.strip().splitlines()[-2:] == ["Best,", "Wick & Willow Candle Co."]


def test_a_complaint_handed_off_is_told_so_in_plain_words():
    """The holding note to a complaint (sensitive, not a question we were unsure of) never says
    "I'm not 100% sure about that"; a frustrated customer hears the apology first."""
    from responder.core.templating import render

    sensitive = render("replies/holding.txt.j2", owner_name="Maya", frustrated=False, asked_again=False,
                       wants_human=False)
    assert "100%" not in sensitive and "sure" not in sensitive
    assert sensitive == "I've passed this to Maya, who'll look into it and get back to you personally."
    upset = render("replies/holding.txt.j2", owner_name="Maya", frustrated=True, asked_again=False, wants_human=False)
    assert upset.startswith("I'm sorry about this, and I understand it's frustrating. I've passed this to Maya")
    # Asking again is not being called frustrated; the feeling is still acknowledged.
    again = render("replies/holding.txt.j2", owner_name="Maya", frustrated=True, asked_again=True, wants_human=False)
    assert again.startswith("Sorry you've had to ask again. I've passed this to Maya") and "frustrat" not in again


def test_thread_cap_holds_the_fifth_reply(loop):
    ctx, dovecot, smtp = loop
    ctx.settings.routing.burst_limit = 100  # six mails in seconds would otherwise be a burst
    first = "<cap0@customer.test>"
    questions = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
                 "What are your candles made of?", "Do you have gift cards?", "What payment methods do you accept?"]
    for n in range(6):
        dovecot.append(customer_mail(questions[n], subject="shipping",
                                     message_id=f"<cap{n}@customer.test>",
                                     in_reply_to=first if n else None))
        run_until_idle(ctx)
    assert len(smtp.messages) == 4
    fifth, sixth = rows(ctx, Draft)[4:]
    assert fifth.route == Route.REVIEW and "cap 4" in fifth.reasons[0]
    # Six customer messages without resolution go to the owner; the cap also stops the holding reply.
    assert sixth.route == Route.HANDOFF and "6 customer messages" in sixth.reasons[0]


def test_a_burst_is_answered_together_not_one_by_one(loop):
    from responder.core.clock import clock

    ctx, dovecot, smtp = loop
    questions = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
                 "What are your candles made of?", "Do you have gift cards?"]
    for n in range(5):
        dovecot.append(customer_mail(questions[n], subject="shipping"))
    run_until_idle(ctx)
    assert len(smtp.messages) == 3  # the first three in ten seconds are answered as usual
    clock.advance(seconds=12)  # the burst window closes
    try:
        run_until_idle(ctx)
    finally:
        clock.reset()
    assert len(smtp.messages) == 4  # one reply for the other two
    fourth, fifth = sorted(rows(ctx, Draft), key=lambda d: d.message_id)[3:]
    assert fourth.route == Route.AUTO and fifth.route == Route.THROTTLED
    assert f"answered together with message {fourth.message_id}" in fifth.reasons[0]
    last = smtp.messages[-1].message().get_body(("plain",)).get_content()
    assert "coconut" in last or "gift card" in last.lower()
    assert len(rows(ctx, Message, Message.direction == "in")) == 5  # nothing lost


def test_smtp_temporary_failure_is_retried_and_permanent_is_failed(loop):
    ctx, dovecot, smtp = loop
    from responder.core.clock import clock

    smtp.fail_next(451)
    dovecot.append(customer_mail("How much is shipping?", sender="retry@customer.test"))
    run_until_idle(ctx)
    [row] = rows(ctx, Outbox)
    assert row.status == "retry" and "451" in row.last_error and smtp.messages == []
    clock.advance(minutes=5)
    try:
        run_until_idle(ctx)
    finally:
        clock.reset()
    assert rows(ctx, Outbox)[0].status == "sent" and len(smtp.messages) == 1

    smtp.fail_next(550, stage="rcpt")
    dovecot.append(customer_mail("How much is shipping?", sender="gone@customer.test"))
    run_until_idle(ctx)
    failed = rows(ctx, Outbox, Outbox.recipient == "gone@customer.test")[0]
    assert failed.status == "failed" and "550" in failed.last_error


def test_failing_message_is_quarantined_and_the_rest_flow(tmp_path, monkeypatch, dovecot, smtp_capture,
                                                          database_url):
    from responder.core.clock import clock
    from responder.core.settings import load_settings
    from responder.draft import make_drafter

    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture)
    ctx = make_context(path, drafter=FlakyDrafter(make_drafter(load_settings(path))))
    poll_mailbox(ctx)
    dovecot.append(customer_mail("How much is shipping? EXPLODE", sender="bad@customer.test"))
    dovecot.append(customer_mail("How much is shipping?", sender="good@customer.test"))
    try:
        for _ in range(3):
            run_until_idle(ctx)
            clock.advance(minutes=10)
    finally:
        clock.reset()
    bad, good = rows(ctx, Message, Message.direction == "in")
    assert bad.status == "quarantined" and bad.attempts == 3 and "the drafting backend crashed" in bad.last_error
    assert good.status == "processed"
    assert [m.rcpt_tos for m in smtp_capture.messages] == [("good@customer.test",)]
    ctx.db.dispose()


@pytest.mark.parametrize("smtp_mode", ["starttls", "ssl"])
def test_tls_on_both_ends(tmp_path, monkeypatch, dovecot_tls, smtp_mode):
    from servers import SmtpCapture

    monkeypatch.setenv(PASSWORD_ENV, dovecot_tls.password)
    # The SMTP login is the mailbox's (smtp_username empty): it must really be used after TLS.
    with SmtpCapture(starttls=smtp_mode == "starttls", implicit_tls=smtp_mode == "ssl",
                     credentials=(dovecot_tls.username, dovecot_tls.password)) as smtp:
        path = write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}",
                              dovecot=dovecot_tls, smtp=smtp)
        ctx = make_context(path)
        poll_mailbox(ctx)
        dovecot_tls.append(customer_mail("How much is shipping?"))
        run_until_idle(ctx)
        [captured] = smtp.messages
        assert captured.tls and captured.rcpt_tos == ("jamie@customer.test",)
        assert captured.auth_login == dovecot_tls.username
        ctx.db.dispose()


def test_hostile_headers_and_nul_bytes_are_stored_not_fatal(loop):
    ctx, dovecot, smtp = loop
    long_sender = "x" * 400 + "@customer.test"
    raw = (f"From: {long_sender}\r\nTo: shop@example.test\r\nSubject: hi\x00there\r\n"
           f"Message-ID: <{'y' * 1200}@customer.test>\r\nIn-Reply-To: <{'z' * 1500}@x>\r\n\r\n"
           "How much is shipping?\x00\r\n").encode()
    dovecot.append(raw)
    dovecot.append(customer_mail("How much is shipping?\x00 thanks", sender="nul@customer.test"))
    run_until_idle(ctx)
    first, second = rows(ctx, Message, Message.direction == "in")
    assert first.status == second.status == "processed"
    first_draft, second_draft = rows(ctx, Draft)
    assert first_draft.route == Route.IGNORE and "no sender address" in first_draft.reasons[0]
    assert second_draft.route == Route.AUTO and "\x00" not in second.text
    assert [m.rcpt_tos for m in smtp.messages] == [("nul@customer.test",)]


def test_contact_form_relay_is_answered_at_its_reply_to(loop):
    ctx, dovecot, smtp = loop
    dovecot.append(customer_mail("How much is shipping?", sender="Shop Forms <no-reply@forms.test>",
                                 headers={"Reply-To": "Casey <casey@customer.test>"}))
    dovecot.append(customer_mail("How much is shipping?", sender="no-reply@robot.test", subject="robot"))
    run_until_idle(ctx)
    assert [m.rcpt_tos for m in smtp.messages] == [("casey@customer.test",)]
    assert [d.route for d in rows(ctx, Draft)] == [Route.AUTO, Route.IGNORE]


def test_empty_knowledge_sends_everything_to_the_owner_saying_why(tmp_path, monkeypatch, dovecot,
                                                                  smtp_capture):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    (tmp_path / "empty").mkdir()
    path = write_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}", dovecot=dovecot,
                          smtp=smtp_capture, knowledge_dir=tmp_path / "empty")
    ctx = make_context(path)
    poll_mailbox(ctx)
    dovecot.append(customer_mail("How much is shipping?"))
    run_until_idle(ctx)
    [draft] = rows(ctx, Draft)
    assert smtp_capture.messages == [] and draft.route == Route.REVIEW
    assert any("knowledge folder is empty" in r for r in draft.reasons), draft.reasons
    ctx.db.dispose()


def test_memory_follows_the_conversation_and_never_crosses_customers(loop):
    ctx, dovecot, smtp = loop
    dovecot.append(customer_mail("I just ordered Amber Noir for my sister", sender="a@customer.test",
                                 message_id="<mem1@customer.test>", subject="gift"))
    run_until_idle(ctx)
    dovecot.append(customer_mail("how long does it burn?", sender="a@customer.test", subject="Re: gift",
                                 in_reply_to="<mem1@customer.test>"))
    dovecot.append(customer_mail("how long does it burn?", sender="b@customer.test", subject="Re: gift",
                                 in_reply_to="<mem1@customer.test>"))
    run_until_idle(ctx)
    drafts = {d.message_id: d for d in rows(ctx, Draft)}
    first, same, other = rows(ctx, Message, Message.direction == "in")
    assert "45 hours" in drafts[same.id].text and drafts[same.id].sources == ["catalog.csv#WW-104"]
    assert "Amber Noir" not in drafts[other.id].text and other.thread_id != first.thread_id


def test_check_logs_in_and_says_exactly_what_failed(tmp_path, monkeypatch, dovecot, smtp_capture, capsys):
    """``python run.py check`` with the README's settings: it logs in to IMAP and SMTP as the daemon
    will, and a wrong password, an unset one or a closed port is named, with exit code 1."""
    from servers import free_port

    import run

    url = f"sqlite:///{tmp_path / 'check.sqlite3'}"
    config = write_settings(tmp_path, database_url=url, dovecot=dovecot, smtp=smtp_capture)
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    assert run.main(["--config", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert f"ok   mailbox (IMAP): logged in to {dovecot.username}@{dovecot.host}:{dovecot.port}" in out
    assert "ok   sending (SMTP): connected to" in out and "replies go out from shop@example.test" in out
    assert out.rstrip().endswith("all set")

    monkeypatch.setenv(PASSWORD_ENV, "not the password")
    assert run.main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL mailbox (IMAP):" in out and "refused the login" in out and "1 problem(s): mailbox (IMAP)" in out

    monkeypatch.delenv(PASSWORD_ENV)
    assert run.main(["--config", str(config), "check"]) == 1
    assert f"FAIL mailbox (IMAP): {dovecot.username}@" in capsys.readouterr().out

    (tmp_path / "closed").mkdir()
    closed = write_settings(tmp_path / "closed", database_url=url, dovecot=dovecot,
                            smtp=SimpleNamespace(host="127.0.0.1", port=free_port(), starttls=False, implicit_tls=False))
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    assert run.main(["--config", str(closed), "check"]) == 1
    out = capsys.readouterr().out
    assert "ok   mailbox (IMAP)" in out and "FAIL sending (SMTP): cannot connect to SMTP 127.0.0.1:" in out

"""The site chat's pure parts and its delivery: origins, what a message may be, the hours line,
settings refused with a reason, the long polls' wake-up, and ``ChatSender`` delivering to the open
panel or, once the visitor has gone, by mail through the real SMTP channel to aiosmtpd."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from helpers import write_settings
from servers import SmtpCapture

from channels.base import Outbound, SendFacts
from channels.chat.hub import Hub
from channels.chat.send import ChatSender
from channels.chat.visitor import (
    Refused,
    bearer,
    check_origin,
    client_id,
    email_address,
    hours_note,
    message_text,
    new_visitor,
    token_hash,
)
from channels.email.smtp import SmtpSender
from responder.core.errors import ConfigError, PermanentError
from responder.core.settings import load_settings

CHICAGO = ZoneInfo("America/Chicago")
HOURS = "Mo-Fr 09:00-17:00; Sa 10:00-14:00"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026 in Chicago (the 5th is a Saturday)."""
    return datetime(2026, 12, day, hour, minute, tzinfo=CHICAGO).astimezone(timezone.utc)


@pytest.mark.parametrize("now, note", [
    (at(7, 10), ""),                                                                   # Monday, open
    (at(7, 7, 30), "We're closed now; a person will reply from 9:00 today."),
    (at(7, 17, 0), "We're closed now; a person will reply from 9:00 tomorrow."),
    (at(4, 18), "We're closed now; a person will reply from 10:00 tomorrow."),          # Friday evening
    (at(5, 15), "We're closed now; a person will reply from 9:00 on Monday."),          # Saturday afternoon
])
def test_the_hours_line_says_when_a_person_will_reply(now, note):
    assert hours_note(HOURS, now, CHICAGO) == note
    assert hours_note("", now, CHICAGO) == ""


def test_origins_are_matched_exactly_and_a_missing_one_is_refused():
    allowed = {"https://shop.example.com"}
    assert check_origin("https://shop.example.com", allowed) == "https://shop.example.com"
    assert check_origin("HTTPS://SHOP.EXAMPLE.COM", allowed) == "https://shop.example.com"
    for origin in (None, "", "null", "http://shop.example.com", "https://shop.example.com.evil.test",
                   "https://evil.test"):
        with pytest.raises(Refused) as refused:
            check_origin(origin, allowed, fetch_site="cross-site", own="http://127.0.0.1:8025")
        assert refused.value.status == 403
    # A browser's same-origin GET carries no Origin: a page of the daemon's own (the /shop demo).
    assert check_origin(None, allowed, fetch_site="same-origin", own="http://127.0.0.1:8025") == \
        "http://127.0.0.1:8025"
    with pytest.raises(Refused):
        check_origin(None, allowed, fetch_site="same-site", own="http://127.0.0.1:8025")


def test_what_a_message_may_be():
    assert message_text("  How much?\r\nThanks \x00 ", 100) == "How much?\nThanks"
    for value, status in ((None, 400), (42, 400), ("   ", 400), ("x" * 101, 413)):
        with pytest.raises(Refused) as refused:
            message_text(value, 100)
        assert refused.value.status == status
    assert client_id("c-1_a") == "c-1_a" and client_id(None) is None and client_id("") is None
    for bad in ("a b", "<x>", "x" * 65, 7, "abc\n"):
        with pytest.raises(Refused):
            client_id(bad)
    assert email_address(" Jo@Example.COM ") == "jo@example.com"
    for bad in ("jo@", "jo", "jo@example", "a@b.c\nBcc: x@y.z", "<jo@example.com>", 7):
        with pytest.raises(Refused):
            email_address(bad)


def test_tokens_are_random_and_stored_only_as_hashes():
    token, hashed, sender = new_visitor()
    other = new_visitor()
    assert len(token) >= 40 and hashed == token_hash(token) and token not in hashed
    assert sender.startswith("chat:") and other[2] != sender and other[0] != token
    assert bearer(f"Bearer {token}") == token
    for header in (None, "", token, f"Basic {token}", "Bearer short", "Bearer " + "é" * 30):
        with pytest.raises(Refused) as refused:
            bearer(header)
        assert refused.value.status == 401


def test_bad_chat_settings_are_refused_with_the_key(tmp_path):
    for extra, words in (('[chat]\nallowed_origins = ["shop.example.com"]\n', "allowed_origins"),
                         ('[chat]\nallowed_origins = ["https://shop.example.com/page"]\n', "allowed_origins"),
                         ('[chat]\nhours = "whenever"\n', "opening_hours")):
        path = write_settings(tmp_path, database_url="sqlite://", extra=extra)
        with pytest.raises(ConfigError) as error:
            load_settings(path)
        assert words in str(error.value)
    good = write_settings(tmp_path, database_url="sqlite://",
                          extra='[chat]\nallowed_origins = ["https://Shop.Example.com/"]\nhours = "Mo-Fr 09:00-17:00"\n')
    assert load_settings(good).chat.allowed_origins == ["https://shop.example.com"]


def test_a_notify_wakes_only_that_visitors_waiting_polls():
    async def scenario():
        hub = Hub()
        mine = [asyncio.create_task(hub.wait("chat:a", 5)) for _ in range(2)]
        other = asyncio.create_task(hub.wait("chat:b", 0.3))
        await asyncio.sleep(0.05)
        assert hub.waiting == 3
        await asyncio.to_thread(hub.notify, "chat:a")  # from the send job's thread
        assert await asyncio.gather(*mine) == [True, True]
        assert await other is False
        assert hub.waiting == 0
        hub.notify("chat:nobody")  # nobody waiting: nothing happens
    asyncio.run(scenario())


def outbound(kind: str = "reply", **facts) -> Outbound:
    return Outbound(outbox_id=7, recipient="chat:abc", subject="", body_text="Shipping is $7.", message_id="<m@x>",
                    channel="chat", kind=kind,
                    facts=SendFacts(channel="chat", kind=kind, automatic=True, body="Shipping is $7.", **facts))


def test_a_reply_goes_to_the_open_panel_or_by_mail_once_the_visitor_has_gone(tmp_path):
    with SmtpCapture() as smtp:
        settings = load_settings(write_settings(tmp_path, database_url="sqlite://", smtp=smtp))
        mailer = SmtpSender(settings.email, from_address=settings.reply_address, from_name=settings.store.name)
        sender = ChatSender(shop=settings.store.name, mailer=mailer)

        async def send(item):
            async with sender:
                return await sender.send(item)

        shown = asyncio.run(send(outbound(present=True, visitor_email="jo@customer.test")))
        assert shown.provider_id == "chat:7" and "open chat" in shown.detail and smtp.messages == []
        kept = asyncio.run(send(outbound(present=False)))
        assert "no email address left" in kept.detail and smtp.messages == []
        holding = asyncio.run(send(outbound("holding", present=False, visitor_email="jo@customer.test")))
        assert "holding reply" in holding.detail and smtp.messages == []
        mailed = asyncio.run(send(outbound(present=False, visitor_email="jo@customer.test")))
        assert "emailed to jo@customer.test" in mailed.detail
        [mail] = smtp.messages
        message = mail.message()
        assert mail.rcpt_tos == ("jo@customer.test",) and message["From"].addresses[0].addr_spec == "shop@example.test"
        assert message["Subject"] == "Your question to Wick & Willow Candle Co."
        assert "Shipping is $7." in message.get_body(("plain",)).get_content()
        with pytest.raises(PermanentError):
            asyncio.run(send(outbound("notify", present=True)))

"""Composing replies: threading headers, RFC 3834 marks, no header injection."""
from __future__ import annotations

import email
import email.policy

from channels.base import Outbound
from channels.email.compose import (
    compose,
    new_message_id,
    references_for,
    reply_subject,
)
from responder.core.logs import redact


def test_reply_subject_and_references():
    assert reply_subject("Where is my order") == "Re: Where is my order"
    assert reply_subject("RE: Where is my order") == "RE: Where is my order"
    assert reply_subject("") == "Re: your message"
    assert references_for("c@x", ["a@x", "b@x"]) == ["a@x", "b@x", "c@x"]
    long = references_for("last@x", [f"{n}@x" for n in range(40)])
    assert len(long) == 20 and long[0] == "0@x" and long[-1] == "last@x"


def test_header_injection_is_impossible():
    out = Outbound(outbox_id=1, recipient="jamie@customer.test",
                   subject="Re: hi\r\nBcc: victim@evil.test", body_text="Hello\n",
                   message_id=new_message_id("shop@example.test"), in_reply_to="a@b\r\nX-Evil: 1",
                   references=("x@y",))
    msg = compose(out, from_address="shop@example.test", from_name="Shop\nBcc: evil@evil.test")
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert parsed["Subject"] == "Re: hi Bcc: victim@evil.test"
    assert parsed["Auto-Submitted"] == "auto-replied"


def test_owner_approved_reply_is_not_marked_automatic():
    out = Outbound(outbox_id=1, recipient="a@b.test", subject="Re: x", body_text="Hi\n",
                   message_id="<m@example.test>", automatic=False)
    msg = compose(out, from_address="shop@example.test", from_name="Shop")
    assert msg["Auto-Submitted"] is None
    assert msg.get_body(("html",)) is not None


def test_logs_redact_addresses_and_phones():
    line = redact("reply to jamie.rivera@customer.test and +1 (207) 555-0199 sent")
    assert "jamie.rivera" not in line and "j***@customer.test" in line
    assert "555-0199" not in line and "+***99" in line


OUTLOOK_ID = "DM6PR11MB4321F0E1D2C3B4A5968778695A4B3C2D1E0@DM6PR11MB4321.namprd11.prod.outlook.com"


def test_long_message_ids_are_folded_between_ids_never_encoded():
    """Outlook's Message-IDs run past a header line: In-Reply-To and References keep them as they
    are (RFC 5322 §3.6.4), as the bytes aiosmtplib hands the server show, so the customer's client
    threads the reply."""
    from aiosmtplib.email import flatten_message

    chain = tuple(f"{n}.{OUTLOOK_ID}" for n in range(3)) + (OUTLOOK_ID,)
    out = Outbound(outbox_id=1, recipient="priya@customer.test", subject="Re: my order", body_text="Hi\n",
                   message_id=new_message_id("shop@example.test"), in_reply_to=OUTLOOK_ID, references=chain)
    raw = flatten_message(compose(out, from_address="shop@example.test", from_name="Shop"))
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "=?" not in head
    assert f"\r\nIn-Reply-To: <{OUTLOOK_ID}>\r\n" in head
    references = head.split("\r\nReferences: ", 1)[1].split("\r\nAuto-Submitted")[0]
    assert references.split("\r\n ") == [f"<{r}>" for r in chain]  # one id a line, folded between ids
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["In-Reply-To"] == f"<{OUTLOOK_ID}>" and parsed["References"].split() == [f"<{r}>" for r in chain]
    assert all(len(line) <= 998 for line in head.split("\r\n"))


def test_the_greeting_uses_a_display_name_only_when_it_looks_like_a_persons_name():
    from types import SimpleNamespace

    from channels.email.compose import greeting_name, render_body

    assert greeting_name("Jamie Rivera") == "Jamie" and greeting_name("Whitfield, Helen") == "Helen"
    assert greeting_name("O'Brien") == "O'Brien" and greeting_name("Zoë Mary-Jane") == "Zoë"
    assert greeting_name("Dr. Jane Smith") == "Jane"
    for forged in ("http://evil.example/refund-form", "+1 415 555 0100", "$5 refund approved:",
                   "other@evil.test", "evil.example", "www.evil.example", "Refund: approved", "Refund Approved",
                   "Free Gift Card", "Support Team", ""):
        assert greeting_name(forged) == "", forged
    store = SimpleNamespace(owner_name="Maya", name="Wick & Willow Candle Co.")
    forged = render_body(body="We ship in two days.", customer_name="http://evil.example/refund-form", store=store)
    assert forged.startswith("Hi,\n") and "evil" not in forged
    assert render_body(body="Yes.", customer_name="Whitfield, Helen", store=store).startswith("Hi Helen,\n")
    # The owner's own text that greets already gets no second greeting.
    own = render_body(body="Hi Priya,\n\nSorry my first answer missed that!", customer_name="Priya Shah", store=store)
    assert own.count("Hi Priya,") == 1 and own.startswith("Hi Priya,\n\nSorry")

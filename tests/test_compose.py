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

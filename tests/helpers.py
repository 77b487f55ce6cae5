"""Test helpers: settings files for a test, a context on them, and "run until idle".

``run_until_idle`` is Mailman's ``make_testable_runner`` for Deskhand: it runs poll, process
and send until none of them finds work, so a test reads as "deliver three emails, run until
idle, assert two replies and one held draft".
"""
from __future__ import annotations

import asyncio
import itertools
import sys
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from responder.core.models import Customer, Draft, Message, Thread, new_token  # noqa: E402
from responder.core.settings import load_settings  # noqa: E402
from responder.ops.context import Context, build_context  # noqa: E402
from responder.ops.jobs import poll_mailbox, process_pending  # noqa: E402
from responder.ops.sending import send_outbox  # noqa: E402

PASSWORD_ENV = "DESKHAND_TEST_IMAP_PASSWORD"
_counter = itertools.count(1)


def write_settings(folder: Path, *, database_url: str, dovecot=None, smtp=None, extra: str = "",
                   email_extra: str = "", web_port: int = 0, knowledge_dir: Path | None = None) -> Path:
    """A settings.toml for one test: the sample shop, the test servers, the test database."""
    lines = [
        "[store]", 'name = "Wick & Willow Candle Co."', 'owner_name = "Maya"',
        'support_email = "shop@example.test"', 'timezone = "UTC"',
        "[knowledge]", f'dir = "{knowledge_dir or ROOT / "knowledge"}"', "refresh_s = 1",
        "[database]", f'url = "{database_url}"', f'data_dir = "{folder / "data"}"',
        "[web]", 'host = "127.0.0.1"', f"port = {web_port}",
        # What the README tells an owner to write, nothing more: no [email] from_address (replies
        # go out from [store] support_email), so a test sees what an owner's daemon does.
        "[email]", f'password_env = "{PASSWORD_ENV}"',
    ]
    if "poll_interval_s" not in email_extra:
        lines.append("poll_interval_s = 1")
    if dovecot is not None:
        lines += [f'imap_host = "{dovecot.host}"', f"imap_port = {dovecot.port}",
                  f"imap_ssl = {'true' if dovecot.tls else 'false'}", f'username = "{dovecot.username}"',
                  "tls_verify = false"]
    if smtp is not None:
        lines += [f'smtp_host = "{smtp.host}"', f"smtp_port = {smtp.port}",
                  'smtp_tls = "starttls"' if smtp.starttls else 'smtp_tls = "ssl"' if smtp.implicit_tls
                  else "smtp_tls = false"]
    lines.append(email_extra)
    path = folder / "settings.toml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def make_context(path: Path, drafter=None) -> Context:
    return build_context(load_settings(path), drafter=drafter)


def run_until_idle(ctx: Context, rounds: int = 20) -> None:
    for _ in range(rounds):
        stored = poll_mailbox(ctx) if ctx.settings.email.imap_enabled else 0
        processed = process_pending(ctx)
        sent = asyncio.run(send_outbox(ctx, "email")) + asyncio.run(send_outbox(ctx, "texts"))
        if not (stored or processed or sent):
            return
    raise AssertionError("still busy after %d rounds" % rounds)


def customer_mail(body: str, *, sender: str = "Jamie Rivera <jamie@customer.test>",
                  subject: str = "Question about shipping", to: str = "shop@example.test",
                  message_id: str | None = None, in_reply_to: str | None = None,
                  references: str | None = None, headers: dict | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(f"c{next(_counter)}", domain="customer.test")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


# --- machine mail every stage must leave unanswered ---------------------------------------------

AUTO_REPLY = ("From: Jamie Rivera <jamie@customer.test>\r\nTo: shop@example.test\r\n"
              "Subject: Out of office: Question\r\nAuto-Submitted: auto-replied\r\n"
              "Message-ID: <ooo-1@customer.test>\r\n\r\nI'm away until Monday.\r\n").encode()
LIST_MAIL = ("From: Candle Makers Digest <digest@lists.candles.test>\r\nTo: shop@example.test\r\n"
             "Subject: Weekly digest\r\nList-Id: <candles.lists.candles.test>\r\n"
             "List-Unsubscribe: <mailto:leave@lists.candles.test>\r\nPrecedence: list\r\n"
             "Message-ID: <list-1@lists.candles.test>\r\n\r\nThis week in candles.\r\n").encode()
BOUNCE = ("From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\nTo: shop@example.test\r\n"
          "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@mx.customer.test>\r\n"
          "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n"
          "\r\n--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
          "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.test\r\n\r\n"
          "Final-Recipient: rfc822; nobody@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n").encode()


# --- rows -----------------------------------------------------------------------------------------

def rows(ctx: Context, model, *where) -> list:
    """Every row of ``model`` (matching ``where``), oldest first."""
    with ctx.db.transaction() as session:
        return list(session.exec(select(model).where(*where).order_by(model.id)).all())


def held(session, route: str, text: str, *, reasons=("no knowledge above 0.55 similarity",),
         draft: str = "Thanks for asking!") -> Draft:
    """A customer message and the draft the pipeline held for it."""
    customer = Customer(name="Jamie Rivera")
    session.add(customer)
    session.flush()
    thread = Thread(customer_id=customer.id, channel="email", subject="Question")
    session.add(thread)
    session.flush()
    message = Message(channel="email", direction="in", provider_id=f"{new_token()}@customer.test",
                      thread_id=thread.id, customer_id=customer.id, sender="jamie@customer.test",
                      subject="Question", text=text, new_text=text, status="processed")
    session.add(message)
    session.flush()
    row = Draft(message_id=message.id, thread_id=thread.id, route=route, status="pending", text=draft,
                reasons=list(reasons))
    session.add(row)
    session.flush()
    return row


class FlakyDrafter:
    """A drafter double (``responder.draft.base.Drafter``): answers like ``inner``, but crashes on
    the word EXPLODE until ``fixed`` (a bug the owner then gets fixed)."""
    name = "flaky"
    wants_examples = False

    def __init__(self, inner):
        self.inner, self.fixed = inner, False

    @property
    def offline(self):
        return self.inner.offline

    def draft(self, request):
        if "EXPLODE" in request.text and not self.fixed:
            raise RuntimeError("the drafting backend crashed")
        return self.inner.draft(request)

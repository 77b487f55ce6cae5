"""The owner's side end to end, with the daemon as a real process against Dovecot and an SMTP
capture (the issue's "done when"): held drafts show up in the digest; one is approved by its
one-click link, another by replying to the digest, each sending exactly one reply in the
customer's thread; a forged approval is refused; ``stats --json`` matches the rows; the dashboard
draws its charts in headless Chromium.
"""
from __future__ import annotations

import email
import email.policy
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from email.utils import make_msgid

from browser import browser_page  # noqa: F401  (fixture)
from daemons import http_ok, start_daemon, wait_until
from helpers import PASSWORD_ENV, ROOT, customer_mail, write_settings
from servers import free_port
from sqlmodel import col, func, select

from responder.core.db import Database
from responder.core.models import Digest, Draft, DraftEvent, Message
from responder.core.settings import load_settings
from responder.owner import links

OWNER = "owner@example.test"
PASSWORD = "wick-and-willow-owner-7"
ASKS = {"link": ("ana@customer.test", "Do you ship live goldfish to Antarctica by drone?"),
        "reply": ("ben@customer.test", "Hi, can I speak to a person about a custom wedding order?"),
        "forged": ("cat@customer.test", "Can a real human call me about a bulk order for my hotel?"),
        "auto": ("dee@customer.test", "How much is shipping?")}


def run_cli(config, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=120)


def parsed(captured) -> email.message.EmailMessage:
    return email.message_from_bytes(captured.data, policy=email.policy.default)


def mails_to(smtp, address: str) -> list[email.message.EmailMessage]:
    return [parsed(m) for m in smtp.messages if address in m.rcpt_tos]


def replies_to(smtp, address: str) -> list[email.message.EmailMessage]:
    """Replies proper: the holding note a handed-off customer gets at once is not one."""
    holding = ("I've passed your message to", "I've passed this to")  # templates/replies/holding.txt.j2
    return [m for m in mails_to(smtp, address)
            if not any(h in m.get_body(("plain",)).get_content() for h in holding)]


def drafts_by_sender(db) -> dict[str, Draft]:
    with db.transaction() as session:
        rows = session.exec(select(Message, Draft).join(Draft, Draft.message_id == Message.id)
                            .where(Message.direction == "in")).all()
    return {m.sender: d for m, d in rows}


def test_owner_clears_the_queue_from_email(tmp_path, monkeypatch, dovecot, smtp_capture, database_url,
                                           browser_page):  # noqa: F811
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    monkeypatch.setenv("DESKHAND_SECRET", "a-test-secret-that-is-long-enough")
    port = free_port()
    config = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture, web_port=port,
                            extra=f'[digest]\nto = "{OWNER}"\n[approvals]\nnotify = "none"\n')
    # Feedback links in customer replies need an address customers can reach: [web] public_url.
    config.write_text(config.read_text().replace(f"port = {port}\n",
                                                 f'port = {port}\npublic_url = "http://127.0.0.1:{port}"\n'))
    settings = load_settings(config)
    db = Database(database_url)
    proc = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: http_ok(port), 90, "the daemon's web server")
        ids = {}
        for key, (sender, body) in ASKS.items():
            ids[key] = make_msgid(key, domain="customer.test")
            dovecot.append(customer_mail(body, sender=sender, subject=f"Question from {key}", message_id=ids[key]))
        wait_until(lambda: len(drafts_by_sender(db)) == 4, 90, "four routed drafts")
        drafts = drafts_by_sender(db)
        held = {key: drafts[ASKS[key][0]] for key in ("link", "reply", "forged")}
        assert all(d.route in ("review", "handoff") and d.status == "pending" for d in held.values()), held
        assert drafts["dee@customer.test"].route == "auto"
        # The automatic answer carries thumbs up / down links to this server.
        [auto_reply] = smtp_capture_wait(smtp_capture, "dee@customer.test", 1)
        assert f"http://127.0.0.1:{port}/f/" in auto_reply.get_body(("plain",)).get_content()

        # The digest, sent now (the daemon's cron sends the same at [digest] time).
        result = run_cli(config, "digest", "--send")
        assert result.returncode == 0, result.stdout + result.stderr
        [digest] = smtp_capture_wait(smtp_capture, OWNER, 1)
        body = digest.get_body(("plain",)).get_content()
        html = digest.get_body(("html",)).get_content()
        for key in ("link", "reply", "forged"):
            assert ASKS[key][1] in body
        assert "[ref " in digest["Subject"]

        # 1. Approve by link: opening it sends nothing; the confirmation page's button does.
        approve_urls = [u for u in re.findall(r'href="(http://127\.0\.0\.1:\d+/a/[^"]+)"', html)
                        if _link(settings, u) == (held["link"].id, "approve")]
        assert len(set(approve_urls)) == 1
        page = urllib.request.urlopen(approve_urls[0], timeout=10).read().decode()
        assert "Approve &amp; send" in page or "Approve & send" in page
        time.sleep(1)
        assert replies_to(smtp_capture, "ana@customer.test") == []
        urllib.request.urlopen(urllib.request.Request(approve_urls[0], data=b"", method="POST"), timeout=10)
        [sent] = smtp_capture_wait(smtp_capture, "ana@customer.test", 1, replies=True)
        assert sent["In-Reply-To"].strip() == ids["link"]

        # 2. Approve by replying to the digest: "approve N" names the draft by its number.
        with db.transaction() as session:
            listed = session.exec(select(Digest)).one().draft_ids
        number = listed.index(held["reply"].id) + 1
        dovecot.append(customer_mail(f"approve {number}\n\nSent from my phone", sender=f"Maya <{OWNER}>",
                                     subject=f"Re: {digest['Subject']}", in_reply_to=digest["Message-ID"],
                                     references=digest["Message-ID"]))
        [sent] = smtp_capture_wait(smtp_capture, "ben@customer.test", 1, replies=True)
        assert sent["In-Reply-To"].strip() == ids["reply"]
        wait_until(lambda: len(mails_to(smtp_capture, OWNER)) >= 2, 60, "the owner's confirmation")

        # 3. A forged approval: the right token, but not from the owner's address.
        dovecot.append(customer_mail("approve", sender="Maya <maya@evil.test>",
                                     subject=f"Re: [Deskhand] draft [ref {held['forged'].token}]"))
        wait_until(lambda: _refused(db, held["forged"].id), 60, "the forged approval to be refused")
        time.sleep(2)
        assert replies_to(smtp_capture, "cat@customer.test") == []
        assert mails_to(smtp_capture, "maya@evil.test") == []
        with db.transaction() as session:
            assert session.get(Draft, held["forged"].id).status == "pending"
            statuses = {d.id: d.status for d in session.exec(select(Draft)).all()}
        assert statuses[held["link"].id] == statuses[held["reply"].id] == "sent"
        # Exactly one reply each, even after everything settled.
        time.sleep(2)
        assert len(replies_to(smtp_capture, "ana@customer.test")) == 1
        assert len(replies_to(smtp_capture, "ben@customer.test")) == 1

        # stats --json from the same rows.
        stats = json.loads(run_cli(config, "stats", "--json", "--days", "1").stdout)
        with db.transaction() as session:
            routes = dict(session.exec(select(Draft.route, func.count()).join(Message, Message.id == Draft.message_id)
                                       .where(Message.sender != OWNER).group_by(Draft.route)).all())
            inbound = session.exec(select(func.count()).select_from(Message).where(
                Message.direction == "in", Message.sender != OWNER)).one()
            approved = session.exec(select(func.count()).select_from(Draft).where(
                col(Draft.status).in_(["approved", "sent"]), col(Draft.route).in_(["review", "handoff"]))).one()
        assert stats["messages_in"] == inbound == 5  # four customers and the forger
        assert stats["auto_replies"] == routes.get("auto", 0) == 1
        assert stats["held"] + stats["handoffs"] == routes.get("review", 0) + routes.get("handoff", 0) == 3
        assert stats["approved"] == approved == 2
        assert stats["first_response_human_median_s"] is not None

        # The dashboard in headless Chromium, behind the password set from the command line.
        assert run_cli(config, "set-password", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
        page = browser_page
        page.goto(f"http://127.0.0.1:{port}/dashboard?days=7")
        page.fill("input[name=password]", PASSWORD)
        page.click("form button[type=submit]")
        page.wait_for_selector("figure.chart svg")
        charts = page.query_selector_all("figure.chart svg")
        assert len(charts) >= 5
        assert all((c.bounding_box() or {}).get("width", 0) > 100 for c in charts)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        db.dispose()


def smtp_capture_wait(smtp, address: str, n: int, *, replies: bool = False, timeout: float = 60):
    pick = replies_to if replies else mails_to
    wait_until(lambda: len(pick(smtp, address)) >= n, timeout, f"{n} mail(s) to {address}")
    return pick(smtp, address)


def _link(settings, url: str):
    data = links.verify(settings, "draft", url.rsplit("/", 1)[1], max_age_s=3600)
    return data["d"], data["a"]


def _refused(db, draft_id: int) -> bool:
    with db.transaction() as session:
        return session.exec(select(DraftEvent).where(DraftEvent.draft_id == draft_id,
                                                     DraftEvent.action == "refused")).first() is not None

"""Order questions on real servers, with the settings the README tells an owner to write.

- Texts: the daemon as a real process, Twilio's webhooks signed with the library's own
  computation, replies through the real twilio client to the loopback REST fake, and the orders
  from the loopback Shopify Admin GraphQL fake through the real Shopify source.
- Email: Dovecot (IMAP) and aiosmtpd (SMTP), SQLite and PostgreSQL, the orders from Shopify's
  export file (the sample shop's way) and from the loopback WooCommerce REST fake.
"""
from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone

from daemons import http_ok, start_daemon, wait_until
from fakes.shopify_admin import FakeShopify
from fakes.twilio_api import FakeTwilio
from fakes.woocommerce_api import FakeWooCommerce
from helpers import (
    PASSWORD_ENV,
    customer_mail,
    make_context,
    rows,
    run_until_idle,
    write_settings,
)
from orders_data import export, order
from servers import free_port
from test_twilio_flow import SHOP, post, sent_to, text

from responder.core.db import Database
from responder.core.models import Draft, OrderCheck, Route
from responder.ops.jobs import poll_mailbox

TRACKING = "https://www.ups.com/track?tracknum=1Z999AA10123456784"


def shopify_orders(fake: FakeShopify, now: datetime) -> None:
    fake.add_order("1042", email="priya.shah@example.com", phone="+13125550163", created_at=now - timedelta(days=2),
                   total="55.00", fulfillment_status="FULFILLED", customer_name="Priya Shah",
                   line_items=(("Amber Noir", 1, "WW-104"),),
                   fulfillments=[fake.fulfillment(company="UPS", number="1Z999AA10123456784", url=TRACKING,
                                                  created_at=now - timedelta(days=1),
                                                  estimated_delivery_at=now + timedelta(days=2))])
    fake.add_order("1043", email="sam.okafor@example.com", phone="+16175550188", created_at=now - timedelta(hours=3),
                   total="64.00", customer_name="Sam Okafor", line_items=(("Cedar & Smoke", 2, "WW-101"),))


def test_texts_about_orders_through_the_daemon_with_shopify(tmp_path, monkeypatch, database_url):
    now = datetime.now(timezone.utc)
    with FakeTwilio() as twilio, FakeShopify() as shopify:
        shopify_orders(shopify, now)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", twilio.auth_token)
        monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", shopify.token)
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        config = write_settings(
            tmp_path, database_url=database_url, web_port=port,
            extra=f'[twilio]\naccount_sid = "{twilio.account_sid}"\nsms_from = "{SHOP}"\nwhatsapp_from = "{SHOP}"\n'
                  f'api_base_url = "{twilio.base_url}"\npublic_url = "{public}"\n'
                  # The README's Shopify lines, with the fake's address as the shop's; the version is the one served.
                  f'[orders]\nsource = "shopify"\nshop_url = "{shopify.base_url}"\n'
                  f'api_version = "{shopify.api_version}"\n')
        db = Database(database_url)
        proc = start_daemon(config, tmp_path / "daemon.log")
        try:
            wait_until(lambda: http_ok(port), 90, "the daemon's web server")
            token = twilio.auth_token
            # The order's own phone, by SMS and by WhatsApp: answered from Shopify.
            assert post(public, port, "/twilio/sms", text("+13125550163", "where's my order?"), token) == 200
            wait_until(lambda: sent_to(twilio, "+13125550163"), 30, "the SMS answer")
            [sms] = sent_to(twilio, "+13125550163")
            assert "#1042" in sms["Body"] and TRACKING in sms["Body"] and "UPS" in sms["Body"], sms
            assert post(public, port, "/twilio/whatsapp", text("+16175550188", "any update on my order?? where is it",
                                                                   whatsapp=True), token) == 200
            wait_until(lambda: sent_to(twilio, "+16175550188"), 30, "the WhatsApp answer")
            [wa] = sent_to(twilio, "+16175550188")
            assert "#1043" in wa["Body"] and "hasn't shipped yet" in wa["Body"], wa

            # Another phone texts that order's number: asked for both details, told nothing.
            assert post(public, port, "/twilio/sms", text("+14155550999", "where is order #1043"), token) == 200
            wait_until(lambda: sent_to(twilio, "+14155550999"), 30, "the request for details")
            [ask] = sent_to(twilio, "+14155550999")
            assert "order number and the email address" in ask["Body"]
            assert not any(w in ask["Body"] for w in ("Cedar", "Sam", "64", "shipped"))
            # ... and then gives both: now it's theirs to hear.
            assert post(public, port, "/twilio/sms", text("+14155550999", "1043 sam.okafor@example.com"), token) == 200
            wait_until(lambda: len(sent_to(twilio, "+14155550999")) == 2, 30, "the answer after proof")
            assert "#1043" in sent_to(twilio, "+14155550999")[1]["Body"]

            # Shopify was asked with the token in its header, by GraphQL, and never saw a widened search.
            searches = [body["variables"]["query"] for _, body in shopify.requests if isinstance(body, dict)]
            assert searches and all(q.startswith(("name:", "email:", "phone:")) for q in searches), searches
            assert all(h.get("X-Shopify-Access-Token") == shopify.token for h, _ in shopify.requests)
        finally:
            proc.terminate()
            proc.wait(30)
        log = (tmp_path / "daemon.log").read_text(errors="replace")
        assert shopify.token not in log
        with db.transaction() as session:
            from sqlmodel import select
            checks = [c.outcome for c in session.exec(select(OrderCheck).order_by(OrderCheck.id)).all()]
        db.dispose()
        assert checks == ["verified", "verified", "mismatch", "verified"], checks


def test_email_about_orders_from_the_export_file(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    now = datetime.now(timezone.utc)
    (tmp_path / "orders.csv").write_text(export([
        order("1042", "priya.shah@example.com", placed=now - timedelta(days=2), shipped=now - timedelta(days=1),
              carrier="UPS", tracking="1Z999AA10123456784", url=TRACKING, eta=now + timedelta(days=2),
              items=(("Amber Noir", 1, "48.00", "WW-104"),)),
        order("1043", "sam.okafor@example.com", placed=now - timedelta(hours=3))]), encoding="utf-8")
    path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                          extra='[orders]\nsource = "file"\nfile = "orders.csv"\n')  # the README's lines
    ctx = make_context(path)
    try:
        poll_mailbox(ctx)
        dovecot.append(customer_mail("Hi, where is my order?", sender="Priya Shah <priya.shah@example.com>",
                                     subject="My order"))
        dovecot.append(customer_mail("Where is order #1042?", sender="Mallory <mallory@attacker.test>",
                                     subject="order"))
        dovecot.append(customer_mail("Please cancel order #1043, I ordered the wrong scent",
                                     sender="Sam Okafor <sam.okafor@example.com>", subject="Cancel"))
        run_until_idle(ctx)
        bodies = {}
        for captured in smtp_capture.messages:
            reply = email.message_from_bytes(captured.data, policy=email.policy.default)
            bodies[captured.rcpt_tos[0]] = (reply["From"], reply.get_body(("plain",)).get_content())
        sender, priya = bodies["priya.shah@example.com"]
        assert "shop@example.test" in sender  # From: the shop's support address, as the README's settings give
        assert priya.startswith("Hi Priya,") and "#1042" in priya and TRACKING in priya and "UPS" in priya
        _, mallory = bodies["mallory@attacker.test"]
        assert "order number and the email address" in mallory and "Amber" not in mallory and TRACKING not in mallory
        _, sam = bodies["sam.okafor@example.com"]
        assert "passed your message about order #1043 to Maya" in sam
        drafts = {d.route for d in rows(ctx, Draft)}
        assert drafts == {Route.AUTO, Route.HANDOFF}
        [cancel] = [d for d in rows(ctx, Draft) if d.route == Route.HANDOFF]
        assert any("#1043: not shipped yet" in r and "cancellable" in r for r in cancel.reasons), cancel.reasons
    finally:
        ctx.db.dispose()


def test_email_about_orders_from_woocommerce(tmp_path, monkeypatch, dovecot, smtp_capture, database_url):
    """The README's WooCommerce lines; the key pair in the two variables it names. Over http the
    client signs with OAuth 1.0a, which the fake checks as WooCommerce does."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    now = datetime.now(timezone.utc)
    with FakeWooCommerce() as woo:
        woo.add_order(id=2051, status="completed", email="lena.fischer@example.com", first_name="Lena",
                      last_name="Fischer", total="39.00", items=(("Sea Salt & Fig", 1, "WW-103"),),
                      created=now - timedelta(days=3), paid=now - timedelta(days=3), completed=now - timedelta(days=2),
                      tracking=[dict(provider="USPS", number="9400111899223100099999", shipped=now - timedelta(days=2),
                                     link="https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111899223100099999")])
        monkeypatch.setenv("WOOCOMMERCE_CONSUMER_KEY", woo.consumer_key)
        monkeypatch.setenv("WOOCOMMERCE_CONSUMER_SECRET", woo.consumer_secret)
        path = write_settings(tmp_path, database_url=database_url, dovecot=dovecot, smtp=smtp_capture,
                              extra=f'[orders]\nsource = "woocommerce"\nshop_url = "{woo.base_url}"\n')
        ctx = make_context(path)
        try:
            poll_mailbox(ctx)
            dovecot.append(customer_mail("Has my order shipped yet? Where is it?",
                                         sender="Lena Fischer <lena.fischer@example.com>", subject="Order 2051"))
            dovecot.append(customer_mail("where's order #2051", sender="someone@attacker.test", subject="order"))
            run_until_idle(ctx)
            bodies = {c.rcpt_tos[0]: email.message_from_bytes(c.data, policy=email.policy.default)
                      .get_body(("plain",)).get_content() for c in smtp_capture.messages}
            lena = bodies["lena.fischer@example.com"]
            assert "#2051" in lena and "USPS" in lena and "9400111899223100099999" in lena, lena
            stranger = bodies["someone@attacker.test"]
            assert "order number and the email address" in stranger and "Sea Salt" not in stranger
        finally:
            ctx.db.dispose()

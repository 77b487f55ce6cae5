"""The WooCommerce order source through the real ``woocommerce`` client against a loopback fake of
the REST API v3 that checks OAuth 1.0a signatures the way WooCommerce does."""
from __future__ import annotations

import logging
import socket
import time
import traceback
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from responder.orders.base import OrderSourceError
from responder.orders.woocommerce import WooCommerceSource
from tests.fakes.woocommerce_api import FakeWooCommerce, woo_signature

UTC = timezone.utc
T0 = datetime(2025, 3, 10, 14, 30, tzinfo=UTC)


@pytest.fixture
def fake():
    with FakeWooCommerce() as server:
        yield server


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def source(fake, **kwargs) -> WooCommerceSource:
    kwargs.setdefault("sleep", Sleeps())
    return WooCommerceSource(fake.base_url, fake.consumer_key, fake.consumer_secret, **kwargs)


def leak_free(fake, error: BaseException) -> None:
    shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
    assert fake.consumer_key not in shown and fake.consumer_secret not in shown, shown


def test_by_number_fetches_the_order_by_its_id(fake):
    fake.add_order(id=812, email="Ana@Example.com", phone="+1 415-555-0100", total="42.50", created=T0,
                   paid=T0 + timedelta(minutes=1), items=[("Ember Candle - 8 oz / Cedar", 2, "EMB-8-CED")])
    fake.add_order(id=813, email="bo@example.com")
    [order] = source(fake).by_number("#812")
    assert order.number == "812" and order.source == "woocommerce"
    assert (order.email, order.phone, order.customer_name) == ("ana@example.com", "+14155550100", "Ana Diaz")
    assert order.total == Decimal("42.50") and order.currency == "USD"
    assert order.created_at == T0 and order.created_at.tzinfo is not None
    assert (order.financial_status, order.fulfillment_status) == ("paid", "unfulfilled")
    assert order.line_items[0].quantity == 2 and order.line_items[0].sku == "EMB-8-CED"
    assert order.admin_url == f"{fake.base_url}/wp-admin/post.php?post=812&action=edit"
    assert "/wp-json/wc/v3/orders/812" in fake.paths()
    assert not any(q.get("search") for _, _, q in fake.requests)


def test_unknown_number_is_an_empty_answer_not_an_error(fake):
    fake.add_order(id=812)
    assert source(fake).by_number("999") == []
    assert source(fake).by_number("WC-999") == []


def test_sequential_numbers_are_found_by_search_and_matched_exactly(fake):
    fake.add_order(id=812, number="1042", email="ana@example.com")
    fake.add_order(id=1042, number="1500", email="someone@example.com")   # post 1042 is another order
    fake.add_order(id=900, number="10420", email="decoy@example.com")     # Woo's loose search finds it too
    [order] = source(fake).by_number("1042")
    assert order.number == "1042" and order.email == "ana@example.com" and order.extra["id"] == 812
    assert any(q.get("search") == "1042" for _, _, q in fake.requests)


def test_by_email_keeps_exact_matches_newest_first(fake):
    fake.add_order(id=201, email="ana@example.com", created=T0)
    fake.add_order(id=202, email="banana@example.com", created=T0 + timedelta(days=9))   # loose match
    fake.add_order(id=203, email="ANA@example.com", created=T0 + timedelta(days=2))
    fake.add_order(id=204, email="ana@example.com", created=T0 + timedelta(days=3))
    found = source(fake).by_contact(email="Ana@Example.com", limit=2)
    assert [o.number for o in found] == ["204", "203"]
    assert source(fake).by_contact(email="nobody@example.com") == []


def test_by_phone_compares_normalised_numbers(fake):
    fake.add_order(id=301, phone="(415) 555-0100", created=T0)
    fake.add_order(id=302, phone="", shipping_phone="+1 415 555 0100", created=T0 + timedelta(days=1))
    fake.add_order(id=303, phone="(212) 555-0100", created=T0 + timedelta(days=2))   # same last digits
    fake.add_order(id=304, phone="+44 20 7946 0100", created=T0 + timedelta(days=3))
    found = source(fake).by_contact(phone="+14155550100")
    assert [o.number for o in found] == ["302", "301"]
    assert found[1].phone == "+14155550100"


def test_tracking_from_the_shipment_tracking_meta(fake):
    shipped = datetime(2025, 3, 11, tzinfo=UTC)
    fake.add_order(id=401, status="completed", completed=shipped, tracking=[
        {"provider": "USPS", "number": "9400111899560000000000", "shipped": shipped},
        {"provider": "Speedy Couriers", "number": "SC-77", "shipped": shipped, "custom": True,
         "link": "https://speedy.example/track?n=%1$s"}])
    [order] = source(fake).by_number("401")
    usps, custom = order.fulfillments
    assert (usps.carrier, usps.tracking_number, usps.shipped_at) == ("USPS", "9400111899560000000000", shipped)
    assert usps.tracking_url.endswith("9400111899560000000000")
    assert (custom.carrier, custom.tracking_url) == ("Speedy Couriers", "https://speedy.example/track?n=SC-77")
    assert order.fulfillment_status == "fulfilled"
    assert not any("shipment-trackings" in p for p in fake.paths())


def test_tracking_from_the_extension_endpoint(fake):
    fake.add_order(id=402, status="completed", tracking_in="extension", tracking=[
        {"provider": "Canada Post", "number": "7023210039414604", "shipped": datetime(2025, 3, 12, 18, tzinfo=UTC)}])
    [order] = source(fake).by_number("402")
    [shipment] = order.fulfillments
    assert (shipment.carrier, shipment.tracking_number) == ("Canada Post", "7023210039414604")
    assert shipment.tracking_url.endswith("7023210039414604")
    assert shipment.shipped_at == datetime(2025, 3, 12, tzinfo=UTC)
    assert "/wp-json/wc-shipment-tracking/v3/orders/402/shipment-trackings" in fake.paths()


def test_no_tracking_extension_means_no_tracking_and_no_error(fake):
    fake.tracking_extension = False
    fake.add_order(id=403, email="ana@example.com", status="completed", created=T0)
    fake.add_order(id=404, email="ana@example.com", status="processing", created=T0 + timedelta(days=1))
    found = source(fake).by_contact(email="ana@example.com")
    assert [(o.number, o.fulfillments, o.fulfillment_status) for o in found] == [
        ("404", (), "unfulfilled"), ("403", (), "fulfilled")]
    # The route's absence is learnt once per lookup.
    assert sum("shipment-trackings" in p for p in fake.paths()) == 1


def test_cancelled_unpaid_order(fake):
    fake.add_order(id=501, status="cancelled", created=T0, modified=T0 + timedelta(hours=2))
    [order] = source(fake).by_number("501")
    assert order.cancelled_at == T0 + timedelta(hours=2)
    assert order.financial_status == "voided" and order.fulfillment_status == "unfulfilled"


def test_refunded_order_with_amount_and_date(fake):
    fake.add_order(id=601, status="refunded", total="30.00", paid=T0,
                   refunds=[("30.00", "Arrived broken", T0 + timedelta(days=4))])
    [order] = source(fake).by_number("601")
    [refund] = order.refunds
    assert refund.amount == Decimal("30.00") and refund.note == "Arrived broken"
    assert refund.created_at == T0 + timedelta(days=4)
    assert order.financial_status == "refunded" and order.refunded == Decimal("30.00")
    assert "/wp-json/wc/v3/orders/601/refunds" in fake.paths()


def test_partially_refunded_order(fake):
    fake.add_order(id=602, status="completed", total="30.00", paid=T0,
                   refunds=[("5.00", "Late", T0 + timedelta(days=1)), ("2.50", "", T0 + timedelta(days=2))])
    fake.add_order(id=603, status="completed", total="30.00", paid=T0)
    [order] = source(fake).by_number("602")
    assert order.financial_status == "partially_refunded" and order.refunded == Decimal("7.50")
    assert [r.created_at for r in order.refunds] == [T0 + timedelta(days=1), T0 + timedelta(days=2)]
    [unrefunded] = source(fake).by_number("603")
    assert unrefunded.financial_status == "paid" and unrefunded.refunds == ()
    assert "/wp-json/wc/v3/orders/603/refunds" not in fake.paths()


def test_throttled_then_answered(fake):
    fake.add_order(id=701)
    fake.fail_next(429, retry_after=2)
    sleeps = Sleeps()
    [order] = source(fake, sleep=sleeps).by_number("701")
    assert order.number == "701" and sleeps == [2.0]


def test_throttling_past_the_budget_is_an_error(fake):
    fake.add_order(id=702)
    fake.fail_next(429, times=50, retry_after=3)
    sleeps = Sleeps()
    with pytest.raises(OrderSourceError, match="429"):
        source(fake, sleep=sleeps, max_wait_s=8.0).by_number("702")
    assert sum(sleeps) <= 8.0 and len(sleeps) == 2


def test_one_server_error_is_retried_two_are_not(fake):
    fake.add_order(id=703)
    fake.fail_next(503)
    assert [o.number for o in source(fake).by_number("703")] == ["703"]
    fake.fail_next(502, times=2)
    with pytest.raises(OrderSourceError, match="502"):
        source(fake).by_number("703")


def test_wrong_secret_is_refused_by_the_signature_check(fake):
    fake.add_order(id=801)
    wrong = WooCommerceSource(fake.base_url, fake.consumer_key, "cs_" + "0" * 40, sleep=Sleeps())
    with pytest.raises(OrderSourceError) as caught:
        wrong.by_number("801")
    message = str(caught.value)
    assert "consumer_key_env" in message and "Read access" in message and "signature" in message
    leak_free(fake, caught.value)
    assert "cs_" + "0" * 40 not in message


def test_key_without_read_access_is_refused():
    with FakeWooCommerce(key_permissions="write") as fake:
        with pytest.raises(OrderSourceError, match="Read access"):
            source(fake).by_contact(email="ana@example.com")


def test_timeout_is_an_error_within_bounded_time(fake):
    fake.add_order(id=802)
    fake.delay = 3.0
    started = time.monotonic()
    with pytest.raises(OrderSourceError, match="timed out") as caught:
        source(fake, timeout_s=0.5, max_wait_s=1.0).by_number("802")
    assert time.monotonic() - started < 2.0
    leak_free(fake, caught.value)


def test_non_json_body_is_an_error(fake):
    fake.add_order(id=803)
    fake.fail_next(200, body="<!DOCTYPE html><html><body>Maintenance</body></html>", content_type="text/html")
    with pytest.raises(OrderSourceError, match="JSON") as caught:
        source(fake).by_number("803")
    assert "text/html" in str(caught.value)


def test_wrong_shop_url_names_the_setting(fake):
    with pytest.raises(OrderSourceError, match="shop_url"):
        WooCommerceSource(fake.base_url + "/shop", fake.consumer_key, fake.consumer_secret).by_number("1")


def test_connection_errors_never_show_query_string_credentials(fake):
    # https with query-string auth puts the key AND secret in the URL; requests' own exception
    # (TLS to a plain-http server here) repeats that URL.
    https = fake.base_url.replace("http://", "https://")
    src = WooCommerceSource(https, fake.consumer_key, fake.consumer_secret, query_string_auth=True, sleep=Sleeps())
    with pytest.raises(OrderSourceError) as caught:
        src.by_contact(email="ana@example.com")
    leak_free(fake, caught.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(OrderSourceError, match="could not connect") as caught:
        WooCommerceSource(f"http://127.0.0.1:{closed}", fake.consumer_key, fake.consumer_secret).by_number("1")
    leak_free(fake, caught.value)


def test_credentials_stay_out_of_the_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.add_order(id=804, email="ana@example.com")
    fake.fail_next(500)
    source(fake).by_contact(email="ana@example.com")
    with pytest.raises(OrderSourceError):
        WooCommerceSource(fake.base_url, fake.consumer_key, "cs_wrong").by_number("804")
    assert "orders" in caplog.text        # urllib3 did log the requests
    assert fake.consumer_key not in caplog.text and fake.consumer_secret not in caplog.text


# --- the fake's own auth, independently of the client ------------------------------------------


def test_fake_accepts_hmac_sha1_and_refuses_replayed_nonces(fake):
    fake.add_order(id=901)
    url = fake.base_url + "/wp-json/wc/v3/orders/901"
    params = {"oauth_consumer_key": fake.consumer_key, "oauth_timestamp": str(int(time.time())),
              "oauth_nonce": "abc123", "oauth_signature_method": "HMAC-SHA1"}
    signed = dict(params, oauth_signature=woo_signature("GET", url, params, fake.consumer_secret, "sha1"))
    assert requests.get(url, params=signed, timeout=5).json()["id"] == 901
    replay = requests.get(url, params=signed, timeout=5)
    assert replay.status_code == 401 and "nonce" in replay.json()["message"]
    assert requests.get(url, timeout=5).json()["code"] == "woocommerce_rest_cannot_view"


def test_fake_takes_basic_auth_only_when_ssl():
    with FakeWooCommerce(ssl=True) as fake:
        fake.add_order(id=902)
        url = fake.base_url + "/wp-json/wc/v3/orders/902"
        assert requests.get(url, auth=(fake.consumer_key, fake.consumer_secret), timeout=5).status_code == 200
        assert requests.get(url, auth=(fake.consumer_key, "cs_nope"), timeout=5).status_code == 401
    with FakeWooCommerce() as fake:
        fake.add_order(id=902)
        url = fake.base_url + "/wp-json/wc/v3/orders/902"
        assert requests.get(url, auth=(fake.consumer_key, fake.consumer_secret), timeout=5).status_code == 401

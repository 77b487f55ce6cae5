"""The Shopify order source, driven through its real HTTP client against a loopback Admin GraphQL
fake that executes the client's query with graphql-core against Shopify's schema (fakes/shopify_admin.py)."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from fakes.shopify_admin import FakeShopify

from responder.orders.base import OrderSourceError
from responder.orders.shopify import QUERY, ShopifySource

pytestmark = pytest.mark.timeout(30)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def shop():
    with FakeShopify() as fake:
        yield fake


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def source(shop, sleeps):
    with ShopifySource(shop.base_url, shop.token, timeout_s=2.0, sleep=sleeps) as src:
        yield src


def sent_search(shop) -> str:
    return shop.requests[-1][1]["variables"]["query"]


def test_the_query_is_valid_against_the_schema_and_sends_the_token(shop, source):
    shop.add_order("1001", email="a@example.com")
    source.by_number("1001")
    headers, body = shop.requests[-1]
    assert body["query"] == QUERY
    assert headers["X-Shopify-Access-Token"] == shop.token
    assert shop.costs[-1] <= 1000                      # under Shopify's single-query cap


def test_a_misspelled_field_is_rejected_by_the_fake(shop, source, monkeypatch):
    import responder.orders.shopify as module
    monkeypatch.setattr(module, "QUERY", QUERY.replace("displayFulfillmentStatus", "fulfillmentStatus"))
    with pytest.raises(OrderSourceError, match="fulfillmentStatus"):
        source.by_number("1001")


def test_by_number_keeps_only_the_exact_name_among_loose_matches(shop, source):
    wanted = shop.add_order("1042", email="jane@example.com", total="54.00", customer_name="Jane Roe",
                            line_items=[("Ember Candle - 8 oz / Cedar", 2, "EC-8-CED"), ("Wick trimmer", 1, "")])
    for n in range(10420, 10432):                      # more loose matches than one page
        shop.add_order(str(n))
    shop.add_order("2042")
    [order] = source.by_number("#1042")
    assert sent_search(shop) == "name:#1042"
    assert order.number == "1042" and order.source == "shopify"
    assert order.email == "jane@example.com" and order.customer_name == "Jane Roe"
    assert order.total == Decimal("54.00") and order.currency == "USD"
    assert order.financial_status == "paid" and order.fulfillment_status == "unfulfilled"
    assert order.created_at == datetime.fromisoformat(wanted["createdAt"].replace("Z", "+00:00"))
    assert order.created_at.tzinfo is not None
    assert [(i.name, i.quantity, i.sku) for i in order.line_items] == [
        ("Ember Candle - 8 oz / Cedar", 2, "EC-8-CED"), ("Wick trimmer", 1, "")]
    assert order.admin_url == f"{shop.base_url}/admin/orders/{wanted['legacyResourceId']}"
    assert source.by_number("104") == []               # loose matches only: no exact "#104"
    assert source.by_number("9999") == []


def test_by_email_finds_this_customers_orders_newest_first(shop, source):
    shop.add_order("1001", email="Jane@Example.com", created_at=utc(2026, 1, 5, 10))
    shop.add_order("1003", email="jane@example.com", created_at=utc(2026, 2, 1, 10))
    shop.add_order("1002", email="jane@example.com", created_at=utc(2026, 1, 20, 10))
    shop.add_order("1004", email="other@example.com", created_at=utc(2026, 2, 2, 10))
    orders = source.by_contact(email="JANE@example.com")
    assert [o.number for o in orders] == ["1003", "1002", "1001"]
    assert sent_search(shop) == 'email:"jane@example.com"'
    assert all(o.email == "jane@example.com" for o in orders)
    assert [o.number for o in source.by_contact(email="jane@example.com", limit=2)] == ["1003", "1002"]


def test_by_phone_matches_e164(shop, source):
    shop.add_order("1010", phone="+15551234567", created_at=utc(2026, 1, 1))
    shop.add_order("1011", phone="+15551234567", created_at=utc(2026, 1, 3))
    shop.add_order("1012", phone="+15559999999")
    orders = source.by_contact(phone="+1 (555) 123-4567")
    assert sent_search(shop) == 'phone:"+15551234567"'
    assert [o.number for o in orders] == ["1011", "1010"]
    assert orders[0].phone == "+15551234567"


def test_an_order_with_fulfillments(shop, source):
    shop.add_order("1050", fulfillment_status="FULFILLED", fulfillments=[shop.fulfillment(
        display_status="DELIVERED", company="USPS", number="9400111899223817461234",
        url="https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111899223817461234",
        created_at=utc(2026, 3, 3, 14), in_transit_at=utc(2026, 3, 4, 8),
        estimated_delivery_at=utc(2026, 3, 7), delivered_at=utc(2026, 3, 6, 16, 30))])
    [order] = source.by_number("1050")
    assert order.fulfillment_status == "fulfilled"
    [f] = order.fulfillments
    assert f.status == "delivered" and f.carrier == "USPS"
    assert f.tracking_number == "9400111899223817461234"
    assert f.tracking_url.endswith("tLabels=9400111899223817461234")
    assert f.shipped_at == utc(2026, 3, 3, 14) and f.in_transit_at == utc(2026, 3, 4, 8)
    assert f.estimated_delivery_at == utc(2026, 3, 7) and f.delivered_at == utc(2026, 3, 6, 16, 30)


def test_a_fulfillment_without_display_status_falls_back_to_status(shop, source):
    shop.add_order("1051", fulfillments=[shop.fulfillment(display_status=None, status="SUCCESS")])
    [order] = source.by_number("1051")
    assert [f.status for f in order.fulfillments] == ["success"]
    assert order.fulfillments[0].carrier == "" and order.fulfillments[0].delivered_at is None


def test_a_partially_fulfilled_order(shop, source):
    shop.add_order("1060", fulfillment_status="PARTIALLY_FULFILLED",
                   fulfillments=[shop.fulfillment(display_status="IN_TRANSIT", company="Canada Post", number="CP1")])
    shop.add_order("1061", fulfillment_status="IN_PROGRESS")
    [partial] = source.by_number("1060")
    [in_progress] = source.by_number("1061")
    assert partial.fulfillment_status == "partial"
    assert partial.fulfillments[0].status == "in_transit" and partial.fulfillments[0].carrier == "Canada Post"
    assert in_progress.fulfillment_status == "unfulfilled"


def test_a_cancelled_order(shop, source):
    shop.add_order("1070", financial_status="VOIDED", cancelled_at=utc(2026, 3, 2, 12), cancel_reason="CUSTOMER")
    [order] = source.by_number("1070")
    assert order.cancelled_at == utc(2026, 3, 2, 12)
    assert order.cancel_reason == "customer" and order.financial_status == "voided"


def test_a_refunded_order(shop, source):
    shop.add_order("1080", total="40.00", financial_status="PARTIALLY_REFUNDED",
                   refunds=[("12.50", utc(2026, 3, 5)), ("2.25", utc(2026, 3, 6))])
    [order] = source.by_number("1080")
    assert order.financial_status == "partially_refunded"
    assert [r.amount for r in order.refunds] == [Decimal("12.50"), Decimal("2.25")]
    assert order.refunded == Decimal("14.75")
    assert order.refunds[0].created_at == utc(2026, 3, 5)


def test_429_then_success_waits_retry_after(shop, source, sleeps):
    shop.add_order("1100")
    shop.fail_next(429, retry_after="0.4")
    [order] = source.by_number("1100")
    assert order.number == "1100"
    assert sleeps == [0.4] and len(shop.requests) == 2


def test_429_without_retry_after_waits_a_second(shop, source, sleeps):
    shop.add_order("1101")
    shop.fail_next(429)
    assert [o.number for o in source.by_number("1101")] == ["1101"]
    assert sleeps == [1.0]


def test_throttled_then_success_waits_the_computed_time(shop, source, sleeps):
    shop.add_order("1110")
    shop.throttle_next(available=250.0, restore_rate=100.0)
    [order] = source.by_number("1110")
    assert order.number == "1110"
    cost = shop.costs[0]
    assert cost > 350
    assert sleeps == [pytest.approx((cost - 250.0) / 100.0)]


def test_throttling_never_waits_past_max_wait(shop, sleeps):
    shop.throttle_next(times=50, available=0.0, restore_rate=100.0)
    with ShopifySource(shop.base_url, shop.token, max_wait_s=8.0, sleep=sleeps) as src:
        with pytest.raises(OrderSourceError, match="throttl"):
            src.by_number("1")
    assert sleeps and sum(sleeps) <= 8.0


def test_a_server_error_is_retried_once(shop, source, sleeps):
    shop.add_order("1120")
    shop.fail_next(500)
    assert [o.number for o in source.by_number("1120")] == ["1120"]
    assert len(sleeps) == 1
    shop.fail_next(503, times=2)
    with pytest.raises(OrderSourceError, match="503"):
        source.by_number("1120")


def test_401_is_a_clear_error_without_the_token(shop, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    bad = "shpat_wrong_0123456789abcdef0123456789ab"
    with ShopifySource(shop.base_url, bad, sleep=sleeps) as src:
        with pytest.raises(OrderSourceError) as info:
            src.by_number("1042")
    text = str(info.value)
    assert "401" in text and "token" in text and "read_orders" in text
    assert bad not in text and bad not in repr(info.value)
    assert bad not in caplog.text and shop.token not in caplog.text
    assert sleeps == []


def test_the_token_is_in_no_error_or_log_line(shop, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    shop.fail_next(429, times=3, retry_after="1")     # waits 1 s, 1 s, then a third would pass 2.5 s
    with ShopifySource(shop.base_url, shop.token, max_wait_s=2.5, sleep=sleeps) as src:
        with pytest.raises(OrderSourceError) as first:
            src.by_number("1")
        assert sleeps == [1.0, 1.0] and len(shop.requests) == 3
        shop.fail_next(200, body={"errors": [{"message": f"echo {shop.token}"}]})
        with pytest.raises(OrderSourceError) as second:
            src.by_number("1")
    assert "429" in str(first.value)
    assert "echo" in str(second.value)
    for text in (str(first.value), str(second.value), caplog.text):
        assert shop.token not in text


def test_a_timeout_is_an_error_within_a_bounded_time(shop, sleeps):
    shop.delay = 3.0
    with ShopifySource(shop.base_url, shop.token, timeout_s=0.3, sleep=sleeps) as src:
        started = time.monotonic()
        with pytest.raises(OrderSourceError, match="in time"):
            src.by_number("1042")
        assert time.monotonic() - started < 2.0


def test_a_refused_connection_is_an_error(sleeps):
    fake = FakeShopify()
    url = fake.base_url
    fake.server.server_close()                        # nothing listens on the port any more
    with ShopifySource(url, "shpat_x", timeout_s=1.0, sleep=sleeps) as src:
        with pytest.raises(OrderSourceError, match="could not reach Shopify"):
            src.by_contact(email="jane@example.com")


def test_a_garbage_body_is_an_error(shop, source):
    shop.fail_next(200, body=b"<html><body>Shop unavailable</body></html>")
    with pytest.raises(OrderSourceError, match="not JSON"):
        source.by_number("1042")


def test_a_body_without_orders_is_an_error(shop, source):
    shop.fail_next(200, body={"data": {"shop": {}}})
    with pytest.raises(OrderSourceError, match="orders"):
        source.by_number("1042")


def test_an_injected_search_value_never_widens_the_search(shop, source):
    shop.add_order("1042", email="jane@example.com")
    shop.add_order("2000", email="mallory@example.com")
    shop.add_order("2001", email="bob@example.com")
    assert [o.number for o in source.by_number("1042 OR email:*")] == ["1042"]
    assert sent_search(shop) == "name:#1042"
    before = len(shop.requests)
    assert source.by_number("OR email:*") == []        # no digits: nothing is asked
    assert source.by_contact(email='x" OR email:* "') == []
    assert source.by_contact(email="*@example.com") == []
    assert source.by_contact(phone="+1555 OR name:*") == []
    assert len(shop.requests) == before
    orders = source.by_contact(email="jane@example.com")
    assert [o.number for o in orders] == ["1042"]


def test_the_fake_widens_an_unsanitised_search(shop):
    """The injection test above can fail: sent raw, the same value does widen the search."""
    shop.add_order("1042")
    shop.add_order("2000", email="mallory@example.com")
    body = {"query": QUERY, "variables": {"first": 10, "query": "name:#1042 OR email:*",
                                          "sortKey": "ORDER_NUMBER", "reverse": False}}
    answer = httpx.post(f"{shop.base_url}/admin/api/2026-10/graphql.json", json=body,
                        headers={"X-Shopify-Access-Token": shop.token}).json()
    assert [n["name"] for n in answer["data"]["orders"]["nodes"]] == ["#1042", "#2000"]


def test_a_bad_shop_url_or_missing_token_is_refused():
    with pytest.raises(OrderSourceError):
        ShopifySource("ftp://shop.example", "t")
    with pytest.raises(OrderSourceError, match="token"):
        ShopifySource("https://shop.example", "")

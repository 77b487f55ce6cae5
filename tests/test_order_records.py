"""The order step's pure parts: the shop's own timing sentences, an order's state and lateness, and
the reply and summary for each kind of record (``responder.orders.answer``, ``verify``)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from responder.knowledge.folder import load_knowledge
from responder.orders.answer import (
    late,
    owner_summary,
    shop_times,
    state_of,
    status_reply,
)
from responder.orders.base import Fulfillment, LineItem, Order, Refund
from responder.orders.verify import emails_in, numbers_in, proof

ROOT = Path(__file__).resolve().parent.parent
TZ, TODAY = ZoneInfo("America/Chicago"), date(2026, 12, 7)
NOW = datetime(2026, 12, 7, 18, tzinfo=timezone.utc)


def sample_times():
    knowledge = load_knowledge(ROOT / "knowledge")
    return shop_times("\n\n".join(e.text for e in knowledge.entries if e.kind in ("faq", "policy")))


def test_the_shops_own_sentences_give_the_times():
    times = sample_times()
    assert times.dispatch.startswith("In-stock candles ship within 2 business days") and times.dispatch_days == 2
    assert times.delivery == "Standard delivery takes 3–5 business days after the order ships."
    assert times.delivery_days == 5
    assert times.refund.startswith("Most banks take 5–10 business days")


def order(**fields) -> Order:
    base = dict(number="2051", email="lena@example.com", currency="USD", total=Decimal("39.00"),
                created_at=datetime(2026, 12, 4, 15, tzinfo=timezone.utc), financial_status="paid",
                line_items=(LineItem("Sea Salt & Fig", 1),))
    return Order(**{**base, **fields})


@pytest.mark.parametrize("record, state, words", [
    (order(), "unfulfilled", "hasn't shipped yet"),
    (order(fulfillment_status="fulfilled"), "shipped", "#2051 (Sea Salt & Fig) has shipped."),  # no shipment recorded
    (order(fulfillment_status="fulfilled", fulfillments=(Fulfillment(carrier="UPS", tracking_url="https://ups.example/1",
                                                                    shipped_at=datetime(2026, 12, 5, tzinfo=timezone.utc)),)),
     "shipped", "shipped with UPS on December 4"),
    (order(fulfillment_status="fulfilled", fulfillments=(Fulfillment(carrier="UPS", delivered_at=datetime(
        2026, 12, 6, 20, tzinfo=timezone.utc)),)), "delivered", "was delivered on December 6 by UPS"),
    (order(cancelled_at=datetime(2026, 12, 5, tzinfo=timezone.utc)), "cancelled", "was cancelled on December 4"),
    (order(financial_status="refunded", refunds=(Refund(Decimal("39.00"), datetime(2026, 12, 6, tzinfo=timezone.utc)),)),
     "refunded", "refund of $39.00 on December 5"),
])
def test_every_state_reads_in_the_shops_voice(record, state, words):
    assert state_of(record) == state
    reply = status_reply([record], sample_times(), tz=TZ, today=TODAY, owner_name="Maya")
    assert words in reply, reply


def test_late_is_measured_by_the_shops_own_window():
    times = sample_times()
    shipped = order(fulfillment_status="fulfilled", fulfillments=(Fulfillment(
        carrier="UPS", shipped_at=datetime(2026, 11, 23, tzinfo=timezone.utc)),))
    assert "not delivered by Nov 30" in late(shipped, times, today=TODAY)   # 5 business days after Nov 23
    assert late(shipped, times, today=date(2026, 11, 30)) is None
    assert late(order(created_at=datetime(2026, 12, 1, tzinfo=timezone.utc)), times, today=TODAY)  # not shipped in 2
    assert late(order(), times, today=TODAY) is None


def test_the_owners_summary_says_what_can_still_be_done():
    line = owner_summary(order(admin_url="https://shop.example/admin/orders/9"), now=NOW, tz=TZ)
    assert line == ("#2051: not shipped yet, $39.00, placed 3 days ago, cancellable · Sea Salt & Fig · "
                    "https://shop.example/admin/orders/9")


def test_numbers_emails_and_proof():
    assert numbers_in("where is order #1043? also order no. 1044") == ["1043", "1044"]
    assert numbers_in("I ordered 100 candles") == []
    assert numbers_in("1043 sam@example.com") == ["1043"]
    assert emails_in("it's Sam.Okafor@Example.com.") == ["sam.okafor@example.com"]
    record = order(email="sam@example.com", phone="+16175550188")
    assert proof(record, identities=[("email", "SAM@example.com")], typed_emails=[])
    assert proof(record, identities=[("phone", "whatsapp:+1 (617) 555-0188")], typed_emails=[])
    assert proof(record, identities=[("email", "mallory@example.net")], typed_emails=["sam@example.com"])
    assert proof(record, identities=[("email", "mallory@example.net")], typed_emails=["sam@example.net"]) is None

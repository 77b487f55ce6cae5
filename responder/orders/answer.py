"""What to tell a customer about their own order, and what to tell the owner: pure, no I/O.

Runs in the order step (``responder.orders.step``) once the order is found and proved to be the
sender's. ``state_of`` names where an order stands (not shipped, on its way, delivered, cancelled,
refunded) and whether it is late by the shop's own delivery window; ``status_reply`` says it in
the shop's voice from the order record and the shop's own sentences only (the dispatch time, the
delivery window and the refund timing are quoted from the FAQ and policies, never invented);
``owner_summary`` is the one line the owner reads in the queue: "#1043: not shipped yet, $64.00,
placed 2 h ago, cancellable".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache

from responder.core.templating import render
from responder.orders.base import Order

SYMBOLS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "GBP": "£", "EUR": "€", "JPY": "¥", "NZD": "NZ$"}
_DAYS = r"(\d+)(?:\s*(?:–|-|to)\s*(\d+))?\s*(business\s+|working\s+)?days?"
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]")
DISPATCH = re.compile(rf"\b(?:ship|ships|shipped|dispatch\w*|sent out|leave[s]? (?:our|the) (?:studio|warehouse))\b"
                      rf"[^.!?\n]*?\b{_DAYS}", re.I)
DELIVERY = re.compile(rf"\b(?:deliver\w*|arriv\w*|transit)\b[^.!?\n]*?\b{_DAYS}", re.I)
# How long a refund takes to show: a sentence about banks or statements, not one about returns.
REFUND = re.compile(rf"\b(?:refund\w*|money)\b[^.!?\n]*?\b(?:bank|card|statement|account)s?\b[^.!?\n]*?\b{_DAYS}"
                    rf"|\b(?:bank|card|statement)s?\b[^.!?\n]*?\b{_DAYS}[^.!?\n]*\brefund", re.I)
DEFAULT_LATE_BUSINESS_DAYS = 10   # no delivery window in the knowledge: after this, the owner looks


@dataclass(frozen=True)
class ShopTimes:
    """The shop's own words on timing, read from its FAQ and policies (``shop_times``)."""
    dispatch: str = ""        # "In-stock candles ship within 2 business days, and …"
    dispatch_days: int = 0    # business days to ship
    delivery: str = ""        # "Standard delivery takes 3–5 business days after the order ships."
    delivery_days: int = 0    # business days in transit, the top of the range
    refund: str = ""          # "Refunds go back to the original payment method within 5 business days …"


def _first(pattern: re.Pattern, text: str, avoid: re.Pattern | None = None) -> tuple[str, int]:
    """The first sentence the pattern finds (and ``avoid`` doesn't), and its days in business days."""
    for sentence in _SENTENCE.findall(text):
        if (m := pattern.search(sentence)) and not (avoid and avoid.search(sentence)):
            d = re.search(_DAYS, sentence[m.start():], re.I)
            days = int(d.group(2) or d.group(1))
            return " ".join(sentence.split()), days if d.group(3) else max(1, days * 5 // 7)
    return "", 0


@lru_cache(maxsize=8)  # the same knowledge text for every order question until the knowledge changes
def shop_times(policies_text: str) -> ShopTimes:
    text = re.sub(r"(?m)^#+[^\n]*$", "", policies_text or "")  # headings are questions, not facts
    dispatch, dispatch_days = _first(DISPATCH, text, avoid=re.compile(r"\b(?:deliver|arriv)", re.I))
    delivery, delivery_days = _first(DELIVERY, re.sub(re.escape(dispatch), "", text) if dispatch else text)
    refund, _ = _first(REFUND, text)
    return ShopTimes(dispatch, dispatch_days, delivery, delivery_days, refund)


def business_days_after(start: date, days: int) -> date:
    day = start
    while days > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def state_of(order: Order) -> str:
    if order.financial_status == "refunded":
        return "refunded"
    if order.cancelled_at is not None:
        return "cancelled"
    if order.fulfillments and all(f.delivered_at or f.status == "delivered" for f in order.fulfillments) \
            and order.fulfillment_status == "fulfilled":
        return "delivered"
    if order.fulfillment_status == "partial":
        return "partial"
    if order.fulfillment_status == "fulfilled" or order.fulfillments:
        return "shipped"
    return "unfulfilled"


def late(order: Order, times: ShopTimes, *, today: date, late_after_days: int = 0) -> str | None:
    """Why the order is later than the shop's own window says it should be, or None."""
    state = state_of(order)
    transit = late_after_days or times.delivery_days or DEFAULT_LATE_BUSINESS_DAYS
    if state in ("shipped", "partial"):
        shipped = [f.shipped_at for f in order.fulfillments if f.shipped_at]
        if shipped:
            due = business_days_after(max(shipped).date(), transit)
            etas = [f.estimated_delivery_at.date() for f in order.fulfillments if f.estimated_delivery_at]
            due = max([due, *etas])
            if today > due:
                return f"shipped {max(shipped).date():%b} {max(shipped).day} and not delivered by {due:%b} {due.day}"
    if state == "unfulfilled" and order.created_at is not None:
        due = business_days_after(order.created_at.date(), times.dispatch_days or transit)
        if today > due:
            return f"placed {order.created_at.date():%b} {order.created_at.day} and not shipped by {due:%b} {due.day}"
    return None


def amount(value: Decimal | None, currency: str) -> str:
    if value is None:
        return ""
    symbol = SYMBOLS.get(currency.upper(), "")
    shown = f"{value:,.2f}"
    return f"{symbol}{shown}" if symbol else f"{shown} {currency}".strip()


def day_in_words(moment: datetime | None, tz: tzinfo, today: date) -> str:
    if moment is None:
        return ""
    day = moment.astimezone(tz).date()
    return f"{day:%B} {day.day}" + (f", {day.year}" if day.year != today.year else "")


def items_in_words(order: Order, limit: int = 3) -> str:
    names = [f"{i.quantity} x {i.name}" if i.quantity > 1 else i.name for i in order.line_items[:limit]]
    more = len(order.line_items) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def status_reply(orders: list[Order], times: ShopTimes, *, tz: tzinfo, today: date, owner_name: str) -> str:
    """The answer for each order, in the shop's voice (``templates/replies/order_status.txt.j2``)."""
    rows = []
    for order in orders:
        shipments = [dict(carrier=f.carrier, number=f.tracking_number, url=f.tracking_url,
                          shipped=day_in_words(f.shipped_at, tz, today),
                          eta=day_in_words(f.estimated_delivery_at, tz, today) if not f.delivered_at else "",
                          delivered=day_in_words(f.delivered_at, tz, today)) for f in order.fulfillments]
        # Fulfilled with no shipment recorded (a WooCommerce order marked completed, no tracking).
        shipments = shipments or [dict(carrier="", number="", url="", shipped="", eta="", delivered="")]
        refunds = [dict(amount=amount(r.amount, order.currency), on=day_in_words(r.created_at, tz, today))
                   for r in order.refunds]
        rows.append(dict(number=order.number, state=state_of(order), goods=items_in_words(order),
                         placed=day_in_words(order.created_at, tz, today),
                         cancelled=day_in_words(order.cancelled_at, tz, today), shipments=shipments,
                         refunds=refunds, total=amount(order.total, order.currency)))
    return render("replies/order_status.txt.j2", orders=rows, times=times, owner_name=owner_name).strip()


def owner_summary(order: Order, *, now: datetime, tz: tzinfo) -> str:
    """"#1043: not shipped yet, $64.00, placed 2 h ago, cancellable · 2 × Cedar & Smoke · <admin link>"."""
    state = state_of(order)
    words = {"unfulfilled": "not shipped yet", "partial": "partly shipped", "shipped": "shipped, on its way",
             "delivered": "delivered", "cancelled": "cancelled", "refunded": "refunded"}[state]
    parts = [f"#{order.number}: {words}"]
    if order.total is not None:
        parts.append(amount(order.total, order.currency))
    if order.financial_status and order.financial_status not in ("paid", "refunded"):
        parts.append(order.financial_status.replace("_", " "))
    if order.created_at is not None:
        parts.append(f"placed {ago(now - order.created_at)}")
    if order.refunds:
        parts.append(f"{amount(order.refunded, order.currency)} refunded")
    parts.append("cancellable" if state == "unfulfilled" and order.financial_status != "refunded"
                 else "not cancellable (already " + ("shipped" if state in ("partial", "shipped", "delivered")
                                                      else state) + ")")
    line = ", ".join(parts)
    if order.line_items:
        line += f" · {items_in_words(order)}"
    if order.fulfillments and (f := order.fulfillments[-1]).tracking_number:
        line += f" · {f.carrier} {f.tracking_number}".replace("  ", " ")
    return line + (f" · {order.admin_url}" if order.admin_url else "")


def ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"

"""Orders for tests, written as Shopify's orders export (the header of the sample shop's
``knowledge/orders.csv``, which is Shopify's own column list plus the optional tracking columns).

``export([...])`` returns the CSV text; each order is a dict from ``order(...)``. Times are aware
datetimes (relative to the test's now, so an order's state doesn't drift with the calendar).
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = next(csv.reader(io.StringIO((ROOT / "knowledge" / "orders.csv").read_text(encoding="utf-8"))))


def stamp(moment: datetime | None) -> str:
    return moment.astimezone(timezone(timedelta(hours=-5))).strftime("%Y-%m-%d %H:%M:%S %z") if moment else ""


def order(number: str, email: str, *, placed: datetime, phone: str = "", name: str = "Test Customer",
          items=(("Cedar & Smoke", 1, "32.00", "WW-101"),), shipping: str = "7.00", financial: str = "paid",
          shipped: datetime | None = None, carrier: str = "", tracking: str = "", url: str = "",
          eta: datetime | None = None, delivered: datetime | None = None, cancelled: datetime | None = None,
          refunded: str = "", refunded_at: datetime | None = None, order_id: str = "") -> dict:
    return dict(number=number, email=email, placed=placed, phone=phone, name=name, items=items, shipping=shipping,
                financial=financial, shipped=shipped, carrier=carrier, tracking=tracking, url=url, eta=eta,
                delivered=delivered, cancelled=cancelled, refunded=refunded, refunded_at=refunded_at,
                order_id=order_id or str(7000000000 + int(number)))


def export(orders: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for o in orders:
        subtotal = sum(int(q) * float(p) for _, q, p, _ in o["items"])
        for j, (item, quantity, price, sku) in enumerate(o["items"]):
            row = dict.fromkeys(HEADER, "")
            row.update({"Name": f"#{o['number']}", "Email": o["email"], "Lineitem quantity": str(quantity),
                        "Lineitem name": item, "Lineitem price": price, "Lineitem sku": sku})
            if j == 0:
                row.update({
                    "Financial Status": o["financial"], "Paid at": stamp(o["placed"]),
                    "Fulfillment Status": "fulfilled" if o["shipped"] else "unfulfilled",
                    "Fulfilled at": stamp(o["shipped"]), "Currency": "USD", "Subtotal": f"{subtotal:.2f}",
                    "Shipping": o["shipping"], "Total": f"{subtotal + float(o['shipping']):.2f}",
                    "Created at": stamp(o["placed"]), "Billing Name": o["name"], "Billing Phone": o["phone"],
                    "Shipping Name": o["name"], "Shipping Address1": "12 Secret Lane", "Shipping City": "Springfield",
                    "Cancelled at": stamp(o["cancelled"]), "Refunded Amount": o["refunded"], "Id": o["order_id"],
                    "Phone": o["phone"], "Tracking Company": o["carrier"], "Tracking Number": o["tracking"],
                    "Tracking URL": o["url"], "Estimated delivery at": stamp(o["eta"]),
                    "Delivered at": stamp(o["delivered"]), "Refunded at": stamp(o["refunded_at"])})
            writer.writerow([row[h] for h in HEADER])
    return out.getvalue()

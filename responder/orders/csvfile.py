"""The file order source: Shopify's orders export CSV, for shops that export by hand.

An adapter behind ``responder.orders.base`` (the pipeline asks it when a customer asks about an
order), and the embedded default: the sample shop's ``knowledge/orders.csv`` shows the feature
with no account. Shopify's export (Admin > Orders > Export) has one row per line item; the first
row of an order carries the order's own columns (Email, Financial Status, Fulfillment Status,
Created at, Total, Cancelled at, Refunded Amount, Phone …). Columns Shopify's export lacks may be
added by hand: ``Tracking Company``, ``Tracking Number``, ``Tracking URL``, ``Estimated delivery at``,
``Delivered at`` and ``Refunded at``.

The file is read again whenever its size or modification time changes, so an owner who drops a
fresh export in place is answered from it on the next lookup. A missing or unreadable file is an
:class:`OrderSourceError` (the draft waits for the owner, with the reason); a row that doesn't
read is skipped with a warning in the log, and the rest of the file still answers.
"""
from __future__ import annotations

import csv
import io
import logging
import threading
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from responder.core.text import normalize_phone
from responder.orders.base import Fulfillment, LineItem, Order, OrderSourceError, Refund

log = logging.getLogger("deskhand.orders")
REQUIRED = ("Name", "Email", "Created at")
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d")
MAX_BYTES = 100 * 1024 * 1024


def parse_time(value: str) -> datetime | None:
    value = (value or "").strip()
    if not value:
        return None
    for fmt in DATE_FORMATS:
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    raise ValueError(f"not a date: {value[:40]!r}")


def money(value: str) -> Decimal | None:
    value = (value or "").strip().replace(",", "")
    if not value:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value[:20]!r}") from None


def number_of(name: str) -> str:
    return (name or "").strip().lstrip("#").strip()


def read_orders(text: str, *, shop_url: str = "", where: str = "orders.csv") -> tuple[list[Order], list[str]]:
    """Every order in an export's text, and a warning per row that didn't read."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise OrderSourceError(f"{where} is not a Shopify orders export (no {', '.join(missing)} column)")
    rows: dict[str, list[dict]] = {}
    for row in reader:
        number = number_of(row.get("Name", ""))
        if number:
            rows.setdefault(number, []).append({k: (v or "").strip() for k, v in row.items() if k})
    orders, warnings = [], []
    for number, group in rows.items():
        try:
            orders.append(_order(number, group, shop_url))
        except ValueError as exc:
            warnings.append(f"{where}: order #{number} skipped: {exc}")
    return orders, warnings


def _order(number: str, group: list[dict], shop_url: str) -> Order:
    first = group[0]
    fulfillment_status = first.get("Fulfillment Status", "").lower() or "unfulfilled"
    fulfillments = ()
    if fulfillment_status in ("fulfilled", "partial") or first.get("Tracking Number"):
        fulfillments = (Fulfillment(
            status="delivered" if first.get("Delivered at") else "in_transit",
            carrier=first.get("Tracking Company", ""), tracking_number=first.get("Tracking Number", ""),
            tracking_url=first.get("Tracking URL", ""), shipped_at=parse_time(first.get("Fulfilled at", "")),
            estimated_delivery_at=parse_time(first.get("Estimated delivery at", "")),
            delivered_at=parse_time(first.get("Delivered at", ""))),)
    refunded = money(first.get("Refunded Amount", ""))
    refunds = (Refund(refunded, parse_time(first.get("Refunded at", ""))),) if refunded else ()
    phone = next((p for c in ("Phone", "Billing Phone", "Shipping Phone") if (p := normalize_phone(first.get(c, "")))), "")
    items = []
    for row in group:
        if row.get("Lineitem name"):
            try:
                quantity = int(row.get("Lineitem quantity") or 1)
            except ValueError:
                quantity = 1
            items.append(LineItem(row["Lineitem name"], quantity, row.get("Lineitem sku", "")))
    order_id = first.get("Id", "")
    return Order(
        number=number, email=first.get("Email", "").lower(), phone=phone,
        created_at=parse_time(first.get("Created at", "")), currency=first.get("Currency", "").upper(),
        total=money(first.get("Total", "")), financial_status=first.get("Financial Status", "").lower(),
        fulfillment_status=fulfillment_status, cancelled_at=parse_time(first.get("Cancelled at", "")),
        line_items=tuple(items), fulfillments=fulfillments, refunds=refunds,
        customer_name=first.get("Billing Name", "") or first.get("Shipping Name", ""),
        admin_url=f"{shop_url}/admin/orders/{order_id}" if shop_url and order_id.isdigit() else "",
        source="file")


class FileSource:
    """Orders from an export file, re-read when it changes."""
    name = "file"

    def __init__(self, path: Path, *, shop_url: str = ""):
        self.path, self.shop_url = Path(path), shop_url
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._orders: list[Order] = []

    def orders(self) -> list[Order]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise OrderSourceError(f"the orders file {self.path} can't be read ({exc.strerror or exc})") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                if stat.st_size > MAX_BYTES:
                    raise OrderSourceError(f"the orders file {self.path} is larger than {MAX_BYTES // 2**20} MB")
                try:
                    text = self.path.read_bytes().decode("utf-8-sig", errors="replace")
                except OSError as exc:
                    raise OrderSourceError(f"the orders file {self.path} can't be read ({exc})") from None
                self._orders, warnings = read_orders(text, shop_url=self.shop_url, where=self.path.name)
                for warning in warnings[:20]:
                    log.warning("orders: %s", warning)
                self._stamp = stamp
            return self._orders

    def by_number(self, number: str) -> list[Order]:
        wanted = number_of(number)
        return [o for o in self.orders() if o.number == wanted]

    def by_contact(self, *, email: str = "", phone: str = "", limit: int = 5) -> list[Order]:
        email, phone = email.strip().lower(), normalize_phone(phone)
        found = [o for o in self.orders() if (email and o.email == email) or (phone and o.phone == phone)]
        found.sort(key=lambda o: o.created_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        return found[:limit]

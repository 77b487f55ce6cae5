"""Order sources: the one seam between Deskhand and a shop's order data.

Read by the pipeline when a customer asks about a particular order (``responder.orders.lookup``
wraps a source with a short cache, a per-call deadline and a breaker). Three adapters sit behind
it, chosen by ``[orders] source``: ``shopify`` (Admin GraphQL), ``woocommerce`` (REST v3) and
``file`` (Shopify's orders export CSV). Each turns its own format into the plain :class:`Order`
below, so nothing after this line knows which shop system answered.

An adapter raises :class:`OrderSourceError` for anything that is not an answer (timeout, refused
connection, 401/403, 5xx, throttled past its retries, a body that doesn't parse), with a reason a
shop owner can read and never a token in it. "No such order" is not an error: an empty list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol


class OrderSourceError(Exception):
    """The order source could not answer (outage, timeout, refused credentials, garbage)."""


@dataclass(frozen=True)
class LineItem:
    name: str                      # "Ember Candle - 8 oz / Cedar" as the shop shows it
    quantity: int = 1
    sku: str = ""


@dataclass(frozen=True)
class Fulfillment:
    """One shipment of (part of) an order."""
    status: str = ""               # as the source says it: "success", "in_transit", "delivered", …
    carrier: str = ""              # "USPS", "Canada Post"
    tracking_number: str = ""
    tracking_url: str = ""
    shipped_at: datetime | None = None
    estimated_delivery_at: datetime | None = None
    delivered_at: datetime | None = None
    in_transit_at: datetime | None = None


@dataclass(frozen=True)
class Refund:
    amount: Decimal
    created_at: datetime | None = None
    note: str = ""


@dataclass(frozen=True)
class Order:
    """One order as every source reports it. Times are aware (UTC); money is a Decimal."""
    number: str                    # what the customer sees, without '#': "1042"
    email: str = ""                # lower-case
    phone: str = ""                # E.164 when it could be read, else as given
    created_at: datetime | None = None
    currency: str = ""             # ISO 4217, "USD"
    total: Decimal | None = None
    financial_status: str = ""     # paid | pending | authorized | partially_refunded | refunded | voided | …
    fulfillment_status: str = ""   # unfulfilled | partial | fulfilled (Shopify's words; adapters map to them)
    cancelled_at: datetime | None = None
    cancel_reason: str = ""
    line_items: tuple[LineItem, ...] = ()
    fulfillments: tuple[Fulfillment, ...] = ()
    refunds: tuple[Refund, ...] = ()
    customer_name: str = ""
    admin_url: str = ""            # the order in the shop's admin, for the owner only
    source: str = ""               # "shopify" | "woocommerce" | "file"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal("0"))


class OrderSource(Protocol):
    """What every adapter offers. Both calls may raise :class:`OrderSourceError`."""
    name: str

    def by_number(self, number: str) -> list[Order]:
        """The order with this number ("1042", no '#'), as a list of zero or one (a few if the
        shop system allows duplicates)."""
        ...

    def by_contact(self, *, email: str = "", phone: str = "", limit: int = 5) -> list[Order]:
        """This customer's most recent orders, newest first: those placed with this email
        address, or this phone number (E.164). Exact matches only, never a fuzzy search."""
        ...

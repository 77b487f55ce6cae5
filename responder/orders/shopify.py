"""Shopify as an order source: an order source behind ``responder.orders.base``; the pipeline asks
it when a customer asks about an order.

``ShopifySource`` reads orders through the Admin GraphQL API (``POST {shop_url}/admin/api/{version}
/graphql.json`` with ``X-Shopify-Access-Token``) and turns each into the plain
:class:`~responder.orders.base.Order`. It only reads (the app needs ``read_orders``; without
``read_all_orders`` Shopify shows the last 60 days of orders only).

Why httpx and not Shopify's ``ShopifyAPI`` package: that package hard-codes https (so it can't be
pointed at a loopback test server) and has neither request timeouts nor any handling of Shopify's
throttling; here one ``httpx.Client`` with an explicit ``httpx.Timeout`` does the little that's needed.

Searching uses Shopify's search syntax in the ``query`` argument, built only from values that
can't carry syntax: a number is cut to its digits (``name:#1042``, then only the exact name
``#1042`` is kept: Shopify's name search is loose), an email must look like one (``email:"…"``),
a phone must be E.164 (``phone:"+1…"``). The search string itself travels as a GraphQL variable.

Throttling: HTTP 429 waits Retry-After (1 s if absent); a 200 whose errors say ``THROTTLED`` waits
``(requestedQueryCost - currentlyAvailable) / restoreRate`` from ``extensions.cost``; a 5xx is
retried once after a short pause. All waits together never exceed ``max_wait_s``; past that, and
for 401/403, other GraphQL errors, timeouts, refused connections and unreadable bodies, the call
raises :class:`OrderSourceError` with a reason an owner can act on. The token is never put in a
message or a log line.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

import httpx

from responder.core.text import normalize_phone
from responder.orders.base import Fulfillment, LineItem, Order, OrderSourceError, Refund

log = logging.getLogger(__name__)

EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_ORDERS = 8           # with lineItems(first: 50) this keeps the query (~100 points an order) under Shopify's
NUMBER_PAGE = 5          # 1,000-point cap for a single query

ORDER_FIELDS = """
      name legacyResourceId email phone createdAt cancelledAt cancelReason
      displayFinancialStatus displayFulfillmentStatus
      totalPriceSet { shopMoney { amount currencyCode } }
      customer { displayName }
      lineItems(first: 50) { nodes { name quantity sku } }
      fulfillments(first: 5) {
        displayStatus status createdAt estimatedDeliveryAt deliveredAt inTransitAt
        trackingInfo(first: 3) { company number url }
      }
      refunds(first: 5) { createdAt note totalRefundedSet { shopMoney { amount currencyCode } } }
"""
QUERY = ("query DeskhandOrders($first: Int!, $query: String!, $sortKey: OrderSortKeys!, $reverse: Boolean!) {\n"
         "  orders(first: $first, query: $query, sortKey: $sortKey, reverse: $reverse) {\n"
         "    nodes {" + ORDER_FIELDS + "    }\n  }\n}\n")


class ShopifySource:
    name = "shopify"

    def __init__(self, shop_url: str, token: str, *, api_version: str = "2026-10", timeout_s: float = 5.0,
                 max_wait_s: float = 8.0, sleep=time.sleep):
        parts = urlsplit((shop_url or "").strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise OrderSourceError(f"Shopify shop URL {shop_url!r} is not an http(s) URL")
        if not token:
            raise OrderSourceError("no Shopify access token is configured: check [orders] token_env")
        if not re.fullmatch(r"\d{4}-\d{2}|unstable", api_version):
            raise OrderSourceError(f"Shopify API version {api_version!r} is not like 2026-10")
        self.shop_url = shop_url.strip().rstrip("/")
        self.endpoint = f"{self.shop_url}/admin/api/{api_version}/graphql.json"
        self.max_wait_s = max_wait_s
        self._token = token
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)), follow_redirects=False,
            headers={"X-Shopify-Access-Token": token, "Content-Type": "application/json",
                     "Accept": "application/json", "User-Agent": "Deskhand order lookup"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "ShopifySource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the seam ------------------------------------------------------------------------------

    def by_number(self, number: str) -> list[Order]:
        digits = re.sub(r"\D", "", str(number or ""))
        if not digits or len(digits) > 15:
            return []
        # Ascending by order number: a loose match on #1042 also finds #10420…, all of them higher.
        nodes = self._orders(f"name:#{digits}", NUMBER_PAGE, "ORDER_NUMBER", False)
        return [self._order(n) for n in nodes if (n.get("name") or "").strip() == f"#{digits}"]

    def by_contact(self, *, email: str = "", phone: str = "", limit: int = 5) -> list[Order]:
        email = (email or "").strip().lower()
        email = email if EMAIL.match(email) else ""
        phone = normalize_phone(phone or "")
        phone = phone if E164.match(phone) else ""
        terms = ([f'email:"{email}"'] if email else []) + ([f'phone:"{phone}"'] if phone else [])
        if not terms or limit < 1:
            return []
        nodes = self._orders(" OR ".join(terms), min(limit, MAX_ORDERS), "CREATED_AT", True)
        orders = [self._order(n) for n in nodes]
        exact = [o for o in orders if (email and o.email == email) or (phone and o.phone == phone)]
        return exact[:limit]

    # --- the wire ------------------------------------------------------------------------------

    def _orders(self, search: str, first: int, sort_key: str, reverse: bool) -> list[dict]:
        body = self._post({"query": QUERY, "variables": {"first": first, "query": search, "sortKey": sort_key,
                                                         "reverse": reverse}})
        try:
            nodes = body["data"]["orders"]["nodes"]
        except (KeyError, TypeError):
            raise OrderSourceError("Shopify answered without an orders list") from None
        if not isinstance(nodes, list):
            raise OrderSourceError("Shopify answered without an orders list")
        return [n for n in nodes if isinstance(n, dict)]

    def _post(self, payload: dict) -> dict:
        waited, retried_5xx = 0.0, False
        while True:
            try:
                response = self._client.post(self.endpoint, json=payload)
            except httpx.TimeoutException:
                raise OrderSourceError(f"Shopify did not answer in time ({self._host()})") from None
            except httpx.HTTPError as exc:
                raise OrderSourceError(f"could not reach Shopify at {self._host()}: "
                                       f"{self._scrub(type(exc).__name__)}") from None
            status = response.status_code
            if status in (401, 403):
                raise OrderSourceError(f"Shopify refused the access token ({status}): check [orders] token_env "
                                       "and that the app has the read_orders scope")
            if status == 429:
                wait = self._seconds(response.headers.get("Retry-After"), 1.0)
                waited = self._wait(wait, waited, "Shopify kept answering 429 Too Many Requests")
                continue
            if status >= 500:
                if retried_5xx:
                    raise OrderSourceError(f"Shopify answered HTTP {status} twice ({self._host()})")
                retried_5xx = True
                waited = self._wait(0.5, waited, f"Shopify answered HTTP {status}")
                continue
            if status != 200:
                raise OrderSourceError(f"Shopify answered HTTP {status} ({self._host()})")
            try:
                body = response.json()
            except ValueError:
                raise OrderSourceError("Shopify answered with something that is not JSON") from None
            if not isinstance(body, dict):
                raise OrderSourceError("Shopify answered with JSON that is not an object")
            errors = body.get("errors")
            if not errors:
                return body
            if self._code(errors) == "THROTTLED":
                waited = self._wait(self._throttle_wait(body), waited, "Shopify kept throttling the order lookup")
                continue
            if self._code(errors) == "ACCESS_DENIED":
                raise OrderSourceError("Shopify denied access to orders: the app needs the read_orders scope")
            raise OrderSourceError(f"Shopify rejected the order query: {self._message(errors)}")

    def _wait(self, seconds: float, waited: float, reason: str) -> float:
        if waited + seconds > self.max_wait_s:
            raise OrderSourceError(f"{reason}; gave up after waiting {waited:.1f}s (limit {self.max_wait_s:g}s)")
        log.info("Shopify order lookup: %s; waiting %.2fs", reason.lower(), seconds)
        self._sleep(seconds)
        return waited + seconds

    def _throttle_wait(self, body: dict) -> float:
        cost = ((body.get("extensions") or {}).get("cost") or {}) if isinstance(body.get("extensions"), dict) else {}
        status = cost.get("throttleStatus") or {}
        try:
            need = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
            seconds = need / rate if rate > 0 else 1.0
        except (KeyError, TypeError, ValueError):
            seconds = 1.0
        return min(max(seconds, 0.1), 10.0)

    @staticmethod
    def _seconds(value, default: float) -> float:
        try:
            return min(max(float(value), 0.0), 60.0)
        except (TypeError, ValueError):
            return default

    @staticmethod
    def _code(errors) -> str:
        if isinstance(errors, list):
            for error in errors:
                code = ((error or {}).get("extensions") or {}).get("code") if isinstance(error, dict) else None
                if code:
                    return str(code)
        return ""

    def _message(self, errors) -> str:
        if isinstance(errors, list):
            text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors[:3])
        else:
            text = str(errors)
        return self._scrub(text)[:300]

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[token]") if self._token else text

    def _host(self) -> str:
        return urlsplit(self.shop_url).netloc

    # --- Shopify's order -> ours ---------------------------------------------------------------

    def _order(self, node: dict) -> Order:
        money = ((node.get("totalPriceSet") or {}).get("shopMoney") or {})
        raw_phone = node.get("phone") or ""
        legacy = str(node.get("legacyResourceId") or "")
        fulfillment = (node.get("displayFulfillmentStatus") or "").upper()
        return Order(
            number=(node.get("name") or "").strip().lstrip("#"),
            email=(node.get("email") or "").strip().lower(),
            phone=normalize_phone(raw_phone) or raw_phone,
            created_at=_when(node.get("createdAt")),
            currency=money.get("currencyCode") or "",
            total=_money(money.get("amount")),
            financial_status=(node.get("displayFinancialStatus") or "").lower(),
            fulfillment_status={"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(fulfillment,
                                                                                                 "unfulfilled"),
            cancelled_at=_when(node.get("cancelledAt")),
            cancel_reason=(node.get("cancelReason") or "").lower(),
            line_items=tuple(LineItem(name=i.get("name") or "", quantity=int(i.get("quantity") or 0),
                                      sku=i.get("sku") or "")
                             for i in ((node.get("lineItems") or {}).get("nodes") or [])),
            fulfillments=tuple(_fulfillment(f) for f in node.get("fulfillments") or []),
            refunds=tuple(Refund(amount=_money(((r.get("totalRefundedSet") or {}).get("shopMoney") or {})
                                               .get("amount")) or Decimal("0"),
                                 created_at=_when(r.get("createdAt")), note=r.get("note") or "")
                          for r in node.get("refunds") or []),
            customer_name=((node.get("customer") or {}).get("displayName") or ""),
            admin_url=f"{self.shop_url}/admin/orders/{legacy}" if legacy.isdigit() else "",
            source=self.name,
            extra={"shopify_name": node.get("name") or ""},
        )


def _fulfillment(node: dict) -> Fulfillment:
    tracking = next(iter(node.get("trackingInfo") or []), None) or {}
    return Fulfillment(
        status=(node.get("displayStatus") or node.get("status") or "").lower(),
        carrier=tracking.get("company") or "", tracking_number=tracking.get("number") or "",
        tracking_url=tracking.get("url") or "", shipped_at=_when(node.get("createdAt")),
        estimated_delivery_at=_when(node.get("estimatedDeliveryAt")), delivered_at=_when(node.get("deliveredAt")),
        in_transit_at=_when(node.get("inTransitAt")))


def _when(value) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _money(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None

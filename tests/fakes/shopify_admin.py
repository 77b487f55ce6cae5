"""A loopback fake of Shopify's Admin GraphQL API (orders), that really executes the client's GraphQL.

``FakeShopify`` is a real HTTP server on 127.0.0.1 (a free port, in a thread). It answers
``POST /admin/api/{version}/graphql.json`` by running the posted query and variables with
``graphql-core`` against ``SDL`` below, a faithful subset of Shopify's Admin schema (Shopify's own
type, field, argument and enum names and nullability), so a misspelled field, a wrong argument
type or an unknown enum value in the client fails the way Shopify fails it: HTTP 200 with
``errors`` (and no ``data`` when validation fails)::

    with FakeShopify() as shop:                  # ShopifySource(shop.base_url, shop.token)
        shop.add_order("1042", email="jane@example.com", total="54.00")
        shop.throttle_next()                     # the next query gets a THROTTLED answer
        shop.fail_next(429, retry_after="0.2")
        headers, body = shop.requests[-1]

Behaviours:

- ``QueryRoot.orders(first, after, last, before, reverse, sortKey, query, savedSearchId)``:
  one of first/last is required and at most 250 (Shopify's messages). ``query`` is Shopify's search
  syntax: terms joined by whitespace (AND) or ``OR``; ``name:`` is loose like Shopify's (``#104``
  and ``104`` both match ``#1042``), ``email:`` is case-insensitive exact, ``phone:`` compares
  digits; ``field:*`` matches any order that has the field; a bare word matches any order whose
  name, email or phone contains it (so a client that lets search syntax through is caught).
  Values may be single- or double-quoted. ``sortKey`` CREATED_AT, ORDER_NUMBER, ID (others sort by
  ID); ``after``/``before`` are ignored (no paging). Nested lists take ``first`` too.
- Every answer carries ``extensions.cost`` like Shopify's: ``requestedQueryCost`` (computed from
  the query: 2 + first × children for a paged field, 1 per object), ``actualQueryCost``,
  ``throttleStatus {maximumAvailable: 2000.0, currentlyAvailable, restoreRate: 100.0}``. A query
  over 1,000 points gets ``MAX_COST_EXCEEDED`` as Shopify does.
- ``X-Shopify-Access-Token`` must equal ``token``, else 401 with Shopify's body
  ``{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}``.
  A path other than the GraphQL endpoint: 404. A body that isn't JSON: 400.

Test API: ``base_url``, ``token``, ``api_version`` (the only version served; others 404);
``orders`` (the order dicts, as the schema returns them); ``add_order(number, **fields)`` (builds
and stores an order, returns it); ``fulfillment(...)`` (builds a fulfillment dict for
``add_order(fulfillments=[...])``); ``throttle_next(times=1, available=10.0, restore_rate=50.0)``
(the next ``times`` queries answer ``{"errors": [{"message": "Throttled", "extensions": {"code":
"THROTTLED"}}], "extensions": {"cost": …}}`` with that bucket state); ``fail_next(status, times=1,
*, retry_after=None, body=None)`` (the next ``times`` requests get that status, a Retry-After
header, and ``body`` as given, bytes or JSON-able, default a Shopify-like error); ``delay``
(seconds to sleep before answering); ``requests`` ((headers dict, parsed JSON body or raw text)
for every request, failed ones too); ``costs`` (requestedQueryCost of each executed or throttled
query).
"""
from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler

from graphql import build_schema, graphql_sync, parse
from graphql.language import (
    FieldNode,
    IntValueNode,
    OperationDefinitionNode,
    VariableNode,
)

from fakes.loopback import LoopbackServer

SDL = """
schema { query: QueryRoot }

scalar DateTime
scalar Decimal
scalar URL
scalar UnsignedInt64

enum CurrencyCode { AUD CAD CHF EUR GBP JPY MXN NZD SEK USD }

enum OrderSortKeys {
  CREATED_AT CURRENT_TOTAL_PRICE CUSTOMER_NAME DESTINATION FINANCIAL_STATUS FULFILLMENT_STATUS ID
  ORDER_NUMBER PO_NUMBER PROCESSED_AT RELEVANCE TOTAL_ITEMS_QUANTITY TOTAL_PRICE UPDATED_AT
}

enum OrderDisplayFinancialStatus {
  AUTHORIZED EXPIRED PAID PARTIALLY_PAID PARTIALLY_REFUNDED PENDING REFUNDED VOIDED
}

enum OrderDisplayFulfillmentStatus {
  FULFILLED FULFILLMENT_NOT_REQUIRED IN_PROGRESS ON_HOLD OPEN PARTIALLY_FULFILLED PENDING_FULFILLMENT
  REQUEST_DECLINED RESTOCKED SCHEDULED UNFULFILLED
}

enum OrderCancelReason { CUSTOMER DECLINED FRAUD INVENTORY OTHER STAFF }

enum FulfillmentDisplayStatus {
  ATTEMPTED_DELIVERY CANCELED CARRIER_PICKED_UP CONFIRMED DELAYED DELIVERED FAILURE FULFILLED
  IN_TRANSIT LABEL_PRINTED LABEL_PURCHASED LABEL_VOIDED MARKED_AS_FULFILLED NOT_DELIVERED
  OUT_FOR_DELIVERY PICKED_UP READY_FOR_PICKUP SUBMITTED
}

enum FulfillmentStatus { CANCELLED ERROR FAILURE OPEN PENDING SUCCESS }

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }

type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
type MoneyBag { shopMoney: MoneyV2! presentmentMoney: MoneyV2! }

type Customer { id: ID! displayName: String! email: String phone: String }

type LineItem { id: ID! name: String! title: String! quantity: Int! sku: String }
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }

type FulfillmentTrackingInfo { company: String number: String url: URL }

type Fulfillment {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  createdAt: DateTime!
  updatedAt: DateTime!
  deliveredAt: DateTime
  displayStatus: FulfillmentDisplayStatus
  estimatedDeliveryAt: DateTime
  inTransitAt: DateTime
  status: FulfillmentStatus!
  trackingInfo(first: Int): [FulfillmentTrackingInfo!]!
}

type Refund {
  id: ID!
  legacyResourceId: UnsignedInt64!
  createdAt: DateTime
  updatedAt: DateTime!
  note: String
  totalRefundedSet: MoneyBag!
}

type Order {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  email: String
  phone: String
  createdAt: DateTime!
  processedAt: DateTime!
  updatedAt: DateTime!
  cancelledAt: DateTime
  cancelReason: OrderCancelReason
  closed: Boolean!
  displayFinancialStatus: OrderDisplayFinancialStatus
  displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  currencyCode: CurrencyCode!
  totalPriceSet: MoneyBag!
  customer: Customer
  lineItems(first: Int, after: String, last: Int, before: String, reverse: Boolean = false): LineItemConnection!
  fulfillments(first: Int): [Fulfillment!]!
  refunds(first: Int): [Refund!]!
}

type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }

type QueryRoot {
  orders(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
         sortKey: OrderSortKeys = ID, query: String, savedSearchId: ID): OrderConnection!
}
"""
SCHEMA = build_schema(SDL)
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
MAX_COST = 1000
BUCKET, RESTORE = 2000.0, 100.0


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def money(amount, currency: str) -> dict:
    amount = f"{float(amount):.2f}" if isinstance(amount, (int, float)) else str(amount)
    return {"shopMoney": {"amount": amount, "currencyCode": currency},
            "presentmentMoney": {"amount": amount, "currencyCode": currency}}


def tokenize(query: str) -> list[str]:
    return re.findall(r"""[^\s"']*(?:"[^"]*"|'[^']*')|[^\s]+""", query or "")


class FakeShopify(LoopbackServer):
    def __init__(self, *, token: str = "shpat_fake_7f3a9c2e5b1d4f60a8e2c9b7d5f3a1e0", api_version: str = "2026-10"):
        self.token = token
        self.api_version = api_version
        self.orders: list[dict] = []
        self.requests: list[tuple[dict, object]] = []
        self.costs: list[int] = []
        self.delay = 0.0
        self._throttles: list[tuple[float, float]] = []
        self._failures: list[tuple[int, str | None, object]] = []
        self._lock = threading.Lock()
        self._clock = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
        self._next_id = 5_100_000_000
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, self.rfile.read(length))

            def do_GET(self):
                fake._send(self, 404, {"errors": "Not Found"})

        self._serve(Handler, poll_interval=0.05)

    # --- the test's side ---------------------------------------------------------------------


    def throttle_next(self, times: int = 1, *, available: float = 10.0, restore_rate: float = 50.0) -> None:
        with self._lock:
            self._throttles.extend([(available, restore_rate)] * times)

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | None = None, body=None) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after, body)] * times)

    @staticmethod
    def fulfillment(*, display_status: str | None = "IN_TRANSIT", status: str = "SUCCESS", company: str | None = None,
                    number: str | None = None, url: str | None = None, created_at: datetime | None = None,
                    estimated_delivery_at: datetime | None = None, delivered_at: datetime | None = None,
                    in_transit_at: datetime | None = None) -> dict:
        created_at = created_at or datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
        tracking = [{"company": company, "number": number, "url": url}] if (company or number or url) else []
        return {"id": "", "legacyResourceId": "0", "name": "", "createdAt": iso(created_at), "updatedAt": iso(created_at),
                "deliveredAt": iso(delivered_at), "displayStatus": display_status,
                "estimatedDeliveryAt": iso(estimated_delivery_at), "inTransitAt": iso(in_transit_at),
                "status": status, "trackingInfo": tracking}

    def add_order(self, number: str | int, *, email: str | None = None, phone: str | None = None,
                  created_at: datetime | None = None, total="25.00", currency: str = "USD",
                  financial_status: str | None = "PAID", fulfillment_status: str = "UNFULFILLED",
                  line_items=(("Ember Candle - 8 oz / Cedar", 1, "EC-8-CED"),), fulfillments=(),
                  refunds=(), cancelled_at: datetime | None = None, cancel_reason: str | None = None,
                  customer_name: str | None = None, name: str | None = None) -> dict:
        """An order as Shopify's schema returns it. ``refunds`` are (amount, created_at) pairs;
        ``line_items`` (name, quantity, sku) triples; ``fulfillments`` from :meth:`fulfillment`.
        Without ``created_at`` each new order is an hour newer than the one before."""
        with self._lock:
            self._next_id += 1
            legacy = self._next_id
            if created_at is None:
                self._clock += timedelta(hours=1)
                created_at = self._clock
        name = name or f"#{number}"
        order = {
            "id": f"gid://shopify/Order/{legacy}", "legacyResourceId": str(legacy), "name": name,
            "email": email, "phone": phone, "createdAt": iso(created_at), "processedAt": iso(created_at),
            "updatedAt": iso(created_at), "cancelledAt": iso(cancelled_at), "cancelReason": cancel_reason,
            "closed": False, "displayFinancialStatus": financial_status,
            "displayFulfillmentStatus": fulfillment_status, "currencyCode": currency,
            "totalPriceSet": money(total, currency),
            "customer": ({"id": f"gid://shopify/Customer/{legacy}", "displayName": customer_name,
                          "email": email, "phone": phone} if customer_name else None),
            "lineItems": [{"id": f"gid://shopify/LineItem/{legacy}{i}", "name": n, "title": n.split(" - ")[0],
                           "quantity": q, "sku": s} for i, (n, q, s) in enumerate(line_items)],
            "fulfillments": [dict(f, id=f"gid://shopify/Fulfillment/{legacy}{i}", legacyResourceId=f"{legacy}{i}",
                                  name=f"{name}-F{i + 1}") for i, f in enumerate(fulfillments)],
            "refunds": [{"id": f"gid://shopify/Refund/{legacy}{i}", "legacyResourceId": f"{legacy}{i}",
                         "createdAt": iso(when), "updatedAt": iso(when), "note": None,
                         "totalRefundedSet": money(amount, currency)} for i, (amount, when) in enumerate(refunds)],
            "_number": int(re.sub(r"\D", "", name) or 0), "_created": created_at,
        }
        with self._lock:
            self.orders.append(order)
        return order

    # --- the server's side -------------------------------------------------------------------

    def _send(self, handler, status: int, body, headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):   # the client gave up (a timeout test)
            pass

    def _handle(self, handler, raw: bytes) -> None:
        headers = {k: v for k, v in handler.headers.items()}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append((headers, body))
            failure = self._failures.pop(0) if self._failures else None
        if self.delay:
            time.sleep(self.delay)
        if handler.path.split("?")[0] != f"/admin/api/{self.api_version}/graphql.json":
            return self._send(handler, 404, {"errors": "Not Found"})
        if handler.headers.get("X-Shopify-Access-Token") != self.token:
            return self._send(handler, 401, {"errors": INVALID_TOKEN})
        if failure:
            status, retry_after, fail_body = failure
            extra = {"Retry-After": retry_after} if retry_after is not None else {}
            default = {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume "
                                 "uninterrupted service."} if status == 429 else {"errors": "Internal Server Error"}
            return self._send(handler, status, default if fail_body is None else fail_body, extra)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return self._send(handler, 400, {"errors": {"query": "Required parameter missing or invalid"}})
        variables = body.get("variables") or {}
        try:
            cost = self._cost(body["query"], variables)
        except Exception:
            cost = 1
        with self._lock:
            throttle = self._throttles.pop(0) if self._throttles else None
            self.costs.append(cost)
        if throttle:
            available, rate = throttle
            return self._send(handler, 200, {
                "errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": cost, "actualQueryCost": None, "throttleStatus": {
                    "maximumAvailable": BUCKET, "currentlyAvailable": available, "restoreRate": rate}}}})
        if cost > MAX_COST:
            return self._send(handler, 200, {
                "errors": [{"message": f"Query cost is {cost}, which exceeds the single query max cost limit "
                                       f"({MAX_COST}).", "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost,
                                                                         "maxCost": MAX_COST}}],
                "extensions": {"cost": self._cost_ext(cost, 0)}})
        result = graphql_sync(SCHEMA, body["query"], root_value=self, variable_values=variables,
                              operation_name=body.get("operationName"), field_resolver=self._resolve)
        answer: dict = {}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        if result.data is not None:
            answer["data"] = result.data
        answer["extensions"] = {"cost": self._cost_ext(cost, cost if result.data is not None else 0)}
        self._send(handler, 200, answer)

    @staticmethod
    def _cost_ext(requested: int, actual: int) -> dict:
        return {"requestedQueryCost": requested, "actualQueryCost": actual,
                "throttleStatus": {"maximumAvailable": BUCKET, "currentlyAvailable": BUCKET - actual,
                                   "restoreRate": RESTORE}}

    def _cost(self, query: str, variables: dict) -> int:
        def arg_first(field: FieldNode):
            for arg in field.arguments or ():
                if arg.name.value in ("first", "last"):
                    if isinstance(arg.value, IntValueNode):
                        return int(arg.value.value)
                    if isinstance(arg.value, VariableNode):
                        return int(variables.get(arg.value.name.value) or 0)
            return None

        def cost(selection_set) -> int:
            total = 0
            for field in selection_set.selections if selection_set else ():
                if not isinstance(field, FieldNode) or not field.selection_set:
                    continue                          # scalars are free
                inner = cost(field.selection_set)
                n = arg_first(field)
                if n is not None:
                    total += 2 + n * max(inner, 1)
                elif field.name.value in ("nodes", "edges", "node"):
                    total += inner
                else:
                    total += 1 + inner
            return total

        document = parse(query)
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        return max(1, sum(cost(op.selection_set) for op in ops))

    def _resolve(self, source, info, **args):
        if source is self and info.field_name == "orders":
            return self._orders(**args)
        value = source.get(info.field_name) if isinstance(source, dict) else getattr(source, info.field_name, None)
        if info.field_name == "lineItems" and isinstance(value, list):
            return self._connection(self._page(value, args))
        if isinstance(value, list) and args.get("first") is not None:
            return value[:max(args["first"], 0)]
        return value

    @staticmethod
    def _page(items: list, args: dict) -> list:
        first, last = args.get("first"), args.get("last")
        if first is None and last is None:
            raise ValueError("you must provide one of first or last")
        if (first or 0) > 250 or (last or 0) > 250:
            raise ValueError("The maximum number of items that can be requested is 250.")
        items = list(reversed(items)) if args.get("reverse") else list(items)
        return items[:first] if first is not None else items[-last:] if last else []

    @staticmethod
    def _connection(items: list, more: bool = False) -> dict:
        edges = [{"cursor": f"cursor{i}", "node": item} for i, item in enumerate(items)]
        return {"nodes": items, "edges": edges,
                "pageInfo": {"hasNextPage": more, "hasPreviousPage": False,
                             "startCursor": edges[0]["cursor"] if edges else None,
                             "endCursor": edges[-1]["cursor"] if edges else None}}

    def _orders(self, **args) -> dict:
        with self._lock:
            orders = list(self.orders)
        matched = [o for o in orders if self._matches(o, args.get("query") or "")]
        key = {"CREATED_AT": lambda o: o["_created"], "ORDER_NUMBER": lambda o: o["_number"],
               "PROCESSED_AT": lambda o: o["_created"]}.get(args.get("sortKey"), lambda o: int(o["legacyResourceId"]))
        matched.sort(key=key)
        page = self._page(matched, args)
        return self._connection(page, more=len(page) < len(matched))

    def _matches(self, order: dict, query: str) -> bool:
        groups: list[list[str]] = [[]]                 # OR of ANDs
        for token in tokenize(query):
            if token == "OR":
                groups.append([])
            elif token != "AND":
                groups[-1].append(token)
        groups = [g for g in groups if g]
        return not groups or any(all(self._term(order, t) for t in g) for g in groups)

    @staticmethod
    def _term(order: dict, term: str) -> bool:
        negate = term.startswith("-")
        term = term[1:] if negate else term
        field, _, value = term.partition(":") if ":" in term else ("", "", term)
        value = value.strip("\"'").lower()
        name, email, phone = order["name"].lower(), (order["email"] or "").lower(), order["phone"] or ""
        if field and value == "*":
            hit = bool({"name": name, "email": email, "phone": phone}.get(field))
        elif field == "name":
            hit = name.lstrip("#").startswith(value.lstrip("#")) and bool(value.lstrip("#"))
        elif field == "email":
            hit = email == value
        elif field == "phone":
            digits = re.sub(r"\D", "", value)
            hit = bool(digits) and re.sub(r"\D", "", phone) == digits
        elif field:
            hit = False
        else:
            hit = bool(value) and any(value in text.lower() for text in (name, email, phone))
        return hit != negate

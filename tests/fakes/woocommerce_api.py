"""A loopback fake of the WooCommerce REST API v3 (orders), driven through the real ``woocommerce`` client.

``FakeWooCommerce`` is a real HTTP server on 127.0.0.1 (a free port, in a thread) that answers what
``woocommerce.API`` calls, with WooCommerce's JSON shapes, and checks authentication the way
WooCommerce's ``WC_REST_Authentication`` does, so the client's own signing is what the tests exercise::

    with FakeWooCommerce() as fake:             # [orders] shop_url = fake.base_url
        ...                                     # consumer key / secret = fake.consumer_key / fake.consumer_secret
        fake.add_order(id=812, number="1042", email="ana@example.com", status="completed",
                       tracking=[{"provider": "USPS", "number": "9400…", "shipped": datetime(...)}])
        fake.fail_next(429, retry_after=1)

Endpoints (under ``/wp-json``):

- ``GET wc/v3/orders``: ``search`` is loose like Woo's (a case-insensitive substring of the id,
  number, billing email, billing/shipping phone as typed, first/last names, company), ``status``
  (default "any"), ``per_page`` (default 10; outside 1..100: 400 ``rest_invalid_param``), ``page``,
  ``orderby`` date|id|modified (default date), ``order`` desc|asc; headers ``X-WP-Total`` and
  ``X-WP-TotalPages``.
- ``GET wc/v3/orders/<id>``: one order, or 404 ``woocommerce_rest_shop_order_invalid_id``.
- ``GET wc/v3/orders/<id>/refunds``: the order's refunds (``date_created_gmt``, ``amount`` positive).
- ``GET wc-shipment-tracking/v3/orders/<id>/shipment-trackings``: the Shipment Tracking
  extension's items (provider's display name, link, ``date_shipped`` "YYYY-MM-DD"); with
  ``tracking_extension = False`` the route does not exist: 404 ``rest_no_route``.
  Any other path: 404 ``rest_no_route``.

Auth, as WooCommerce checks it: over plain http (``ssl=False``, the default) only OAuth 1.0a
one-legged in the query string: the five oauth_* parameters (some missing: 401
``woocommerce_rest_authentication_missing_parameter``), a known key ("Consumer key is invalid."),
the signature recomputed here (base string METHOD&rawurlencode(home URL + path)&the sorted,
RFC 3986-encoded "k=v" pairs each encoded again and joined by "%26"; HMAC-SHA1 or -SHA256 keyed
with consumer_secret + "&"), a timestamp within 15 minutes and an unused nonce. Query parameters
repeated in the URL count once, last value wins, as PHP's ``$_GET`` reads them (the client puts
them in the URL twice over http). With ``ssl=True`` (as behind a TLS-terminating proxy) basic auth
or ``consumer_key``/``consumer_secret`` query parameters are accepted first. No credentials at all:
401 ``woocommerce_rest_cannot_view``. A key without read permission (``key_permissions="write"``):
401. Every error body is ``{"code", "message", "data": {"status"}}``.

Test API: ``base_url``, ``consumer_key`` ("ck_" + 40 hex), ``consumer_secret`` ("cs_" + 40 hex);
``add_order(...)`` (a v3 order JSON, returned; see its arguments); ``fail_next(status, times=1,
retry_after=None, body=None, content_type=...)`` (the next ``times`` requests get that answer before
auth is even looked at, as from a proxy; ``body`` str is sent raw, e.g. an HTML page);
``delay`` (seconds to wait before answering anything); ``tracking_extension``; ``requests``
((method, path, query dict) for every request, failed ones too); ``paths()``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, quote, urlsplit

from fakes.loopback import LoopbackServer

PROVIDER_LINKS = {"USPS": "https://tools.usps.com/go/TrackConfirmAction?tLabels=%1$s",
                  "UPS": "https://www.ups.com/track?tracknum=%1$s",
                  "Canada Post": "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor=%1$s"}


class WooError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "data": {"status": self.status}}


def gmt(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") if moment else None


def rawurlencode(value: str) -> str:
    """PHP's rawurlencode (RFC 3986: everything but A-Z a-z 0-9 - _ . ~)."""
    return quote(value, safe="-_.~")


def rfc3986(value: str) -> str:
    """WooCommerce's wc_rest_urlencode_rfc3986."""
    return rawurlencode(value).replace("+", " ").replace("%7E", "~")


def woo_signature(method: str, url: str, params: dict[str, str], secret: str, algorithm: str) -> str:
    """What WC_REST_Authentication::check_oauth_signature computes (params without oauth_signature)."""
    ordered = sorted(params.items(), key=lambda kv: kv[0].encode())          # uksort(strcmp)
    normalized = [(rfc3986(k), rfc3986(v)) for k, v in ordered]               # normalize_parameters
    query = "%26".join(rfc3986(f"{k}={v}") for k, v in normalized)           # join_with_equals_sign
    base = f"{method.upper()}&{rawurlencode(url)}&{query}"
    digest = hmac.new((secret + "&").encode(), base.encode(), getattr(hashlib, algorithm)).digest()
    return base64.b64encode(digest).decode()


class FakeWooCommerce(LoopbackServer):
    def __init__(self, *, consumer_key: str | None = None, consumer_secret: str | None = None,
                 ssl: bool = False, key_permissions: str = "read"):
        self.consumer_key = consumer_key or "ck_" + secrets.token_hex(20)
        self.consumer_secret = consumer_secret or "cs_" + secrets.token_hex(20)
        self.ssl, self.key_permissions = ssl, key_permissions
        self.tracking_extension = True
        self.delay = 0.0
        self.orders: dict[int, dict] = {}
        self.refund_rows: dict[int, list[dict]] = {}
        self.tracking_rows: dict[int, list[dict]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._failures: list[tuple[int, float | None, str | None, str]] = []
        self._nonces: set[str] = set()
        self._next_id = 100
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake._handle(self)

        self._serve(Handler)

    # --- the test's side ---------------------------------------------------------------------


    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None,
                  body: str | None = None, content_type: str = "application/json; charset=UTF-8") -> None:
        with self._lock:
            self._failures.extend([(status, retry_after, body, content_type)] * times)

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, path, _ in self.requests]

    def add_order(self, *, id: int | None = None, number: str | None = None, status: str = "processing",
                  email: str = "", phone: str = "", shipping_phone: str = "", first_name: str = "Ana",
                  last_name: str = "Diaz", currency: str = "USD", total: str = "25.00",
                  items=(("Ember Candle - 8 oz / Cedar", 1, "EMB-8-CED"),), created: datetime | None = None,
                  paid: datetime | None = None, completed: datetime | None = None,
                  modified: datetime | None = None, refunds=(), tracking=(), tracking_in: str = "meta") -> dict:
        """``refunds``: (amount, reason, created) triples. ``tracking``: dicts with provider (its
        display name), number, shipped (datetime), optional link and custom (a custom provider);
        ``tracking_in`` "meta" (the ``_wc_shipment_tracking_items`` order meta) or "extension"
        (only the extension's REST route answers them)."""
        with self._lock:
            if id is None:
                self._next_id += 1
                id = self._next_id
        created = created or datetime.now(timezone.utc) - timedelta(days=3)
        modified = modified or completed or paid or created
        refund_ids = iter(range(id * 100 + 1, id * 100 + 100))
        refund_rows = [{"id": next(refund_ids), "date_created": gmt(when), "date_created_gmt": gmt(when),
                        "amount": f"{Decimal(str(amount)):.2f}", "reason": reason, "refunded_by": 1,
                        "refunded_payment": True, "meta_data": [], "line_items": [], "shipping_lines": [],
                        "tax_lines": [], "fee_lines": []} for amount, reason, when in refunds]
        meta, ext = [], []
        for n, t in enumerate(tracking):
            tid = hashlib.md5(f"{id}-{n}".encode()).hexdigest()
            link = t.get("link") or PROVIDER_LINKS.get(t["provider"], "")
            custom = t.get("custom", False)
            meta.append({"tracking_provider": "" if custom else t["provider"].lower().replace(" ", "-"),
                         "custom_tracking_provider": t["provider"] if custom else "",
                         "custom_tracking_link": link if custom else "", "tracking_number": t["number"],
                         "date_shipped": str(int(t["shipped"].timestamp())), "tracking_id": tid})
            ext.append({"tracking_id": tid, "tracking_provider": t["provider"],
                        "tracking_link": link.replace("%1$s", t["number"]), "tracking_number": t["number"],
                        "date_shipped": t["shipped"].astimezone(timezone.utc).strftime("%Y-%m-%d")})
        address = {"first_name": first_name, "last_name": last_name, "company": "", "address_1": "12 Elm St",
                   "address_2": "", "city": "Portland", "state": "OR", "postcode": "97201", "country": "US"}
        line_items = [{"id": id * 10 + n, "name": name, "product_id": 40 + n, "variation_id": 0,
                       "quantity": qty, "tax_class": "", "subtotal": total, "total": total, "sku": sku,
                       "price": float(total), "meta_data": []} for n, (name, qty, sku) in enumerate(items)]
        order = {
            "id": id, "parent_id": 0, "number": str(number or id), "order_key": "wc_order_" + secrets.token_hex(6),
            "created_via": "checkout", "version": "9.4.1", "status": status, "currency": currency,
            "date_created": gmt(created), "date_created_gmt": gmt(created), "date_modified": gmt(modified),
            "date_modified_gmt": gmt(modified), "discount_total": "0.00", "shipping_total": "0.00",
            "total": total, "total_tax": "0.00", "prices_include_tax": False, "customer_id": 0,
            "billing": dict(address, email=email, phone=phone), "shipping": dict(address, phone=shipping_phone),
            "payment_method": "stripe", "payment_method_title": "Credit card", "transaction_id": "",
            "customer_note": "", "date_paid": gmt(paid), "date_paid_gmt": gmt(paid),
            "date_completed": gmt(completed), "date_completed_gmt": gmt(completed), "cart_hash": "",
            "meta_data": ([{"id": id * 7, "key": "_wc_shipment_tracking_items", "value": meta}]
                          if meta and tracking_in == "meta" else []),
            "line_items": line_items, "tax_lines": [], "shipping_lines": [], "fee_lines": [], "coupon_lines": [],
            "refunds": [{"id": r["id"], "reason": r["reason"], "total": "-" + r["amount"]} for r in refund_rows],
            "currency_symbol": "$", "_links": {},
        }
        with self._lock:
            self.orders[id] = order
            self.refund_rows[id] = refund_rows
            self.tracking_rows[id] = ext
        return json.loads(json.dumps(order))

    # --- the server's side ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))   # PHP $_GET: the last one wins
        with self._lock:
            self.requests.append(("GET", url.path, dict(query)))
            failure = self._failures.pop(0) if self._failures else None
        if self.delay:
            time.sleep(self.delay)
        if failure:
            status, retry_after, body, content_type = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            raw = body if body is not None else json.dumps(
                WooError(status, "injected_error", f"injected error {status}").body())
            return self._send(handler, status, raw.encode(), content_type, headers)
        try:
            self._authenticate(handler, url.path, query)
            self._route(handler, url.path, query)
        except WooError as error:
            headers = {"WWW-Authenticate": 'OAuth realm="WooCommerce"'} if error.status == 401 else {}
            self._json(handler, error.status, error.body(), headers)

    def _authenticate(self, handler, path: str, query: dict[str, str]) -> None:
        key = secret = ""
        if self.ssl:  # is_ssl(): basic auth, query string first
            key, secret = query.get("consumer_key", ""), query.get("consumer_secret", "")
            scheme, _, value = handler.headers.get("Authorization", "").partition(" ")
            if not key and scheme.lower() == "basic":
                key, _, secret = base64.b64decode(value).decode(errors="replace").partition(":")
            if key and secret:
                if key != self.consumer_key:
                    raise WooError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
                if not hmac.compare_digest(secret, self.consumer_secret):
                    raise WooError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
                return self._permissions()
        names = ("oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature", "oauth_signature_method")
        missing = [n for n in names if not query.get(n)]
        if len(missing) == len(names):
            raise WooError(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if missing:
            raise WooError(401, "woocommerce_rest_authentication_missing_parameter",
                           f"Missing OAuth parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if query["oauth_consumer_key"] != self.consumer_key:
            raise WooError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        params = dict(query)
        given = params.pop("oauth_signature").replace(" ", "+")
        method = params["oauth_signature_method"]
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            raise WooError(401, "woocommerce_rest_authentication_error",
                           "Invalid signature - signature method is invalid.")
        home = ("https" if self.ssl else "http") + self.base_url.removeprefix("http")
        expected = woo_signature("GET", home + path, params, self.consumer_secret, method[5:].lower())
        if not hmac.compare_digest(expected, given):
            raise WooError(401, "woocommerce_rest_authentication_error",
                           "Invalid signature - provided signature does not match.")
        try:
            stamp = int(params["oauth_timestamp"])
        except ValueError:
            stamp = 0
        if abs(time.time() - stamp) > 15 * 60:
            raise WooError(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        with self._lock:
            if params["oauth_nonce"] in self._nonces:
                raise WooError(401, "woocommerce_rest_authentication_error",
                               "Invalid nonce - nonce has already been used.")
            self._nonces.add(params["oauth_nonce"])
        self._permissions()

    def _permissions(self) -> None:
        if self.key_permissions not in ("read", "read_write"):
            raise WooError(401, "woocommerce_rest_authentication_error",
                           "The API key provided does not have read permissions.")

    def _route(self, handler, path: str, query: dict[str, str]) -> None:
        no_route = WooError(404, "rest_no_route", "No route was found matching the URL and request method.")
        if m := re.fullmatch(r"/wp-json/wc-shipment-tracking/v3/orders/(\d+)/shipment-trackings/?", path):
            if not self.tracking_extension:
                raise no_route
            return self._json(handler, 200, self._known(int(m.group(1)), self.tracking_rows))
        if m := re.fullmatch(r"/wp-json/wc/v3/orders/(\d+)/refunds/?", path):
            return self._json(handler, 200, self._known(int(m.group(1)), self.refund_rows))
        if m := re.fullmatch(r"/wp-json/wc/v3/orders/(\d+)/?", path):
            return self._json(handler, 200, self._known(int(m.group(1)), self.orders))
        if re.fullmatch(r"/wp-json/wc/v3/orders/?", path):
            return self._list(handler, query)
        raise no_route

    def _known(self, order_id: int, table: dict):
        with self._lock:
            if order_id not in self.orders:
                raise WooError(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            return table[order_id]

    def _list(self, handler, query: dict[str, str]) -> None:
        try:
            per_page, page = int(query.get("per_page", 10)), int(query.get("page", 1))
        except ValueError:
            per_page = page = 0
        if not 1 <= per_page <= 100 or page < 1:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        term = query.get("search", "").strip().lower()
        status = query.get("status", "any")
        with self._lock:
            rows = list(self.orders.values())
        fields = lambda o: [str(o["id"]), o["number"], o["billing"]["email"], o["billing"]["phone"],  # noqa: E731
                            o["shipping"]["phone"], o["billing"]["first_name"], o["billing"]["last_name"],
                            o["billing"]["company"]]
        rows = [o for o in rows if (not term or any(term in f.lower() for f in fields(o)))
                and status in ("any", o["status"])]
        key = {"id": lambda o: (o["id"],), "modified": lambda o: (o["date_modified_gmt"], o["id"])}.get(
            query.get("orderby", "date"), lambda o: (o["date_created_gmt"], o["id"]))
        rows.sort(key=key, reverse=query.get("order", "desc") != "asc")
        total = len(rows)
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(-(-total // per_page))}
        self._json(handler, 200, rows[(page - 1) * per_page:page * per_page], headers)

    def _json(self, handler, status: int, payload, headers: dict | None = None) -> None:
        self._send(handler, status, json.dumps(payload).encode(), "application/json; charset=UTF-8", headers)

    @staticmethod
    def _send(handler, status: int, raw: bytes, content_type: str, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        try:
            handler.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

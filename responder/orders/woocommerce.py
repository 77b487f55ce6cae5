"""WooCommerce (REST API v3): an order source behind responder.orders.base; the pipeline asks it when
a customer asks about an order.

Requests go through the official ``woocommerce`` client (``woocommerce.API``, "wc/v3"): OAuth 1.0a
one-legged over http, basic auth (or query-string keys) over https, as WooCommerce's own
``WC_REST_Authentication`` wants. One client per request, its timeout what is left of the budget.

By number: ``GET orders/<id>`` when the number is all digits (the number is the post ID unless a
sequential-numbers plugin renumbers), else or failing that ``GET orders?search=<number>`` keeping
only exact ``number`` matches. By email / phone: ``GET orders?search=…`` (Woo's search is a loose
LIKE), keeping only exact billing email / phone matches. Tracking comes from the Shipment Tracking
extension: its ``_wc_shipment_tracking_items`` order meta, else its own REST route (404: not
installed, no tracking). Refund dates: ``GET orders/<id>/refunds``, only for orders with refunds.

Budget: 429 waits Retry-After, a 5xx is retried once, never past ``max_wait_s`` for one call. Errors
name what to check and never carry the consumer key or secret (requests' own exceptions do, in
their URL, so they are never chained; urllib3's debug log lines are redacted too).
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

import requests
from woocommerce import API

from responder.core.text import normalize_phone
from responder.orders.base import Fulfillment, LineItem, Order, OrderSourceError, Refund

log = logging.getLogger(__name__)

TRACKING_META = "_wc_shipment_tracking_items"
TRACKING_API = "wc-shipment-tracking/v3"
# The Shipment Tracking extension stores predefined providers as a slug; these are its usual ones.
PROVIDERS = {
    "usps": ("USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels=%1$s"),
    "ups": ("UPS", "https://www.ups.com/track?tracknum=%1$s"),
    "fedex": ("FedEx", "https://www.fedex.com/fedextrack/?trknbr=%1$s"),
    "dhl-us": ("DHL US", "https://www.dhl.com/us-en/home/tracking.html?tracking-id=%1$s"),
    "canada-post": ("Canada Post", "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor=%1$s"),
    "royal-mail": ("Royal Mail", "https://www.royalmail.com/track-your-item#/tracking-results/%1$s"),
    "australia-post": ("Australia Post", "https://auspost.com.au/mypost/track/#/details/%1$s"),
}
NANP = {"US", "CA", "PR", "VI", "GU", "AS", "MP"}
AUTH_HINT = "check [orders] consumer_key_env / consumer_secret_env and that the key has Read access"
SECRET_PARAMS = re.compile(r"((?:oauth_)?consumer_(?:key|secret)|oauth_signature)=[^&\s\"']*")


class _Redact(logging.Filter):
    """urllib3 logs request URLs at DEBUG; over http ours carry oauth_consumer_key."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "consumer_" in str(record.args) or "consumer_" in str(record.msg):
            record.msg = SECRET_PARAMS.sub(r"\1=***", record.getMessage())
            record.args = ()
        return True


if not any(isinstance(f, _Redact) for f in logging.getLogger("urllib3.connectionpool").filters):
    logging.getLogger("urllib3.connectionpool").addFilter(_Redact())


def _when(value) -> datetime | None:
    """Woo's *_gmt fields: "2024-05-01T10:00:00", UTC without a suffix."""
    try:
        moment = datetime.fromisoformat(str(value or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _money(value) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None  # a total Woo can't have written


def _same_phone(stored: str, wanted: str) -> bool:
    """E.164 against E.164 exactly; a number stored without '+' by its last ten digits."""
    got = normalize_phone(stored)
    if got.startswith("+") and wanted.startswith("+"):
        return got == wanted
    return len(got.lstrip("+")) >= 10 and len(wanted.lstrip("+")) >= 10 and got[-10:] == wanted[-10:]


class WooCommerceSource:
    name = "woocommerce"

    def __init__(self, shop_url: str, consumer_key: str, consumer_secret: str, *, timeout_s: float = 5.0,
                 max_wait_s: float = 8.0, sleep=time.sleep, query_string_auth: bool = False):
        self.shop_url = shop_url.strip().rstrip("/")
        self.query_string_auth = query_string_auth  # https only: for hosts that drop the Authorization header
        self._key, self._secret = consumer_key, consumer_secret
        self.timeout_s, self.max_wait_s, self.sleep = timeout_s, max_wait_s, sleep
        self.host = urlsplit(self.shop_url).netloc or self.shop_url

    def __repr__(self) -> str:  # never the key
        return f"WooCommerceSource({self.shop_url!r})"

    def by_number(self, number: str) -> list[Order]:
        number = str(number or "").strip().lstrip("#").strip()
        if not number:
            return []
        budget = self._budget()
        if number.isdigit():
            status, found = self._get(f"orders/{number}", {}, budget, missing_ok=True)
            if status != 404:
                if not isinstance(found, dict):
                    raise self._garbage("an order")
                if str(found.get("number", "")) == number:
                    return [self._order(found, budget)]
        rows = self._list({"search": number, "per_page": 20}, budget)
        return [self._order(o, budget) for o in rows if str(o.get("number", "")) == number]

    def by_contact(self, *, email: str = "", phone: str = "", limit: int = 5) -> list[Order]:
        email, phone, limit = (email or "").strip().lower(), normalize_phone(phone), max(1, int(limit))
        budget = self._budget()
        # Woo's search is loose: ask for more than ``limit`` so exact matches aren't crowded out.
        query = {"per_page": min(100, limit * 4), "orderby": "date", "order": "desc"}
        if email:
            rows = self._list(dict(query, search=email), budget)
            rows = [o for o in rows if str((o.get("billing") or {}).get("email", "")).strip().lower() == email]
        elif phone:
            # Stored phones keep their typing ("(415) 555-0100"), and search is a substring match:
            # only the last four digits survive every way of writing a number.
            rows = self._list(dict(query, search=phone[-4:], per_page=100), budget)
            rows = [o for o in rows if any(_same_phone(str((o.get(part) or {}).get("phone", "")), phone)
                                           for part in ("billing", "shipping"))]
        else:
            return []
        return [self._order(o, budget) for o in rows[:limit]]

    # --- mapping ---------------------------------------------------------------------------------

    def _order(self, o: dict, budget: dict) -> Order:
        order_id, status = o.get("id"), str(o.get("status", ""))
        billing, shipping = o.get("billing") or {}, o.get("shipping") or {}
        total = _money(o.get("total"))
        refunds = self._refunds(o, budget)
        refunded = sum((r.amount for r in refunds), Decimal("0"))
        paid = bool(o.get("date_paid_gmt")) or status in ("processing", "completed")
        if status == "refunded" or (refunds and total is not None and refunded >= total):
            financial = "refunded"
        elif refunds:
            financial = "partially_refunded"
        elif status == "failed" or (status == "cancelled" and not o.get("date_paid_gmt")):
            financial = "voided"
        elif paid:
            financial = "paid"
        else:
            financial = "pending"
        phone_raw = str(billing.get("phone") or shipping.get("phone") or "")
        phone = normalize_phone(phone_raw)
        if phone and not phone.startswith("+") and billing.get("country") in NANP:
            phone = "+1" + phone if len(phone) == 10 else "+" + phone if len(phone) == 11 and phone[0] == "1" else phone
        name = " ".join(p for p in (billing.get("first_name"), billing.get("last_name")) if p)
        items = tuple(LineItem(name=str(i.get("name", "")), quantity=int(_money(i.get("quantity")) or 1),
                               sku=str(i.get("sku") or "")) for i in o.get("line_items") or () if isinstance(i, dict))
        return Order(
            number=str(o.get("number") or order_id), email=str(billing.get("email") or "").strip().lower(),
            phone=phone if phone.startswith("+") else phone_raw, created_at=_when(o.get("date_created_gmt")),
            currency=str(o.get("currency") or ""), total=total, financial_status=financial,
            fulfillment_status="fulfilled" if status == "completed" else "unfulfilled",
            cancelled_at=_when(o.get("date_modified_gmt")) if status == "cancelled" else None,
            line_items=items, fulfillments=self._tracking(o, budget), refunds=refunds, customer_name=name,
            admin_url=f"{self.shop_url}/wp-admin/post.php?post={order_id}&action=edit", source=self.name,
            extra={"id": order_id, "status": status, "paid_at": _when(o.get("date_paid_gmt")),
                   "completed_at": _when(o.get("date_completed_gmt"))})

    def _refunds(self, o: dict, budget: dict) -> tuple[Refund, ...]:
        listed = [r for r in o.get("refunds") or () if isinstance(r, dict)]
        if not listed:
            return ()
        _, rows = self._get(f"orders/{o.get('id')}/refunds", {"per_page": 100}, budget)
        dated = {r.get("id"): _when(r.get("date_created_gmt")) for r in rows if isinstance(r, dict)} \
            if isinstance(rows, list) else {}
        return tuple(Refund(amount=abs(_money(r.get("total")) or Decimal("0")), created_at=dated.get(r.get("id")),
                            note=str(r.get("reason") or "")) for r in listed)

    def _tracking(self, o: dict, budget: dict) -> tuple[Fulfillment, ...]:
        meta = next((m.get("value") for m in o.get("meta_data") or () if isinstance(m, dict)
                     and m.get("key") == TRACKING_META), None)
        if isinstance(meta, list):
            out = []
            for t in (t for t in meta if isinstance(t, dict)):
                number, slug = str(t.get("tracking_number") or ""), str(t.get("tracking_provider") or "")
                carrier, template = PROVIDERS.get(slug.lower(), (slug.replace("-", " ").title(), ""))
                carrier = str(t.get("custom_tracking_provider") or "") or carrier
                template = str(t.get("custom_tracking_link") or "") or template
                shipped = str(t.get("date_shipped") or "")
                out.append(Fulfillment(carrier=carrier, tracking_number=number,
                                       tracking_url=template.replace("%1$s", number),
                                       shipped_at=datetime.fromtimestamp(int(shipped), timezone.utc)
                                       if shipped.isdigit() else None))
            return tuple(out)
        if budget.get("no_tracking_api"):
            return ()
        status, rows = self._get(f"orders/{o.get('id')}/shipment-trackings", {}, budget,
                                 version=TRACKING_API, missing_ok=True)
        if status == 404:
            budget["no_tracking_api"] = isinstance(rows, dict) and rows.get("code") == "rest_no_route"
            return ()
        if not isinstance(rows, list):
            raise self._garbage("shipment tracking")
        return tuple(Fulfillment(carrier=str(t.get("tracking_provider") or ""),
                                 tracking_number=str(t.get("tracking_number") or ""),
                                 tracking_url=str(t.get("tracking_link") or ""),
                                 shipped_at=_when(t.get("date_shipped")))
                     for t in rows if isinstance(t, dict))

    # --- HTTP ------------------------------------------------------------------------------------

    def _budget(self) -> dict:
        return {"start": time.monotonic(), "slept": 0.0}  # one public call's time; sleeps count too

    def _left(self, budget: dict) -> float:
        return self.max_wait_s - (time.monotonic() - budget["start"] + budget["slept"])

    def _list(self, params: dict, budget: dict) -> list[dict]:
        _, rows = self._get("orders", params, budget)
        if not isinstance(rows, list):
            raise self._garbage("a list of orders")
        return [r for r in rows if isinstance(r, dict)]

    def _get(self, endpoint: str, params: dict, budget: dict, *, version: str = "wc/v3",
             missing_ok: bool = False):
        retried_5xx = False
        while True:
            left = self._left(budget)
            if left <= 0:
                raise OrderSourceError(f"WooCommerce at {self.host} did not answer within {self.max_wait_s:g} s")
            api = API(url=self.shop_url, consumer_key=self._key, consumer_secret=self._secret,
                      version=version, timeout=min(self.timeout_s, left), query_string_auth=self.query_string_auth)
            try:
                response = api.get(endpoint, params=dict(params))
            except requests.Timeout:
                raise OrderSourceError(f"WooCommerce at {self.host} timed out "
                                       f"(no answer within {min(self.timeout_s, left):g} s)") from None
            except requests.ConnectionError:
                raise OrderSourceError(f"could not connect to WooCommerce at {self.host} "
                                       "(is [orders] shop_url right and the site up?)") from None
            except requests.RequestException as exc:
                raise OrderSourceError(f"request to WooCommerce at {self.host} failed "
                                       f"({type(exc).__name__})") from None
            status = response.status_code
            if status == 429 or (status >= 500 and not retried_5xx):
                wait = self._retry_after(response) if status == 429 else 0.5
                if self._left(budget) - wait <= 0.05:
                    what = "kept throttling (429)" if status == 429 else f"failed with HTTP {status}"
                    raise OrderSourceError(f"WooCommerce at {self.host} {what}; gave up after {self.max_wait_s:g} s")
                log.warning("woocommerce: HTTP %s from %s for %s, retrying in %.1f s", status, self.host,
                            endpoint.split("/")[0], wait)
                retried_5xx = retried_5xx or status >= 500
                self.sleep(wait)
                budget["slept"] += wait
                continue
            try:
                body = response.json()
            except ValueError:
                body = None
                if 200 <= status < 300 or (status == 404 and version == "wc/v3"):
                    raise self._garbage("JSON", response) from None
            code = body.get("code", "") if isinstance(body, dict) else ""
            if status in (401, 403):
                message = str(body.get("message", "")) if isinstance(body, dict) else ""
                raise OrderSourceError(self._scrub(
                    f"WooCommerce at {self.host} refused the API key (HTTP {status}"
                    f"{', ' + code if code else ''}{': ' + message if message else ''}); {AUTH_HINT}"))
            if status == 404 and (version != "wc/v3" or (missing_ok and code != "rest_no_route")):
                return status, body  # no such order; or no Shipment Tracking extension
            if status == 404 and code == "rest_no_route":
                raise OrderSourceError(f"no WooCommerce REST API at {self.shop_url}/wp-json/{version} "
                                       "(check [orders] shop_url and that WooCommerce is active)")
            if not 200 <= status < 300:
                raise OrderSourceError(self._scrub(f"WooCommerce at {self.host} answered HTTP {status}"
                                                   f"{' (' + code + ')' if code else ''}"))
            return status, body

    @staticmethod
    def _retry_after(response) -> float:
        value = response.headers.get("Retry-After", "1")
        return max(0.2, float(value)) if re.fullmatch(r"\d+(\.\d+)?", value.strip()) else 1.0

    def _garbage(self, expected: str, response=None) -> OrderSourceError:
        kind = f" (HTTP {response.status_code}, {response.headers.get('Content-Type', 'no content type')})" \
            if response is not None else ""
        return OrderSourceError(self._scrub(f"WooCommerce at {self.host} did not answer with {expected}{kind}; "
                                            "is [orders] shop_url the WordPress site's address?"))

    def _scrub(self, text: str) -> str:
        for secret in (self._key, self._secret):
            if secret:
                text = text.replace(secret, "***")
        return SECRET_PARAMS.sub(r"\1=***", text)

"""A loopback fake of Twilio's REST API (Messages), driven through the real ``twilio`` client.

``FakeTwilio`` is a real HTTP server on 127.0.0.1 (a free port, in a thread) that answers what
``twilio.rest.Client`` calls for messages, with Twilio's JSON shapes, so the client's own request
building, HTTP basic auth, paging and error parsing are what the tests exercise::

    with FakeTwilio() as fake:                  # [twilio] api_base_url = fake.base_url
        ...                                     # account_sid = fake.account_sid, token = fake.auth_token
        fake.fail_next(429, 20429, "Too Many Requests")
        fake.add_inbound("+14155550100", "+15550100000", "Do you ship to Canada?")
        [params] = fake.wait_for(1)             # the form fields of the created message

Endpoints (``{sid}`` must be the authenticated account):

- ``POST /2010-04-01/Accounts/{sid}/Messages.json``: create. Form fields as the client sends them
  (To, From, Body, StatusCallback, ContentSid, ContentVariables, MessagingServiceSid, MediaUrl…).
  201 with the message (sid "SM" + 32 hex, status "queued", direction "outbound-api",
  num_segments counted here independently of Deskhand's own counter). Validated like Twilio:
  21604 no To, 21603 no From/MessagingServiceSid, 21602 no Body/MediaUrl/ContentSid,
  21654 ContentVariables without ContentSid, 21211 To is not a phone number, 21910 From and To
  of different channels, 21617 Body over 1,600 characters, 21610 To opted out (``opt_out``).
- ``GET /2010-04-01/Accounts/{sid}/Messages.json``: list, newest first, both directions. Filters
  To, From (exact), ``DateSent``/``DateSent>``/``DateSent<`` by DAY (Twilio documents the
  YYYY-MM-DD form; a full timestamp is cut to its day, so clients must filter the rest), paging
  with PageSize (default 50) and Page; ``next_page_uri`` is relative, as Twilio's is.
- ``GET .../Messages/{MessageSid}.json``: fetch one (404 code 20404 if unknown).
- ``GET .../Messages/{MessageSid}/Media.json``: the media list of an inbound message
  (``media_list``, each with ``uri`` ".../Media/ME….json"); ``GET .../Media/ME…`` (no .json)
  answers the media's bytes with its content type.

Wrong or missing credentials: 401 ``{"code": 20003, "message": "Authenticate", ...}``. Every error
body is Twilio's legacy shape ``{"code", "message", "more_info", "status"}`` (the client turns it
into ``TwilioRestException`` with ``.status`` and ``.code``).

Test API: ``base_url``, ``account_sid`` ("AC" + 32 hex), ``auth_token``; ``created`` (the form
fields of every accepted create, a list of dicts; a field sent more than once is a list),
``messages`` (every message resource, by sid), ``requests`` ((method, path, form or query) for every
request, failed ones too); ``fail_next(status, code, message, times=1, on="create")`` (the next
``times`` creates — or lists with on="list", or any request with on="any" — get that Twilio error);
``drop_next(times=1, after_create=False)`` (close the connection without an answer: a network
error; with after_create the message is created first, as when only Twilio's answer is lost);
``opt_out(number)``; ``add_inbound(from_, to, body, *, sid=None, date_sent=None, media_urls=())``
(an inbound message the list returns; a media item is a URL (content type guessed from its name)
or a (content_type, bytes) pair); ``wait_for(n, timeout)`` (the first ``n`` created, or
AssertionError). ``now`` (a callable returning an aware datetime) dates what the fake creates;
pass ``responder.core.clock.utcnow`` to follow a frozen test clock.
"""
from __future__ import annotations

import base64
import json
import mimetypes
import re
import secrets
import threading
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from fakes.loopback import LoopbackServer

API = "/2010-04-01/Accounts"
# GSM 03.38 basic set and the extension table (two septets each): counted here on purpose
# without Deskhand's code, so a test comparing the two can fail.
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
           "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXT = set("^{}\\[]~|€\f")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def count_segments(body: str) -> int:
    if not body:
        return 1
    if all(c in GSM7 or c in GSM7_EXT for c in body):
        units = sum(2 if c in GSM7_EXT else 1 for c in body)
        return 1 if units <= 160 else -(-units // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment.astimezone(timezone.utc)) if moment else None


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}", "status": self.status}


class FakeTwilio(LoopbackServer):
    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None,
                 now: Callable[[], datetime] | None = None):
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.created: list[dict] = []
        self.messages: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._media: dict[str, list[dict]] = {}   # message sid -> [{"sid", "content_type", "data"}]
        self._failures: list[tuple[str, TwilioError]] = []
        self._drops: list[bool] = []
        self._opted_out: set[str] = set()
        self._cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
                fake._handle(self, "POST", form)

            def do_GET(self):
                fake._handle(self, "GET", parse_qs(urlsplit(self.path).query, keep_blank_values=True))

        self._serve(Handler)

    # --- the test's side ---------------------------------------------------------------------


    def fail_next(self, status: int, code: int | None = None, message: str = "", times: int = 1,
                  on: str = "create") -> None:
        assert on in ("create", "list", "any")
        error = TwilioError(status, code or status, message or f"injected error {code or status}")
        with self._cond:
            self._failures.extend([(on, error)] * times)

    def drop_next(self, times: int = 1, after_create: bool = False) -> None:
        with self._cond:
            self._drops.extend([after_create] * times)

    def opt_out(self, number: str) -> None:
        with self._cond:
            self._opted_out.add(number.removeprefix("whatsapp:"))

    def add_inbound(self, from_: str, to: str, body: str, *, sid: str | None = None,
                    date_sent: datetime | None = None, media_urls=()) -> dict:
        media = []
        for item in media_urls:
            if isinstance(item, str):
                content_type = mimetypes.guess_type(item)[0] or "application/octet-stream"
                item = (content_type, item.encode())
            media.append({"sid": "ME" + secrets.token_hex(16), "content_type": item[0], "data": item[1]})
        sid = sid or ("MM" if media else "SM") + secrets.token_hex(16)
        when = date_sent or self.now()
        with self._cond:
            self.messages[sid] = self._resource(sid, to=to, from_=from_, body=body, direction="inbound",
                                                status="received", created=when, sent=when, num_media=len(media))
            self._media[sid] = media
            return self._public(self.messages[sid])

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.created) >= n, timeout):
                raise AssertionError(f"expected {n} created message(s) within {timeout} s, got {len(self.created)}")
            return [dict(c) for c in self.created[:n]]

    def posts(self) -> list[dict]:
        """The form of every create request received, accepted or not."""
        with self._cond:
            return [dict(form) for method, _, form in self.requests if method == "POST"]

    # --- the server's side ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str, multi: dict[str, list[str]]) -> None:
        path = urlsplit(handler.path).path
        form = {k: v[0] if len(v) == 1 else v for k, v in multi.items()}
        with self._cond:
            self.requests.append((method, path, form))
        try:
            self._authenticate(handler.headers.get("Authorization", ""))
            match = re.fullmatch(rf"{API}/(\w+)/Messages(?:/(\w+))?(/Media(?:/(\w+))?)?(\.json)?", path)
            if not match or match.group(1) != self.account_sid:
                raise TwilioError(404, 20404, f"The requested resource {path} was not found")
            account, sid, media, media_sid, dot_json = match.groups()
            kind = "list" if method == "GET" and not sid else "create" if method == "POST" and not sid else "other"
            self._injected(kind)
            if media:
                if method != "GET" or not sid:
                    raise TwilioError(405, 20004, "Method not allowed")
                return self._media_answer(handler, path, sid, media_sid, multi, bool(dot_json))
            if not dot_json:
                raise TwilioError(404, 20404, f"The requested resource {path} was not found")
            if method == "POST" and not sid:
                drop = self._take_drop()
                if drop is False:
                    return self._drop(handler)
                resource = self._create(form, multi)
                if drop:
                    return self._drop(handler)
                return self._send(handler, 201, resource)
            if method == "GET" and not sid:
                return self._send(handler, 200, self._list(path, multi))
            if method == "GET":
                with self._cond:
                    found = self.messages.get(sid)
                if found is None:
                    raise TwilioError(404, 20404, f"The requested resource {path} was not found")
                return self._send(handler, 200, found)
            raise TwilioError(405, 20004, "Method not allowed")
        except TwilioError as error:
            headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if error.status == 401 else {}
            self._send(handler, error.status, error.body(), headers)

    def _authenticate(self, header: str) -> None:
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except Exception:
            user = password = ""
        if scheme.lower() != "basic" or user != self.account_sid or password != self.auth_token:
            raise TwilioError(401, 20003, "Authenticate")

    def _injected(self, kind: str) -> None:
        with self._cond:
            for i, (on, error) in enumerate(self._failures):
                if on == "any" or on == kind:
                    del self._failures[i]
                    raise error

    def _take_drop(self) -> bool | None:
        with self._cond:
            return self._drops.pop(0) if self._drops else None

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True  # no status line at all: the client sees the connection end

    def _create(self, form: dict, multi: dict[str, list[str]]) -> dict:
        to, from_ = str(form.get("To", "")), str(form.get("From", ""))
        body, content_sid = str(form.get("Body", "")), form.get("ContentSid")
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not from_ and not form.get("MessagingServiceSid"):
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if not body and not multi.get("MediaUrl") and not content_sid:
            raise TwilioError(400, 21602, "Message body is required.")
        if form.get("ContentVariables") and not content_sid:
            raise TwilioError(400, 21654, "A ContentSid must be specified if ContentVariables are provided.")
        if not E164.match(to.removeprefix("whatsapp:")):
            raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if from_ and to.startswith("whatsapp:") != from_.startswith("whatsapp:"):
            raise TwilioError(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        if len(body) > 1600:
            raise TwilioError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        with self._cond:
            if to.removeprefix("whatsapp:") in self._opted_out:
                raise TwilioError(400, 21610, "Attempt to send to unsubscribed recipient")
            sid = "SM" + secrets.token_hex(16)
            resource = self._resource(sid, to=to, from_=from_, body=body, direction="outbound-api",
                                      status="queued", created=self.now(), sent=None, num_media=0,
                                      messaging_service_sid=form.get("MessagingServiceSid"))
            self.messages[sid] = resource
            self.created.append(dict(form))
            self._cond.notify_all()
            return dict(resource)

    def _resource(self, sid: str, *, to: str, from_: str, body: str, direction: str, status: str,
                  created: datetime, sent: datetime | None, num_media: int,
                  messaging_service_sid: str | None = None) -> dict:
        uri = f"{API}/{self.account_sid}/Messages/{sid}"
        return {"account_sid": self.account_sid, "api_version": "2010-04-01", "body": body,
                "date_created": rfc2822(created), "date_sent": rfc2822(sent), "date_updated": rfc2822(created),
                "direction": direction, "error_code": None, "error_message": None, "from": from_,
                "messaging_service_sid": messaging_service_sid, "num_media": str(num_media),
                "num_segments": str(count_segments(body)), "price": None, "price_unit": "USD", "sid": sid,
                "status": status, "to": to, "uri": uri + ".json",
                "subresource_uris": {"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"},
                "_sent_at": sent, "_created_at": created}

    def _list(self, path: str, multi: dict[str, list[str]]) -> dict:
        first = {k: v[0] for k, v in multi.items()}
        size = max(1, min(int(first.get("PageSize") or 50), 1000))
        page = max(0, int(first.get("Page") or 0))
        days = {op: first[key][:10] for op, key in ((">=", "DateSent>"), ("<=", "DateSent<"), ("==", "DateSent"))
                if first.get(key)}
        with self._cond:
            rows = list(self.messages.values())
        rows = [r for r in rows if ("To" not in first or r["to"] == first["To"])
                and ("From" not in first or r["from"] == first["From"]) and self._on_days(r, days)]
        rows.sort(key=lambda r: (r["_sent_at"] or r["_created_at"], r["sid"]), reverse=True)
        chunk = rows[page * size:(page + 1) * size]
        filters = {k: v for k, v in first.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(n: int) -> str:
            query = dict(filters, PageSize=size, Page=n)
            if n:
                query["PageToken"] = "PA" + rows[n * size - 1]["sid"]
            return f"{path}?{urlencode(query)}"

        more = (page + 1) * size < len(rows)
        return {"messages": [self._public(r) for r in chunk], "page": page, "page_size": size,
                "start": page * size, "end": page * size + max(len(chunk) - 1, 0),
                "uri": page_uri(page), "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if more else None,
                "previous_page_uri": page_uri(page - 1) if page else None}

    @staticmethod
    def _on_days(row: dict, days: dict[str, str]) -> bool:
        if not days:
            return True
        sent = row["_sent_at"]
        if sent is None:
            return False  # not sent yet: Twilio's date filters don't list it
        day = sent.astimezone(timezone.utc).strftime("%Y-%m-%d")
        return all(day >= v if op == ">=" else day <= v if op == "<=" else day == v for op, v in days.items())

    @staticmethod
    def _public(row: dict) -> dict:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    def _media_answer(self, handler, path: str, sid: str, media_sid: str | None, multi, dot_json: bool) -> None:
        with self._cond:
            items = list(self._media.get(sid, [])) if sid in self.messages else None
        if items is None:
            raise TwilioError(404, 20404, f"The requested resource {path} was not found")
        base = f"{API}/{self.account_sid}/Messages/{sid}/Media"
        if media_sid is None:
            size = max(1, min(int((multi.get("PageSize") or ["50"])[0]), 1000))
            listed = [{"account_sid": self.account_sid, "content_type": m["content_type"], "parent_sid": sid,
                       "date_created": self.messages[sid]["date_created"],
                       "date_updated": self.messages[sid]["date_created"],
                       "sid": m["sid"], "uri": f"{base}/{m['sid']}.json"} for m in items[:size]]
            uri = f"{base}.json?PageSize={size}&Page=0"
            return self._send(handler, 200, {"media_list": listed, "page": 0, "page_size": size, "start": 0,
                                             "end": max(len(listed) - 1, 0), "uri": uri, "first_page_uri": uri,
                                             "next_page_uri": None, "previous_page_uri": None})
        item = next((m for m in items if m["sid"] == media_sid), None)
        if item is None:
            raise TwilioError(404, 20404, f"The requested resource {path} was not found")
        if dot_json:
            return self._send(handler, 200, {"sid": item["sid"], "content_type": item["content_type"],
                                             "parent_sid": sid, "uri": f"{base}/{item['sid']}.json"})
        handler.send_response(200)
        handler.send_header("Content-Type", item["content_type"])
        handler.send_header("Content-Length", str(len(item["data"])))
        handler.end_headers()
        handler.wfile.write(item["data"])

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
        raw = json.dumps(FakeTwilio._public(payload) if "sid" in payload else payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(raw)

"""Fuzzing Twilio's webhooks (issue 7: hostile input), on SQLite and PostgreSQL.

Requests go through FastAPI's TestClient to ``create_app`` (responder/web/twilio_hooks.py) with the
server's exceptions turned into responses, as uvicorn would; a valid ``X-Twilio-Signature`` is
computed with the twilio library's own ``RequestValidator`` over the parameters the form carries, as
Twilio signs them. Hypothesis varies everything a caller controls: field names and values (unicode,
NUL, percent-encoded bytes, huge, missing, repeated), the content type, non-UTF-8 bodies, the query
string, the signature. The properties:

- the answer is always one of 200, 400, 403, 413 or 415 (415: not a form, as documented in
  twilio_hooks) - never a 500;
- a refused request stores nothing and changes nothing;
- an accepted inbound message is a stored row with its MessageSid; an accepted status callback
  changes only the outbox row it names.

No embedding model is loaded: the webhook needs settings and a database only.
"""
from __future__ import annotations

import itertools
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import pytest
from fastapi.testclient import TestClient
from helpers import write_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select
from twilio.request_validator import RequestValidator

from responder.core.db import Database
from responder.core.models import Message, Outbox
from responder.core.settings import load_settings
from responder.ops.context import Context
from responder.web import create_app

TOKEN_ENV = "DESKHAND_TEST_TWILIO_TOKEN"
TOKEN = "fuzz-twilio-auth-token-9d2e"
PUBLIC = "https://help.shop.example.test"
SHOP = "+15550100000"
ANSWERS = {200, 400, 403, 413, 415}
SEEDED_SID = "SM" + "5" * 32
_sids = itertools.count(1)
FUZZ = settings(max_examples=120, deadline=timedelta(seconds=5),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Signed(dict):
    """Form fields as Twilio signs them: every value of a repeated name (RequestValidator reads getall)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


@pytest.fixture
def hooks(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    extra = (f'[twilio]\naccount_sid = "AC{"0" * 31}1"\nauth_token_env = "{TOKEN_ENV}"\nsms_from = "{SHOP}"\n'
             f'whatsapp_from = "{SHOP}"\npublic_url = "{PUBLIC}"\n')
    db = Database(database_url)
    db.migrate()
    with db.transaction() as session:  # the reply a status callback may name
        session.add(Outbox(channel="sms", recipient="+14155550100", body_text="Shipping is $7.",
                           message_id="<seed@shop.example.test>", status="sent", provider_id=SEEDED_SID))
    ctx = Context(settings=load_settings(write_settings(tmp_path, database_url=database_url, extra=extra)), db=db,
                  drafter=None, retriever=None)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield SimpleNamespace(ctx=ctx, client=client)
    db.dispose()


def snapshot(ctx) -> tuple:
    with ctx.db.transaction() as session:
        messages = session.exec(select(func.count()).select_from(Message)).one()
        seeded = session.exec(select(Outbox).where(Outbox.provider_id == SEEDED_SID)).one()
        return messages, seeded.delivery_status, seeded.delivery_error


def stored_sids(ctx) -> set[str]:
    with ctx.db.transaction() as session:
        return set(session.exec(select(Message.provider_id)).all())


# --- what a caller can send -------------------------------------------------------------------

NASTY = st.sampled_from(["", " ", "\x00", "\x00" * 50, "%00", "\r\n", "\u2028", "é", "日本語", "🕯️", "+", "&", "=",
                         "\\", "'; DROP TABLE message; --", "<script>alert(1)</script>", "x" * 3000, "\ufeff",
                         "whatsapp:+14155550100", "+14155550100", "STOP", "9" * 5000, "-1", "²", "١"])
VALUES = st.one_of(NASTY, st.text(max_size=40), st.lists(NASTY, max_size=3).map("".join))
NAMES = st.one_of(st.sampled_from(["MessageSid", "SmsSid", "From", "To", "Body", "NumMedia", "MediaUrl0",
                                   "MediaContentType0", "MediaUrl9", "ProfileName", "MessageStatus", "SmsStatus",
                                   "ErrorCode", "ErrorMessage", "AccountSid"]), st.text(max_size=12))
SIDS = st.one_of(st.builds(lambda: f"SM{next(_sids):032x}"), st.just(SEEDED_SID), VALUES,
                 st.sampled_from(["SM\x00" + "1" * 32, " SM1 ", "SM" + "1" * 100, "SM1/../x", "SMé"]))
STATUSES = st.sampled_from(["queued", "sent", "delivered", "undelivered", "failed", "read", "SENT", "exploded", ""])


@st.composite
def forms(draw) -> list[tuple[str, str]]:
    """Field pairs: mostly a plausible message or status callback, then noise, repeats, removals."""
    pairs = [("MessageSid", draw(SIDS)), ("From", draw(st.one_of(st.just("+14155550100"), VALUES))),
             ("To", SHOP), ("Body", draw(VALUES)), ("NumMedia", draw(VALUES)), ("MediaUrl0", draw(VALUES)),
             ("MessageStatus", draw(STATUSES)), ("ErrorCode", draw(st.one_of(VALUES, st.just("30007")))),
             ("ErrorMessage", draw(st.one_of(VALUES, st.just("carrier\x00 said no"))))]
    pairs += draw(st.lists(st.tuples(NAMES, VALUES), max_size=6))
    if draw(st.booleans()):  # a repeated field (signed with every value, as Twilio would)
        pairs.append(draw(st.sampled_from(pairs)))
    drop = draw(st.sets(st.integers(0, len(pairs) - 1), max_size=3))
    return [p for i, p in enumerate(pairs) if i not in drop]


@st.composite
def requests(draw) -> SimpleNamespace:
    pairs = draw(forms())
    path = draw(st.sampled_from(["/twilio/sms", "/twilio/whatsapp", "/twilio/status"]))
    query = draw(st.sampled_from(["", "shop=1", "a=%FF%00", "bodySHA256=abc"]))
    body = urlencode(pairs, quote_via=quote).encode()
    kind = draw(st.sampled_from(["utf8", "utf8", "utf8", "utf8", "latin1", "bad-percent", "garbage", "huge"]))
    if kind == "latin1":
        body = "&".join(f"{k}={v}" for k, v in pairs).encode("latin-1", "replace") + b"&Body=caf\xe9"
    elif kind == "bad-percent":
        body += b"&Body=%C3%28%ED%A0%80"
    elif kind == "garbage":
        body = draw(st.binary(max_size=300))
    elif kind == "huge":
        body += b"&Body=" + b"x" * (65 * 1024)
    content_type = draw(st.sampled_from(["application/x-www-form-urlencoded"] * 4 + [
        "application/x-www-form-urlencoded; charset=utf-8", "APPLICATION/X-WWW-FORM-URLENCODED", "application/json",
        "text/plain", "multipart/form-data; boundary=x", ""]))
    url = PUBLIC + path + (f"?{query}" if query else "")
    signed = Signed()
    for name, value in pairs:
        signed.setdefault(name, []).append(value)
    signature = draw(st.sampled_from(["valid"] * 4 + ["missing", "wrong", "other-url"]))
    headers = {"Content-Type": content_type} if content_type else {}
    if signature != "missing":
        signed_url = PUBLIC + "/twilio/other" if signature == "other-url" else url
        token = TOKEN if signature != "wrong" else "not-the-token"
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(signed_url, signed)
    return SimpleNamespace(path=path + (f"?{query}" if query else ""), body=body, headers=headers, pairs=pairs,
                           kind=kind, signature=signature, content_type=content_type)


def post(hooks, request):
    return hooks.client.post(request.path, content=request.body, headers=request.headers)


# --- properties --------------------------------------------------------------------------------

@pytest.mark.timeout(120)
@FUZZ
@given(request=requests())
def test_any_request_gets_a_clear_answer_and_stores_only_what_was_accepted(hooks, request):
    before = snapshot(hooks.ctx)
    response = post(hooks, request)
    after = snapshot(hooks.ctx)
    assert response.status_code in ANSWERS, (response.status_code, response.text[:200])
    event(f"{request.path.split('?')[0]} {response.status_code}")
    if response.status_code != 200:
        assert after == before  # refused: nothing stored, nothing changed
        return
    # Accepted only what Twilio could have sent: a signed UTF-8 form.
    assert request.signature == "valid" and request.kind == "utf8", request.kind
    assert request.content_type.split(";")[0].lower() == "application/x-www-form-urlencoded"
    first = lambda name: next((v for k, v in request.pairs if k == name), "")  # noqa: E731
    sid = (first("MessageSid") or first("SmsSid")).strip()  # as the server reads it
    if request.path.startswith("/twilio/status"):
        assert after[0] == before[0]  # a status callback stores no message
        if sid != SEEDED_SID:
            assert after == before
        for value in after[1:]:
            assert value is None or "\x00" not in value
    else:
        assert sid in stored_sids(hooks.ctx) and after[0] - before[0] in (0, 1)  # 0: a retry of a stored sid


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=timedelta(seconds=5),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.text(max_size=200), sender=VALUES, profile=VALUES, media=VALUES)
def test_a_signed_message_with_any_text_is_stored_readable(hooks, body, sender, profile, media):
    sid = f"SM{next(_sids):032x}"
    form = Signed({"MessageSid": [sid], "From": [sender], "To": [SHOP], "Body": [body], "ProfileName": [profile],
                   "NumMedia": ["1"], "MediaUrl0": [media], "MediaContentType0": [media]})
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/sms", form)
    response = hooks.client.post("/twilio/sms", content=urlencode({k: v[0] for k, v in form.items()}).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "X-Twilio-Signature": signature})
    if len(response.request.content) > 64 * 1024:
        assert response.status_code == 413
        return
    assert response.status_code == 200, response.text
    with hooks.ctx.db.transaction() as session:
        row = session.exec(select(Message).where(Message.provider_id == sid)).one()
        assert row.text == body.replace("\x00", "") and "\x00" not in row.sender
        assert all("\x00" not in a["url"] and "\x00" not in a["content_type"] for a in row.attachments)


def test_status_callbacks_with_nul_bytes_are_answered_not_crashed(hooks):
    """Found by the fuzzer: on PostgreSQL a NUL in ErrorMessage (stored) or in the MessageSid (looked
    up) raised inside the request: 500."""
    def status(**form):
        signed = Signed({k: [v] for k, v in form.items()})
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/status", signed)
        return hooks.client.post("/twilio/status", data=form, headers={"X-Twilio-Signature": signature})

    assert status(MessageSid=SEEDED_SID, MessageStatus="failed", ErrorCode="30007",
                  ErrorMessage="carrier\x00 said no").status_code == 200
    assert snapshot(hooks.ctx)[1:] == ("failed", "30007: carrier said no")
    assert status(MessageSid="SM\x00" + "1" * 32, MessageStatus="delivered").status_code == 400
    assert status(MessageSid="x" * 5000, MessageStatus="delivered").status_code == 400
    assert snapshot(hooks.ctx)[1] == "failed"


def test_a_content_length_no_integer_can_hold_is_refused_not_crashed(hooks):
    for declared in (b"9" * 5000, "²".encode("latin-1")):  # "²".isdigit(), but int("²") raises
        response = hooks.client.post("/twilio/sms", content=b"MessageSid=SM1",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Content-Length": declared, "X-Twilio-Signature": "x"})
        assert response.status_code in (400, 403, 413)
    assert snapshot(hooks.ctx)[0] == 0

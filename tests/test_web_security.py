"""The web side's security, proved over every route of the real app (``create_app``), and secrets
and personal data kept out of the daemon's log.

Routes are read from the app itself, so a page added later is covered without touching this file;
only the allow-list below opens a route without a login, each entry with its reason:

- ``/healthz`` (monitors; counts only), ``/login`` and ``/logout`` (CSRF-checked, shows nothing);
- Twilio's webhooks ``/twilio/*``: no session, the ``X-Twilio-Signature`` is the proof
  (tests/test_twilio_inbound.py: the documented vector, unsigned, mis-signed, tampered, no URL
  or token to check against: 403 and nothing stored);
- the signed one-click link pages ``/a/``, ``/f/``, ``/l/``: the signed token is the proof
  (tests/test_web_links.py: a changed link 400, an expired one 410, a used one 410, a token
  of another purpose 400, a GET never acts).

Before a password is set, the status page and Try it are open as well (``/``, ``/status``,
``/try``: a fresh install is tried on the owner's own machine), but only while the server is
reachable from this machine alone; with a public URL (or a non-loopback host) they are closed
too, since Try it spends LLM money for whoever calls it. Every other page answers 303 to the login
(403 "set a password first" before one exists) and shows no data; with a session, every POST
without this session's CSRF token is refused with 403 and changes nothing.

The last tests read the log: records are redacted before any handler (uvicorn's own included)
sees them, and the daemon as a real process (Dovecot with its own password, an SMTP password set,
a mail server refusing the customer's address, the OpenAI and Twilio fakes echoing credentials in
their errors, a catalog feed URL with a password and a token, DEBUG logging) writes a log without
any secret and without the customer's address or number.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import re
import signal
import urllib.error
import urllib.parse
import urllib.request

import pytest
from browser import PASSWORD, csrf_of, hold, login, make_web, set_password, web_base  # noqa: F401
from daemons import start_daemon, wait_until
from fakes.openai_chat import FakeOpenAIChat
from fakes.twilio_api import FakeTwilio
from helpers import PASSWORD_ENV, customer_mail, write_settings
from itsdangerous import TimestampSigner
from servers import Dovecot, SmtpCapture, free_port, require_dovecot
from sqlmodel import SQLModel, select
from starlette.routing import Mount
from twilio.request_validator import RequestValidator

from responder.core.clock import clock
from responder.core.db import Database
from responder.core.models import Draft, Identity, Lesson, Outbox
from responder.owner import approvals
from responder.owner.password import fingerprint, open_session, stored_hash
from responder.web.security import SESSION_COOKIE

PUBLIC = {  # (method, path): why it needs no login
    ("GET", "/healthz"): "health check for monitors: counts only",
    ("GET", "/login"): "the login form", ("POST", "/login"): "the login (CSRF-checked)",
    ("POST", "/logout"): "ends the session (CSRF-checked); shows nothing",
    ("POST", "/twilio/sms"): "Twilio webhook: signature-checked", ("POST", "/twilio/whatsapp"): "the same",
    ("POST", "/twilio/status"): "Twilio status callback: signature-checked",
    **{(method, f"/{kind}/{{token}}"): "signed one-click link" for kind in "afl" for method in ("GET", "POST")},
    # The site chat (tests/test_chat_api.py: a request from another origin or without the visitor's
    # token is refused; a visitor reads only their own chat, never the owner's pages).
    ("GET", "/chat/widget.js"): "the chat widget's script, for the shop's pages",
    ("GET", "/shop"): "the sample shop's page with the widget",
    ("GET", "/chat/api/{path}"): "the chat API (mounted): Origin- and visitor-token-checked",
    **{(method, f"/chat/api/{name}"): "the chat API: Origin-checked, the visitor's own token"
       for method, name in (("GET", "config"), ("POST", "sessions"), ("GET", "messages"), ("POST", "messages"),
                            ("POST", "person"), ("POST", "email"), ("POST", "feedback"))},
}
FRESH = {("GET", "/"), ("GET", "/status"), ("GET", "/try"), ("POST", "/try")}  # open before a password exists
CUSTOMER, WORDS = "Casey Periwinkle <casey.periwinkle@customer.test>", "periwinkle"  # data no stranger may see
HUMAN = "Can I speak to a person? My periwinkle candle arrived cracked."
UNKNOWN = "Do you ship live goldfish to Antarctica by drone?"


# --- the routes of the real app -------------------------------------------------------------------

def app_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route, through included routers and mounts (HEAD left out: it is GET)."""
    found: list[tuple[str, str]] = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if getattr(route, "original_router", None) is not None:  # FastAPI's included router
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Mount):
                walk(getattr(route, "routes", []) or [], prefix + route.path)
                found.append(("GET", prefix + route.path + "/{path}"))
            else:
                found.extend((m, prefix + route.path) for m in sorted(route.methods or ()) if m != "HEAD")

    walk(app.routes, "")
    return sorted(set(found))


def concrete(path: str, values: dict) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1).split(":")[0]
        if name not in values:
            pytest.fail(f"a route has the parameter {{{name}}} this test has no value for: add one to values()")
        return str(values[name])
    return re.sub(r"\{([^}]+)\}", fill, path)


def values(ctx) -> dict:
    """Real ids, so an unprotected page would show real data: a held draft of Casey's with a lesson."""
    held = hold(ctx, HUMAN, sender=CUSTOMER, subject="Cracked periwinkle candle")
    edited = hold(ctx, UNKNOWN, sender=CUSTOMER, subject="Periwinkle shipping")
    assert held.route in ("review", "handoff") and edited.route in ("review", "handoff")
    with ctx.db.transaction() as session:
        approvals.approve(session, ctx.settings, edited.id, actor="test", text="We ship to Antarctica for $95.")
        lesson = session.exec(select(Lesson)).one()
        customer = session.exec(select(Identity).where(Identity.value == "casey.periwinkle@customer.test")).one()
    return {"draft_id": held.id, "thread_id": held.thread_id, "customer_id": customer.customer_id,
            "lesson_id": lesson.id, "token": "not-a-signed-token", "path": "x"}


def call(client, method: str, path: str, data: dict | None = None):
    if method == "GET":
        return client.get(path, follow_redirects=False)
    return client.post(path, data=data or {}, follow_redirects=False)


def shows_nothing(response) -> bool:
    text = response.text.lower()
    return WORDS not in text and "casey" not in text and "goldfish" not in text


def snapshot(ctx) -> list:
    with ctx.db.transaction() as session:
        return [(t.name, sorted(map(repr, session.execute(select(t)).all()))) for t in SQLModel.metadata.sorted_tables]


@pytest.fixture
def web(web_base, database_url):
    with make_web(web_base, database_url) as w:
        yield w


def test_the_app_has_the_routes_this_file_expects(web):
    routes = app_routes(web.app)
    assert set(PUBLIC) <= set(routes) and FRESH <= set(routes), "a public route was renamed: update PUBLIC/FRESH"
    assert len([r for r in routes if r not in PUBLIC]) >= 15  # the owner's pages were found, not just a few


def test_every_page_needs_a_login_and_shows_nothing_without_one(web):
    ids = values(web.ctx)
    set_password(web.ctx)
    forged = web.client.__class__(web.app)  # a session cookie signed with the links' key, not the session key
    forged.cookies.set(SESSION_COOKIE, _session_cookie(web.ctx, key=web.ctx.settings.secret()))
    checked = 0
    for method, path in app_routes(web.app):
        if (method, path) in PUBLIC:
            continue
        url = concrete(path, ids)
        for client in (web.client, forged):
            response = call(client, method, url)
            assert response.status_code == 303, (method, url, response.status_code)
            assert response.headers["location"].startswith("/login?next="), (method, url)
            assert shows_nothing(response), (method, url)
        checked += 1
    assert checked >= 15
    health = web.client.get("/healthz")
    assert health.status_code == 200 and shows_nothing(health) and set(health.json()) == {"ok", "messages", "routes",
                                                                                            "outbox"}
    assert shows_nothing(web.client.get("/login"))

    # Logged in, the same pages open and do show the data (so the checks above could fail); and
    # opening any of them changes nothing (only a POST acts).
    assert login(web.client).status_code == 303
    before = snapshot(web.ctx)
    for method, path in app_routes(web.app):
        if method == "GET" and (method, path) not in PUBLIC:
            page = web.client.get(concrete(path, ids))
            assert page.status_code == 200, (path, page.status_code)
    assert WORDS in web.client.get(f"/queue/{ids['draft_id']}").text.lower()
    assert snapshot(web.ctx) == before


def test_before_a_password_only_status_and_try_it_open_and_only_on_loopback(web, web_base, database_url):
    ids = values(web.ctx)
    for method, path in app_routes(web.app):
        if (method, path) in PUBLIC:
            continue
        response = call(web.client, method, concrete(path, ids),
                        {"csrf": csrf_of(web.client.get("/try").text), "text": "hi"} if method == "POST" else None)
        if (method, path) in FRESH:
            assert response.status_code == 200, (method, path)
        else:
            assert response.status_code == 403 and "set-password" in response.text, (method, path)
        assert shows_nothing(response), (method, path)

    # Reachable from other machines: nothing opens until a password is set (Try it spends LLM money).
    exposed = web_base.settings.model_copy(update={"web": web_base.settings.web.model_copy(
        update={"public_url": "https://help.example.test"})})
    base = web_base.__class__(settings=exposed, db=web_base.db, drafter=web_base.drafter,
                              retriever=web_base.retriever)
    with make_web(base, database_url) as public:
        for method, path in sorted(FRESH):
            response = call(public.client, method, path, {"text": "hi"})
            assert response.status_code == 403 and "set-password" in response.text, (method, path)


def test_every_form_needs_this_sessions_csrf_token(web):
    ids = values(web.ctx)
    set_password(web.ctx)
    other = web.client.__class__(web.app)
    assert login(other).status_code == 303
    theirs = csrf_of(other.get("/queue").text)  # a valid token, of another session
    assert login(web.client).status_code == 303
    before = snapshot(web.ctx)
    posts = [p for m, p in app_routes(web.app)
             if m == "POST" and (("POST", p) not in PUBLIC or p in ("/login", "/logout"))]
    assert len(posts) >= 8
    for path in posts:
        url = concrete(path, ids)
        for data in ({"text": "Sure.", "reason": "x", "other": "+14155550100", "password": PASSWORD},
                     {"csrf": "forged-token", "text": "Sure."}, {"csrf": theirs, "text": "Sure."}):
            response = web.client.post(url, data=data, follow_redirects=False)
            assert response.status_code == 403 and "Nothing was changed" in response.text, (url, data)
    assert snapshot(web.ctx) == before and web.kicks == []
    assert web.client.get("/queue").status_code == 200  # still logged in: a forged logout did nothing


def _session_cookie(ctx, *, key) -> str:
    """A Starlette session cookie saying "logged in", signed with ``key``."""
    with ctx.db.transaction() as session:
        stored = stored_hash(session)
        sid = open_session(session, 1)  # a session the server opened, as a login does
    data = base64.b64encode(json.dumps({"owner": True, "pw": fingerprint(stored), "sid": sid}).encode())
    return TimestampSigner(key).sign(data).decode()


def test_a_session_ends_on_the_server_logout_expiry_and_a_new_password(web, tmp_path):
    """A copy of the session cookie taken before logout (or before the session's hours ran out, or
    before a new password) opens nothing afterwards, CSRF token and all."""
    from responder.owner.password import store_password

    set_password(web.ctx)
    assert login(web.client).status_code == 303
    copied = web.client.__class__(web.app)
    copied.cookies.set(SESSION_COOKIE, web.client.cookies.get(SESSION_COOKIE))
    page = copied.get("/queue", follow_redirects=False)
    assert page.status_code == 200 and csrf_of(page.text)
    assert web.client.post("/logout", data={"csrf": csrf_of(web.client.get("/queue").text)}).status_code == 200
    assert copied.get("/queue", follow_redirects=False).status_code == 303  # back to /login
    assert web.client.get("/queue", follow_redirects=False).status_code == 303

    assert login(web.client).status_code == 303
    clock.advance(hours=web.ctx.settings.web.session_hours + 0.1)
    assert web.client.get("/queue", follow_redirects=False).status_code == 303  # the hours ran out
    clock.reset()

    assert login(web.client).status_code == 303 and web.client.get("/queue").status_code == 200
    with web.ctx.db.transaction() as session:
        store_password(session, PASSWORD)  # the same password, set again: every browser is signed out
    assert web.client.get("/queue", follow_redirects=False).status_code == 303


def test_a_session_cookie_works_only_with_the_session_key(web):
    """Links and sessions share one root secret but not one key: neither passes for the other."""
    from responder.web.security import session_key
    values(web.ctx)
    set_password(web.ctx)
    real = web.client.__class__(web.app)
    real.cookies.set(SESSION_COOKIE, _session_cookie(web.ctx, key=session_key(web.ctx.settings)))
    assert real.get("/queue", follow_redirects=False).status_code == 200  # the construction is right
    for key in (web.ctx.settings.secret(), b"deskhand.web-session"):
        forged = web.client.__class__(web.app)
        forged.cookies.set(SESSION_COOKIE, _session_cookie(web.ctx, key=key))
        assert forged.get("/queue", follow_redirects=False).status_code == 303


# --- secrets and customers out of the daemon's log -----------------------------------------------

SECRETS = {
    "IMAP password": "imap-Pw-9XqT2vLrM",
    "SMTP password": "smtp-Wr0ng-Pw-K7fQ",
    "DESKHAND_SECRET": "dh-secret-Vb7Lm2Qx9Rt4Zw",
    "OPENAI_API_KEY": "llmkey-Q7w9Zx2Lp4Rt8Vb",
    "catalog feed password": "feedpw-H3n8Kq",
    "catalog feed token": "feedtok-P2x7Wd9",
}
PAT_EMAIL, PAT_PHONE = "pat.lee@customer.test", "+14155550199"


def _post_form(port: int, public: str, path: str, form: dict, token: str | None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(public + path, form)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=urllib.parse.urlencode(form).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.timeout(240)
def test_the_daemon_log_holds_no_secret_address_or_number(tmp_path, monkeypatch):
    require_dovecot()
    with Dovecot(password=SECRETS["IMAP password"]) as dovecot, \
            SmtpCapture(credentials=(dovecot.username, SECRETS["SMTP password"])) as smtp, \
            FakeOpenAIChat() as llm, FakeTwilio() as twilio:
        monkeypatch.setenv(PASSWORD_ENV, SECRETS["IMAP password"])
        monkeypatch.setenv("DESKHAND_LOGTEST_SMTP_PW", SECRETS["SMTP password"])
        monkeypatch.setenv("DESKHAND_SECRET", SECRETS["DESKHAND_SECRET"])
        monkeypatch.setenv("OPENAI_API_KEY", SECRETS["OPENAI_API_KEY"])
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", twilio.auth_token)
        for _ in range(3):  # a server that echoes the key it was sent (some proxies do)
            llm.enqueue(f"Incorrect API key provided: {SECRETS['OPENAI_API_KEY']}", status=401)
        twilio.fail_next(500, 20500, f"internal error (auth {twilio.account_sid}:{twilio.auth_token})", times=3)
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        feed = f"http://shop:{SECRETS['catalog feed password']}@127.0.0.1:{free_port()}/feed.csv" \
               f"?access_token={SECRETS['catalog feed token']}"
        config = write_settings(
            tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}", dovecot=dovecot, smtp=smtp, web_port=port,
            email_extra='smtp_password_env = "DESKHAND_LOGTEST_SMTP_PW"',
            extra=f'[log]\nlevel = "DEBUG"\n[llm]\nprovider = "openai"\nbase_url = "{llm.base_url}"\n'
                  f'timeout_s = 2\nbudget_s = 3\n[twilio]\naccount_sid = "{twilio.account_sid}"\n'
                  f'sms_from = "+15550100000"\napi_base_url = "{twilio.base_url}"\npublic_url = "{public}"\n')
        config.write_text(config.read_text().replace("refresh_s = 1", f'refresh_s = 1\ncatalog_source = "{feed}"'))
        db = Database(f"sqlite:///{tmp_path / 'd.sqlite3'}")
        log_path = tmp_path / "daemon.log"
        proc = start_daemon(config, log_path)
        try:
            wait_until(lambda: _web_up(port), 90, "the daemon's web server")
            # Logged in to SMTP with the secret password, then refused with the address in the answer.
            smtp.fail_next(550, f"5.1.1 <{PAT_EMAIL}>: Recipient address rejected", count=5, stage="rcpt")
            dovecot.append(customer_mail("Hi! How much is shipping to Texas? My number is +1 415 555 0199.",
                                         sender=f"Pat Lee <{PAT_EMAIL}>"))
            # "my email is …" by text: a code goes to that address by email, a reply by SMS; both fail.
            sms = {"MessageSid": "SM" + "1" * 32, "AccountSid": twilio.account_sid, "From": PAT_PHONE,
                   "To": "+15550100000", "Body": f"my email is {PAT_EMAIL}", "NumMedia": "0"}
            assert _post_form(port, public, "/twilio/sms", sms, twilio.auth_token) == 200
            assert _post_form(port, public, "/twilio/sms", {**sms, "MessageSid": "SM" + "2" * 32}, None) == 403
            assert _post_form(port, public, "/twilio/sms", {**sms, "MessageSid": "SM" + "3" * 32},
                              "not-the-token") == 403
            wait_until(lambda: _failed_both_ways(db), 90, "the SMTP login and the Twilio call to fail")
            wait_until(lambda: "catalog feed" in log_path.read_text(errors="replace"), 30, "the feed's failure")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            db.dispose()
        log = log_path.read_text(errors="replace")
        basic = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
        leaks = {name: value for name, value in {**SECRETS, "TWILIO_AUTH_TOKEN": twilio.auth_token,
                                                 "Twilio basic auth": basic}.items() if value in log}
        assert leaks == {}, f"secrets in the log: {sorted(leaks)}"
        for trace in (PAT_EMAIL, "pat.lee", PAT_PHONE, PAT_PHONE[1:], "415 555 0199", "4155550199"):
            assert trace not in log, f"{trace!r} in the log"
        # The events above did reach the log, redacted (so the checks could fail).
        assert "DEBUG" in log and "refused Twilio request" in log
        assert "p***@customer.test" in log and "+***99" in log
        assert "cannot send replies now" in log or "to p***@customer.test: failed" in log
        assert "Twilio error 20500: internal error (auth AC" in log
        assert "catalog feed http://shop:***@" in log and "access_token=***" in log
        assert len(llm.chats) >= 1 and any(method == "POST" and isinstance(form, dict) and form.get("To") == PAT_PHONE
                                           for method, _, form in list(twilio.requests))


def test_records_are_redacted_before_any_handler_sees_them(monkeypatch):
    """Also a library's own handler (uvicorn installs its own) prints only redacted lines and
    tracebacks, and uvicorn's access formatter still gets its arguments in shape."""
    from uvicorn.logging import AccessFormatter

    from responder.core import logs

    monkeypatch.setenv("DESKHAND_SECRET", SECRETS["DESKHAND_SECRET"])
    monkeypatch.setattr(logs, "_factory_installed", False)
    before = logging.getLogRecordFactory()
    stream = io.StringIO()
    plain, access = logging.StreamHandler(stream), logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    access.setFormatter(AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s', use_colors=False))
    library, uvicorn_access = logging.getLogger("some.library"), logging.getLogger("uvicorn.access")
    try:
        logs._install_factory()
        for logger, handler in ((library, plain), (uvicorn_access, access)):
            logger.addHandler(handler)
            logger.propagate = False
        library.setLevel(logging.DEBUG)
        uvicorn_access.setLevel(logging.INFO)
        try:
            raise RuntimeError(f"login as {PAT_EMAIL} with {SECRETS['DESKHAND_SECRET']} refused")
        except RuntimeError:
            library.exception("request for %s failed", PAT_PHONE)
        library.debug("headers: %s", {"Authorization": "Basic QUM5ZjA6c2VjcmV0dG9rZW4="})
        uvicorn_access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/a/eyJkIjozfQ.Zk1x2w.abcdefghijkl",
                            "1.1", 200)
    finally:
        logging.setLogRecordFactory(before)
        for logger, handler in ((library, plain), (uvicorn_access, access)):
            logger.removeHandler(handler)
            logger.propagate = True
    out = stream.getvalue()
    assert "Traceback" in out and "RuntimeError: login as p***@customer.test with *** refused" in out
    assert "+***99" in out and "Basic ***" in out and '"GET /a/*** HTTP/1.1" 200' in out
    for trace in (PAT_EMAIL, PAT_PHONE, SECRETS["DESKHAND_SECRET"], "QUM5ZjA6c2VjcmV0dG9rZW4=", "abcdefghijkl"):
        assert trace not in out


def _web_up(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False


def _failed_both_ways(db) -> bool:
    """Both messages drafted; the code email was refused by the SMTP server and the SMS by Twilio."""
    try:
        with db.transaction() as session:
            failed = {r.channel for r in session.exec(select(Outbox)).all() if r.last_error}
            drafts = session.exec(select(Draft)).all()
    except Exception:
        return False  # not migrated yet
    return len(drafts) >= 2 and {"email", "sms"} <= failed

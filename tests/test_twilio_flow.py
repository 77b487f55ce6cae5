"""SMS and WhatsApp end to end (the issue's "done when"): the daemon as a real process, Twilio's
webhooks signed with the library's own computation, replies through the real twilio client to the
loopback REST fake. An SMS and a WhatsApp question get automatic answers; a frustrated text
reaches the owner's queue and the owner's approval goes out by SMS; unsigned, duplicated and
opted-out traffic is refused, answered once and never answered.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from daemons import http_ok, start_daemon, wait_until
from fakes.twilio_api import FakeTwilio
from helpers import ROOT, write_settings
from servers import free_port
from sqlmodel import func, select
from twilio.request_validator import RequestValidator

from responder.core.db import Database
from responder.core.models import Draft, Message

SHOP = "+15550100000"
_sids = iter(range(1, 10_000))


def post(public: str, port: int, path: str, form: dict, token: str | None) -> int:
    data = urllib.parse.urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(public + path, form)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def text(sender: str, body: str, *, whatsapp: bool = False, sid: str | None = None) -> dict:
    prefix = "whatsapp:" if whatsapp else ""
    return {"MessageSid": sid or f"SM{next(_sids):032x}", "AccountSid": "AC", "From": prefix + sender,
            "To": prefix + SHOP, "Body": body, "NumMedia": "0"}


def sent_to(fake: FakeTwilio, number: str) -> list[dict]:
    return [c for c in list(fake.created) if c.get("To") in (number, f"whatsapp:{number}")]


def test_texts_through_the_daemon(tmp_path, monkeypatch, database_url):
    with FakeTwilio() as fake:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake.auth_token)
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        config = write_settings(tmp_path, database_url=database_url, web_port=port,
                                extra=f'[twilio]\naccount_sid = "{fake.account_sid}"\nsms_from = "{SHOP}"\n'
                                      f'whatsapp_from = "{SHOP}"\napi_base_url = "{fake.base_url}"\n'
                                      f'public_url = "{public}"\n')
        db = Database(database_url)
        proc = start_daemon(config, tmp_path / "daemon.log")
        try:
            wait_until(lambda: http_ok(port), 90, "the daemon's web server")
            token = fake.auth_token

            # An SMS and a WhatsApp question: automatic answers on the channel they came from.
            started = time.monotonic()
            assert post(public, port, "/twilio/sms", text("+14155550101", "How much is shipping?"), token) == 200
            wait_until(lambda: sent_to(fake, "+14155550101"), 30, "the SMS reply")
            sms_seconds = time.monotonic() - started
            [sms] = sent_to(fake, "+14155550101")
            assert sms["From"] == SHOP and "$7" in sms["Body"], sms
            assert sms["StatusCallback"] == f"{public}/twilio/status"
            assert post(public, port, "/twilio/whatsapp",
                        text("+14155550102", "What are your candles made of?", whatsapp=True), token) == 200
            wait_until(lambda: sent_to(fake, "+14155550102"), 30, "the WhatsApp reply")
            [wa] = sent_to(fake, "+14155550102")
            assert wa["To"] == "whatsapp:+14155550102" and wa["From"] == f"whatsapp:{SHOP}"
            assert "soy" in wa["Body"].lower() or "coconut" in wa["Body"].lower(), wa

            # Forged (unsigned or signed with another token): 403, nothing stored.
            assert post(public, port, "/twilio/sms", text("+14155550103", "hi"), None) == 403
            assert post(public, port, "/twilio/sms", text("+14155550103", "hi"), "not-the-token") == 403
            # Twilio retrying a webhook: the same MessageSid is stored and answered once.
            retry = text("+14155550104", "Do you ship to the UK?")
            assert post(public, port, "/twilio/sms", retry, token) == 200
            assert post(public, port, "/twilio/sms", retry, token) == 200
            wait_until(lambda: sent_to(fake, "+14155550104"), 30, "the reply to the retried webhook")

            # STOP is honoured: nothing more goes to that number.
            assert post(public, port, "/twilio/sms", text("+14155550105", "STOP"), token) == 200
            assert post(public, port, "/twilio/sms", text("+14155550105", "How much is shipping?"), token) == 200

            # A frustrated customer goes to the owner; the owner's approval is sent by SMS.
            angry = "THIS IS THE THIRD TIME I'M ASKING. WHERE IS MY ORDER??? This is ridiculous"
            assert post(public, port, "/twilio/sms", text("+14155550106", angry), token) == 200
            wait_until(lambda: _held(db, "+14155550106"), 30, "the frustrated text in the queue")
            draft_id = _held(db, "+14155550106")
            listed = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "queue", "list",
                                     "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
            assert draft_id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
            approve = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "queue",
                                      "approve", str(draft_id), "--text", "I'm so sorry, Maya here: your order "
                                      "ships today and I'll text you the tracking link."],
                                     capture_output=True, text=True, timeout=120, cwd=ROOT)
            assert approve.returncode == 0, approve.stdout + approve.stderr
            wait_until(lambda: any("Maya here" in c["Body"] for c in sent_to(fake, "+14155550106")), 30,
                       "the owner's approved reply by SMS")

            time.sleep(3)  # let anything that should not happen have its chance
            assert len(sent_to(fake, "+14155550104")) == 1
            assert sent_to(fake, "+14155550105") == []
            assert sent_to(fake, "+14155550103") == []
            assert len([c for c in sent_to(fake, "+14155550106") if "Maya here" in c["Body"]]) == 1
            with db.transaction() as session:
                assert session.exec(select(func.count()).select_from(Message).where(
                    Message.provider_id == retry["MessageSid"])).one() == 1
                assert session.exec(select(func.count()).select_from(Message).where(
                    Message.sender.like("%14155550103"))).one() == 0
            print(f"SMS webhook to reply created: {sms_seconds:.2f} s")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            db.dispose()


def _held(db, number: str) -> int | None:
    with db.transaction() as session:
        row = session.exec(select(Draft.id).join(Message, Message.id == Draft.message_id).where(
            Message.sender.like(f"%{number[1:]}"), Draft.status == "pending")).first()
    return row

"""Helpers for the tests that run the daemon as a user would: ``python run.py`` in a subprocess.

Shared by test_daemon, test_faults_db, test_multiprocess, test_owner_flow, test_twilio_flow and
test_web_security (no test module imports another).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from helpers import ROOT
from sqlmodel import col, func, select

from responder.core.models import MailboxCursor, Message, Outbox

QUESTIONS = ["How much is shipping?", "Can I return a candle I haven't used?", "Do you ship to the UK?",
             "What are your candles made of?", "Do you sell gift cards?", "Can I talk to a real person?",
             "What's the airspeed velocity of an unladen swallow?"]


def start_daemon(config, log_path, env: dict | None = None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def cursor_ready(db) -> bool:
    try:
        with db.transaction() as session:
            return session.exec(select(MailboxCursor)).first() is not None
    except Exception:
        return False  # not migrated yet


def all_done(db, total: int) -> bool:
    try:
        with db.transaction() as session:
            processed = session.exec(select(func.count()).select_from(Message).where(
                Message.direction == "in", Message.status == "processed")).one()
            waiting = session.exec(select(func.count()).select_from(Outbox).where(
                col(Outbox.status).in_(["queued", "retry"]))).one()
        return processed == total and waiting == 0
    except Exception:
        return False


def http_ok(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False

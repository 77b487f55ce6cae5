"""Evaluation: conversation cases through the same pipeline as live traffic, nothing sent.

Behind ``run.py eval`` and ``run.py ask``. Each case is a fresh conversation in its own
temporary database: every customer turn is stored as an inbound message (email turns as real
RFC 5322 messages, so parsing and the automated-mail rules run too), the clock is moved on by
``after_s`` (default 60 s) so rate limits see the real spacing, and the process job routes it.
A reply that would have gone out is marked sent instead, so it becomes thread history for the
next turn as if the customer had received it.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import uuid
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from sqlmodel import col, select

from responder.core.clock import clock, private_clock, utcnow
from responder.core.db import Database
from responder.core.models import Draft, Message, Outbox, OutboxKind, OutboxStatus
from responder.core.settings import Settings
from responder.intake.store import store_inbound_email, store_inbound_text
from responder.ops.context import Context
from responder.ops.jobs import process_pending
from responder.send import outbox

DEFAULT_GAP_S = 60.0


def load_cases(path: Path) -> list[dict]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                cases.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path.name} line {number}: not JSON ({exc})") from None
    return cases


def _email(turn_text: str, case: dict, settings: Settings, number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = case.get("from") or "customer@example.org"
    msg["To"] = settings.reply_address
    msg["Subject"] = case.get("subject") or ""
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<eval.{case.get('id', 'case')}.{number}.{uuid.uuid4().hex[:8]}@example.org>"
    msg.set_content(turn_text or "")
    return msg.as_bytes()


def _store_turn(session, case: dict, turn, settings: Settings, number: int) -> Message | None:
    channel = case.get("channel", "email")
    if isinstance(turn, dict) and "raw" in turn:
        raw = turn["raw"].encode() if isinstance(turn["raw"], str) else turn["raw"]
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        return store_inbound_email(session=session, raw=raw, mailbox="eval", uidvalidity=1, uid=number)
    text = turn.get("text", "") if isinstance(turn, dict) else str(turn)
    if channel == "email":
        return store_inbound_email(session=session, raw=_email(text, case, settings, number), mailbox="eval",
                                   uidvalidity=1, uid=number)
    default = "chat:eval-visitor" if channel == "chat" else "+15550100000"
    return store_inbound_text(session=session, channel=channel, sender=case.get("from") or default,
                              text=text, provider_id=f"eval-{number}-{uuid.uuid4().hex[:8]}")


def run_case(ctx: Context, case: dict) -> list[dict]:
    """Every customer turn of one case, as the results ``eval --json`` prints."""
    message_ids = []
    for number, turn in enumerate(case.get("turns") or [], 0):
        gap = turn.get("after_s", DEFAULT_GAP_S) if isinstance(turn, dict) else DEFAULT_GAP_S
        if number:
            clock.advance(seconds=float(gap))
        with ctx.db.transaction() as session:
            message = _store_turn(session, case, turn, ctx.settings, number + 1)
            message_ids.append(message.id if message else None)
        process_pending(ctx)
        _record_sends(ctx)
    # Messages held in a burst are answered once it is over.
    clock.advance(seconds=ctx.settings.routing.burst_window_s + 2)
    process_pending(ctx)
    _record_sends(ctx)
    return [_outcome(ctx, case, number, message_id) for number, message_id in enumerate(message_ids)]


def _record_sends(ctx: Context) -> None:
    """Replies that would go out now are marked sent, so they become thread history."""
    with ctx.db.transaction() as session:
        for row in session.exec(select(Outbox).where(col(Outbox.status) == OutboxStatus.QUEUED)).all():
            row.status, row.attempts = OutboxStatus.SENDING, 1
            session.flush()
            outbox.mark_sent(session=session, outbox_id=row.id, provider_id="eval")


def _outcome(ctx: Context, case: dict, number: int, message_id: int | None) -> dict:
    result = {"id": case.get("id"), "turn": number, "route": None, "reply": "", "confidence": None,
              "reasons": [], "sources": []}
    with ctx.db.transaction() as session:
        draft = session.exec(select(Draft).where(Draft.message_id == message_id)).first() if message_id else None
        if draft is None:
            message = session.get(Message, message_id) if message_id else None
            result["reasons"] = [message.last_error if message else "duplicate message: not stored twice"]
            return result
        result.update(route=draft.route, reply=draft.text, confidence=draft.confidence,
                      reasons=list(draft.reasons), sources=list(draft.sources))
        for row in session.exec(select(Outbox).where(Outbox.draft_id == draft.id, Outbox.kind == OutboxKind.HOLDING)).all():
            result["reply"] = row.body_text  # a handoff: the holding reply is what the customer saw
    return result


def run_cases(ctx: Context, cases: list[dict]) -> list[dict]:
    """Each case in a fresh database (so memory never crosses cases), on a frozen clock of its own
    (``private_clock``), so a daemon in the same process keeps its real database and time."""
    results = []
    with tempfile.TemporaryDirectory(prefix="deskhand-eval-") as folder, private_clock():
        for n, case in enumerate(cases):
            db = Database(f"sqlite:///{Path(folder) / f'case{n}.sqlite3'}")
            db.migrate()
            clock.freeze()
            try:
                # Nothing queues behind a case: it waits for the order source in line.
                results.extend(run_case(dataclasses.replace(ctx, db=db, orders=ctx.orders and ctx.orders.patient()),
                                        case))
            finally:
                clock.reset()
                db.dispose()
    return results


def check_expectations(case: dict, turns: list[dict]) -> list[str]:
    """Why a case fails its ``expect`` (routes, include, exclude), for the readable table."""
    expect = case.get("expect") or {}
    if not expect or not turns:
        return []
    if expect.get("turn") == "all":
        autos = sum(1 for t in turns if t["route"] == "auto")
        return [f"{autos} automatic replies (at most {expect.get('max_auto', 3)})"] \
            if autos > expect.get("max_auto", 3) else []
    last, problems = turns[-1], []
    if expect.get("routes") and last["route"] not in expect["routes"]:
        problems.append(f"route {last['route']}, expected {'/'.join(expect['routes'])}")
    if last["route"] == "auto":
        problems += [f"reply lacks /{x}/" for x in expect.get("include", [])
                     if not re.search(x, last["reply"] or "", re.I | re.M)]
        problems += [f"reply has /{x}/" for x in expect.get("exclude", [])
                     if re.search(x, last["reply"] or "", re.I | re.M)]
    return problems

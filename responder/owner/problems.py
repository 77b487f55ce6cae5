"""Problems: what went wrong and still waits for the owner, so that nothing waits forever.

Read by the digest (every morning, until dealt with), the web queue and ``run.py problems``:
- sends that failed or may not have gone out (outbox ``failed`` / ``unknown``), any age;
- messages quarantined after ``max_process_attempts`` failures, with their error;
- today's alerts (LLM budget spent, hourly cap, loop breaker; ``responder.decide.limits``).

The owner deals with an item by dismissing it ("I've handled it") or retrying it: a quarantined
message goes back to ``received`` (after a fix, say), a failed or unknown send back to
``queued``. Retrying an ``unknown`` send is the owner's explicit decision that it did not go out;
the daemon never makes it by itself. Every action is logged; helpers never commit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from responder.core.clock import utcnow
from responder.core.models import (
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
)

log = logging.getLogger("deskhand.problems")
SHOWN = 25  # per kind in the digest; the rest are counted


@dataclass
class Problem:
    kind: str          # send | message
    id: int
    who: str           # recipient or sender
    what: str          # "reply", "holding note", "notification"... or the message's subject
    status: str        # failed | unknown | quarantined
    error: str
    at: datetime
    channel: str


_KIND_LABEL = {OutboxKind.REPLY: "reply", OutboxKind.HOLDING: "holding note", OutboxKind.LINK_CODE: "sign-in code", OutboxKind.NOTIFY: "notification",
               OutboxKind.REMIND: "reminder", OutboxKind.CONFIRM: "confirmation", OutboxKind.DIGEST: "digest", OutboxKind.NOTIFY_SMS: "text to you"}


def _one_line(text: str | None, limit: int = 300) -> str:
    return " ".join((text or "no reason recorded").split())[:limit]


def _failed_sends():
    return select(Outbox).where(col(Outbox.status).in_([OutboxStatus.FAILED, OutboxStatus.UNKNOWN]),
                                col(Outbox.dismissed_at).is_(None))


def _quarantined():
    return select(Message).where(Message.status == MessageStatus.QUARANTINED, col(Message.dismissed_at).is_(None))


def open_problems(session: Session, *, limit: int = SHOWN) -> tuple[list[Problem], int]:
    """The oldest open problems of each kind (up to ``limit`` each) and how many there are in all."""
    sends = session.exec(_failed_sends().order_by(col(Outbox.id)).limit(limit)).all()
    messages = session.exec(_quarantined().order_by(col(Message.id)).limit(limit)).all()
    found = [Problem("send", o.id, o.recipient, _KIND_LABEL.get(o.kind, o.kind), o.status, _one_line(o.last_error),
                     o.created_at, o.channel) for o in sends]
    found += [Problem("message", m.id, m.sender, m.subject or (m.new_text or m.text)[:60], m.status,
                      _one_line(m.last_error), m.received_at, m.channel) for m in messages]
    return found, count_open(session)


def count_open(session: Session) -> int:
    sends = session.exec(select(func.count()).select_from(_failed_sends().subquery())).one()
    messages = session.exec(select(func.count()).select_from(_quarantined().subquery())).one()
    return int(sends) + int(messages)


def _row(session: Session, kind: str, problem_id: int):
    model = {"send": Outbox, "message": Message}.get(kind)
    row = session.get(model, problem_id) if model else None
    if row is None:
        raise LookupError(f"no {kind} {problem_id}")
    return row


def dismiss(session: Session, kind: str, problem_id: int, *, actor: str) -> None:
    row = _row(session, kind, problem_id)
    row.dismissed_at = utcnow()
    log.info("%s %s dismissed by %s", kind, problem_id, actor)


def retry(session: Session, kind: str, problem_id: int, *, actor: str) -> None:
    row = _row(session, kind, problem_id)
    if kind == "message":
        if row.status != MessageStatus.QUARANTINED:
            raise ValueError(f"message {problem_id} is {row.status}, not quarantined")
        row.status, row.attempts, row.next_attempt_at = MessageStatus.RECEIVED, 0, None
    else:
        if row.status not in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN):
            raise ValueError(f"send {problem_id} is {row.status}, not failed or unknown")
        row.status, row.attempts, row.next_attempt_at = OutboxStatus.QUEUED, 0, utcnow()
    row.dismissed_at = None
    log.info("%s %s retried by %s (was: %s)", kind, problem_id, actor, _one_line(row.last_error, 120))

"""The inbound spool: a verified Twilio webhook that arrives while the database is away is kept on
disk, answered 200, and stored when the database is back.

Twilio does not retry an inbound message webhook that failed (unless a Fallback URL is set), so
a 503 during a PostgreSQL restart would lose the customer's text. ``responder.web.twilio_hooks``
writes the checked record here instead (one JSON file per MessageSid, written to a temporary
name, flushed to disk and renamed, so a crash never leaves half a file); the daemon's process
job calls ``drain`` before each run and stores every file through the same idempotent path as
the webhook (unique MessageSid), then deletes it. A file that can't be read is moved to
``bad/`` with the reason logged, never retried forever. Each data folder has its own spool.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from channels.twilio.webhook import InboundText
from responder.core.clock import utcnow
from responder.core.settings import Settings
from responder.intake.store import store_record  # the webhook's own storing path

log = logging.getLogger("deskhand.spool")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def spool_dir(settings: Settings) -> Path:
    return settings.data_dir / "spool" / "twilio"


def keep(settings: Settings, record: InboundText, received_at: datetime | None = None) -> Path:
    """Write ``record`` durably; raises OSError when the disk can't take it either."""
    folder = spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_UNSAFE.sub('_', record.provider_id)[:80]}.json"
    data = {"record": asdict(record), "received_at": (received_at or utcnow()).isoformat()}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def waiting(settings: Settings) -> list[Path]:
    folder = spool_dir(settings)
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return []


def drain(ctx) -> int:
    """Store every spooled message (oldest first); returns how many were stored anew."""
    stored = 0
    for path in waiting(ctx.settings):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = InboundText(**data["record"])
            received_at = datetime.fromisoformat(data["received_at"])
        except FileNotFoundError:
            continue  # another daemon sharing this data folder took it
        except (ValueError, KeyError, TypeError) as exc:
            _set_aside(path, f"{type(exc).__name__}: {exc}")
            continue
        try:
            with ctx.db.transaction() as session:  # DatabaseUnavailable: left for the next run
                stored += store_record(session=session, record=record, received_at=received_at) is not None
        except IntegrityError:
            pass  # stored meanwhile (Twilio's own retry, or another daemon): nothing to add
        path.unlink(missing_ok=True)
    if stored:
        log.info("stored %d text(s) kept while the database was away", stored)
    return stored


def _set_aside(path: Path, why: str) -> None:
    bad = path.parent / "bad"
    bad.mkdir(exist_ok=True)
    os.replace(path, bad / path.name)
    log.error("spooled text %s could not be read (%s); moved to %s", path.name, why, bad)

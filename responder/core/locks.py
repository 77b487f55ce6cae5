"""Job locks: one process at a time for the mailbox poll and each scheduled job.

Runs around a job in the daemon (``responder.ops.daemon``). Several daemons may share one
PostgreSQL; queued work (messages to process, replies to send) is already shared safely by
``SELECT … FOR UPDATE SKIP LOCKED`` (``responder.core.db.claim``), but a mailbox poll, the digest,
the reminders or the retention purge must not run in two processes at once. Each takes a
PostgreSQL session-level advisory lock with ``pg_try_advisory_lock``: the process that gets it
runs the job, the others skip that run (the holder is doing the work). The lock lives on its own
connection held for the job's duration, so the job's transactions come and go beneath it, and
PostgreSQL drops it by itself when that connection ends, a SIGKILLed daemon included.

The migration at start-up waits for the same kind of lock instead of skipping: daemons started
together on a fresh database would otherwise race to create the same tables.

A lock is a courtesy, not the guarantee: if its connection dies mid-job (PostgreSQL restarted),
another process may start the same job while the first finishes. The unique constraints still
hold then (one row per IMAP UID and Message-ID, one digest per day, one reply per draft), so the
worst case is wasted work and a unique-constraint error in the log, never a message twice.

The key is a stable 64-bit hash of the job's name and the connection's schema (advisory locks
are per database, and two shops may live in two schemas of one database). SQLite means one
process on one file: there the lock is always granted.
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text

log = logging.getLogger("deskhand.locks")


def lock_key(name: str, schema: str = "") -> int:
    """The advisory lock key for ``name``: the same in every process and Python version."""
    digest = hashlib.blake2b(f"deskhand:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)  # PostgreSQL's bigint is signed


@contextmanager
def job_lock(db, name: str, *, wait: bool = False) -> Iterator[bool]:
    """Yields True when this process may run the job ``name`` now, False when another holds it.

    ``wait``: block until the holder is done instead (always yields True); for work every
    process must do, one after the other, such as migrating the schema at start-up.
    """
    if not db.is_postgres:
        yield True
        return
    conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        schema = conn.execute(text("SELECT current_schema()")).scalar() or ""
        key = lock_key(name, schema)
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            got = True
        else:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
    except BaseException:
        conn.close()
        raise
    try:
        yield got
    finally:
        if got:
            _unlock(conn, key, name)
        conn.close()


def _unlock(conn, key: int, name: str) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except Exception as exc:  # DBAPIError, or responder.core.db.DatabaseUnavailable made of one
        # The connection died under the job (PostgreSQL restarted, the network): the server
        # dropped the lock with it. Throw the connection away rather than back into the pool.
        log.warning("the lock for %s went with its database connection (%s)", name, exc)
        conn.invalidate()

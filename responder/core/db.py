"""Database access: the engine, one ``transaction()`` per unit of work, and migrations.

SQLite by default (WAL and a busy timeout, so the web pages can read while a job writes);
PostgreSQL by URL (``postgresql+psycopg://…``). Jobs and requests open one transaction around
each unit of work; helpers below them receive the session and never commit on their own.
Work is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (see ``claim``): on PostgreSQL several
daemons share the queue without a coordinator; SQLite ignores the clause, so there every
transaction starts with ``BEGIN IMMEDIATE`` and writers really are serialized.

A database that goes away (PostgreSQL restarting, a full disk, a read-only folder) raises
``DatabaseUnavailable``: the unit of work is rolled back and stays where it was (a message
``received``, a reply ``queued``), the jobs try again on their next run, and the log says so
once per outage, not once per attempt.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from responder.core.errors import ConfigError, DeskhandError

log = logging.getLogger("deskhand.db")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
REPEAT_WARNING_S = 300  # a database that keeps coming and going is a warning per 5 minutes at most
MIN_FREE_BYTES = 16 * 1024 * 1024  # below this a data folder counts as full: the index needs room too
# SQLite result codes (primary, the low byte) that mean "the storage is in trouble", not "bad SQL":
# BUSY/LOCKED after the busy timeout, READONLY, IOERR, FULL, CANTOPEN.
_SQLITE_STORAGE_CODES = {5: "busy", 6: "locked", 8: "read-only", 10: "I/O error", 13: "full", 14: "cannot open"}
# PostgreSQL SQLSTATE classes 08 (connection exception), 57 (operator intervention: shutdown,
# restart), 53 (insufficient resources: disk full, too many connections).
_PG_UNAVAILABLE_CLASSES = ("08", "57", "53")


class DatabaseUnavailable(DeskhandError):
    """The database cannot be reached or written right now; the unit of work was rolled back."""


def ensure_writable(folder: Path) -> None:
    """Refuse a data folder that cannot take a write, with one sentence naming it and what to do.

    Checked before the database is opened, so a read-only or full folder never ends in a
    half-migrated database or a traceback from deep inside SQLite.
    """
    folder = Path(folder)
    probe = folder / f".deskhand-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ConfigError(f"the data folder {folder} is full: free some space on its disk, or set "
                              f"[database] data_dir to a folder with room.") from None
        what = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable by this user",
                errno.EPERM: "is not writable by this user"}.get(exc.errno, f"cannot be written ({exc.strerror})")
        raise ConfigError(f"the data folder {folder} {what}: make it writable for the user running Deskhand, "
                          f"or set [database] data_dir to a folder it may write.") from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"the data folder {folder} is full ({free // 1024} KB free): free some space on its "
                          f"disk, or set [database] data_dir to a folder with room.")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(f"[database] url {url!r} is not a database URL.") from None
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            ensure_writable(Path(parsed.database).parent)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        where = parsed.database or ":memory:"
    elif backend == "postgresql":
        # connect_timeout: an unreachable host fails in seconds instead of hanging a job for minutes.
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5,
                               connect_args={"connect_timeout": 10})
        where = f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}"
    else:
        raise ConfigError(f"[database] url must be sqlite:/// or postgresql://, not {parsed.drivername}.")
    event.listen(engine, "handle_error", lambda ctx: _unavailable(ctx, where))
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite's own transaction handling opens a transaction only before INSERT/UPDATE/DELETE,
    # so reads ran outside any transaction (two workers could claim the same row) and a
    # migration's CREATE TABLEs committed one by one (a full disk left half a schema). Turn it
    # off; ``_sqlite_begin`` emits BEGIN itself (SQLAlchemy's documented pysqlite recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:
    """Every transaction takes the write lock up front (``BEGIN IMMEDIATE``), waiting up to the busy
    timeout for it. A deferred transaction that reads and then writes cannot wait: when another
    writer committed in between, SQLite answers "database is locked" at once (SQLITE_BUSY_SNAPSHOT).
    Savepoints nest inside this transaction, so an outer rollback undoes them, as on PostgreSQL.
    ``Database.read`` asks for a deferred transaction: a reader never waits for a writer (WAL)."""
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}")


def _unavailable(ctx, where: str) -> DatabaseUnavailable | None:
    """``handle_error`` hook: storage and connection failures become ``DatabaseUnavailable``."""
    if ctx.is_pre_ping:  # the pool's liveness check: SQLAlchemy reconnects by itself
        return None
    original = ctx.original_exception
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0][:200]
    if ctx.dialect.name == "sqlite":
        kind = _SQLITE_STORAGE_CODES.get((getattr(original, "sqlite_errorcode", None) or 0) & 0xFF)
        if kind is None:
            return None
        if kind not in ("busy", "locked"):
            _abandon_sqlite_transaction(ctx)
        if kind == "full":
            return DatabaseUnavailable(f"the disk holding {where} is full ({reason}): free some space")
        return DatabaseUnavailable(f"the database {where} cannot be written ({reason})")
    sqlstate = getattr(original, "sqlstate", None) or ""
    if ctx.is_disconnect or ctx.connection is None or sqlstate[:2] in _PG_UNAVAILABLE_CLASSES:
        return DatabaseUnavailable(f"{where} is unavailable ({reason})")
    return None


def _abandon_sqlite_transaction(ctx) -> None:
    """After a storage error SQLite may already have rolled the whole transaction back. Roll back
    now and drop the connection, rather than send ROLLBACK TO SAVEPOINT into a transaction that
    no longer exists. Explicitly: a closed connection whose failed statement is still referenced
    (from the traceback) lives on as a "zombie" that keeps the write lock until garbage collection."""
    ctx.is_disconnect, ctx.invalidate_pool_on_disconnect = True, False
    if ctx.connection is None or ctx.connection.invalidated:
        return
    cursor = getattr(ctx.execution_context, "cursor", None)
    dbapi_conn = ctx.connection.connection.dbapi_connection
    with contextlib.suppress(sqlite3.Error):  # best effort: the connection is dropped either way
        if cursor is not None:
            cursor.close()
        if dbapi_conn.in_transaction:
            dbapi_conn.rollback()


class WriterQueue:
    """SQLite's writers in this process, first come first served (re-entrant for the holder).

    SQLite has no queue of its own: a writer that finds the lock taken sleeps and tries again,
    and usually loses to a busy job that commits and begins its next transaction at once. At 50
    webhooks a second behind the process job, answers waited up to 5.7 s (bench/latency.py);
    in line here, a webhook waits for at most the transactions ahead of it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: collections.deque[int] = collections.deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            self._waiting.append(me)
            while self._owner is not None or self._waiting[0] != me:
                self._cond.wait()
            self._waiting.popleft()
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> "WriterQueue":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Database:
    """The engine plus the one way to open a unit of work."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        # Pages that only read use a deferred transaction on SQLite (see _sqlite_begin).
        self._reader = self.engine.execution_options(sqlite_begin="DEFERRED") if not self.is_postgres else self.engine
        self._down_since: float | None = None
        self._warned_at = -REPEAT_WARNING_S
        self._down_lock = threading.Lock()
        # PostgreSQL queues writers itself (row locks); SQLite's one write lock does not.
        self._writers = contextlib.nullcontext() if self.is_postgres else WriterQueue()
        event.listen(self.engine, "handle_error", self._noticed_failure)
        # A commit, not a new connection: SQLite connects fine to a full disk.
        event.listen(self.engine, "commit", self._noticed_success)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._writers, Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for pages and reports that only read: never committed (closing it ends the
        transaction; the rows read stay loaded)."""
        with Session(self._reader, expire_on_commit=False) as session:
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest migration (alembic upgrade head), all or nothing."""
        # start-up: alembic loads only when a schema is migrated
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()

    # One warning when the database goes away and one line when it is back: the jobs retry every
    # few seconds, and a line per retry would bury everything else in the log. A database that
    # keeps coming and going (a disk nearly full) warns again only after REPEAT_WARNING_S.
    def _noticed_failure(self, ctx) -> None:
        failure = getattr(ctx, "chained_exception", None)  # set only when a hook replaced the error
        if not isinstance(failure, DatabaseUnavailable):
            return
        now = time.monotonic()
        with self._down_lock:
            if self._down_since is not None or now - self._warned_at < REPEAT_WARNING_S:
                return
            self._down_since = self._warned_at = now
        log.warning("%s; the work waits in the database and resumes when it is back", failure)

    def _noticed_success(self, *_args) -> None:
        if self._down_since is None:
            return
        with self._down_lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("the database answers again after %.0f s; resuming", time.monotonic() - since)


def claim(query, db_session: Session, limit: int):
    """Rows of ``query`` locked for this worker; rows other workers hold are skipped."""
    return db_session.exec(query.limit(limit).with_for_update(skip_locked=True)).all()

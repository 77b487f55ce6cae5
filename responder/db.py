"""Database access: the engine, one ``transaction()`` per unit of work, and migrations.

SQLite by default (WAL and a busy timeout, so the web pages can read while a job writes);
PostgreSQL by URL (``postgresql+psycopg://…``). Jobs and requests open one transaction around
each unit of work; helpers below them receive the session and never commit on their own.
Work is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (see ``claim``): on PostgreSQL several
daemons share the queue without a coordinator; SQLite ignores the clause and serializes writers.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from responder.errors import ConfigError

log = logging.getLogger("deskhand.db")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(f"[database] url {url!r} is not a database URL.") from None
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "savepoint", _sqlite_begin_before_savepoint)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"[database] url must be sqlite:/// or postgresql://, not {parsed.drivername}.")
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_before_savepoint(conn, _name) -> None:
    """pysqlite opens a transaction only before the first INSERT/UPDATE/DELETE; a SAVEPOINT issued
    before that starts a transaction of its own, and releasing it COMMITS, so an outer rollback
    could not undo it. Open the real transaction first, so savepoints nest as on PostgreSQL."""
    dbapi = conn.connection.dbapi_connection
    if not dbapi.in_transaction:
        dbapi.execute("BEGIN")


class Database:
    """The engine plus the one way to open a unit of work."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def migrate(self) -> None:
        """Bring the schema to the newest migration (alembic upgrade head)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def claim(query, db_session: Session, limit: int):
    """Rows of ``query`` locked for this worker; rows other workers hold are skipped."""
    return db_session.exec(query.limit(limit).with_for_update(skip_locked=True)).all()

"""Shared pytest fixtures."""

from __future__ import annotations

from typing import Iterator

import pytest
from helpers import write_settings
from servers import Dovecot, SmtpCapture, require_dovecot

from responder.core.clock import clock
from responder.core.db import Database
from responder.core.settings import load_settings
from responder.ops.context import Context


# The suite runs on both cores (pytest-xdist). A worker sends each report to the controller as
# UTF-8, and a test of hostile input can log a lone surrogate ("\udcff" from undecodable bytes):
# such characters are written as escapes in the report instead of crashing the worker.
def _printable(text):
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(text, str) else text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.sections = [(_printable(title), _printable(content)) for title, content in report.sections]
    if isinstance(report.longrepr, str):
        report.longrepr = _printable(report.longrepr)


# =============================================================================
# Real mail servers (see tests/servers.py). No protocol is mocked.
#
#   dovecot                 fresh private Dovecot per test, plaintext IMAP,
#                           user shop@example.test / secret, empty INBOX
#   dovecot_tls             same, implicit TLS (IMAPS); client context:
#                           dovecot_tls.ssl_context()
#   smtp_capture            aiosmtpd capture, plaintext
#   smtp_capture_starttls   aiosmtpd capture, STARTTLS offered and required
#
# Missing Dovecot: the dovecot fixtures skip, or fail when CI=true.
# =============================================================================


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require_dovecot()
    with Dovecot() as server:
        yield server


@pytest.fixture
def dovecot_tls() -> Iterator[Dovecot]:
    require_dovecot()
    with Dovecot(tls=True) as server:
        yield server


@pytest.fixture
def smtp_capture() -> Iterator[SmtpCapture]:
    with SmtpCapture() as server:
        yield server


@pytest.fixture
def smtp_capture_starttls() -> Iterator[SmtpCapture]:
    with SmtpCapture(starttls=True) as server:
        yield server


# =============================================================================
# Databases: every test that takes `database_url` runs on SQLite and on PostgreSQL.
#
#   database_url   sqlite file in tmp_path, or a fresh schema on $TEST_DATABASE_URL
#                  (default: the local server, database `test`), dropped afterwards.
#
# PostgreSQL unreachable: those cases skip, or fail when CI=true.
# =============================================================================

import os  # noqa: E402
import uuid  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or PG_DEFAULT


def _pg_admin_connect():
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url())
    return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database, autocommit=True, connect_timeout=5)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deskhand.sqlite3'}"
        return
    try:
        admin = _pg_admin_connect()
    except Exception as exc:
        message = f"PostgreSQL at {postgres_url()} is not reachable ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url() else "?"
    try:
        yield f"{postgres_url()}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


# =============================================================================
# The shop and its clock
# =============================================================================

@pytest.fixture(autouse=True)
def _clock_reset():
    """Every test starts on real time: a test that froze or moved the clock can't leak it."""
    yield
    clock.reset()


@pytest.fixture
def shop_context(tmp_path, database_url):
    """``shop_context(extra="", **write_settings options) -> Context``: the sample shop's settings
    (``helpers.write_settings``) on the test database, migrated; no drafter or retriever."""
    made: list[Database] = []

    def make(extra: str = "", **kwargs) -> Context:
        settings = load_settings(write_settings(tmp_path, database_url=database_url, extra=extra, **kwargs))
        db = Database(database_url)
        db.migrate()
        made.append(db)
        return Context(settings=settings, db=db, drafter=None, retriever=None)
    yield make
    for db in made:
        db.dispose()

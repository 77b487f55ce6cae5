"""Migrations: upgrade from empty on both databases, and the models never drift from them."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import responder.core.models  # noqa: F401
from responder.core.db import Database


def test_upgrade_head_matches_the_models(database_url):
    db = Database(database_url)
    db.migrate()
    db.migrate()  # a second run is a no-op
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == [], f"models and migrations differ: {diff}"
    assert {"customer", "identity", "thread", "message", "draft", "outbox", "mailboxcursor"} <= tables
    db.dispose()

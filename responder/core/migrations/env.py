"""Alembic environment: runs on the connection that ``Database.migrate`` hands over."""
from alembic import context
from sqlmodel import SQLModel

import responder.core.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line: build an engine from -x url=…
    from responder.core.db import make_engine
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///data/deskhand.sqlite3")
    connection = make_engine(url).connect()

context.configure(connection=connection, target_metadata=target_metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()

"""Indexes for the counts made while routing every message: automatic replies per thread, per
sender and per hour (outbox), and today's model spend (draft). Without them each count read the
whole table, so routing slowed as the history grew (bench/backlog.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

INDEXES = [("ix_outbox_thread_created", "outbox", ["thread_id", "created_at"]),
           ("ix_outbox_recipient_created", "outbox", ["recipient", "created_at"]),
           ("ix_outbox_created_at", "outbox", ["created_at"]),
           ("ix_draft_created_at", "draft", ["created_at"])]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)

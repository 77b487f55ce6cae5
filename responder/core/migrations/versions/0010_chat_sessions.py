"""Site chat: one row per widget visitor (the hash of its token, its address, the email it left).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'chatsession',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('last_seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    op.create_index('ix_chatsession_token_hash', 'chatsession', ['token_hash'], unique=True)
    op.create_index('ix_chatsession_sender', 'chatsession', ['sender'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_chatsession_sender', table_name='chatsession')
    op.drop_index('ix_chatsession_token_hash', table_name='chatsession')
    op.drop_table('chatsession')

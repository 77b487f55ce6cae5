"""Order lookups: every check of who may hear about which order (the per-sender guess limit).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ordercheck',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('message_id', sa.Integer(), sa.ForeignKey('message.id'), nullable=True),
        sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column('order_number', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('intent', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )
    op.create_index('ix_ordercheck_sender_at', 'ordercheck', ['sender', 'at'])


def downgrade() -> None:
    op.drop_index('ix_ordercheck_sender_at', table_name='ordercheck')
    op.drop_table('ordercheck')

"""Cost and abuse limits: alerts told once, message fingerprints for the loop breaker, and the
owner's "dealt with it" mark on failed sends and quarantined messages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('dismissed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_index('ix_message_fingerprint', 'message', ['fingerprint'])
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dismissed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table(
        'alert',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.UniqueConstraint('kind', 'key', name='uq_alert_kind_key'),
    )
    op.create_index('ix_alert_created_at', 'alert', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_alert_created_at', table_name='alert')
    op.drop_table('alert')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('dismissed_at')
    op.drop_index('ix_message_fingerprint', table_name='message')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('dismissed_at')
        batch_op.drop_column('fingerprint')

"""SMS and WhatsApp: opt-outs per number, delivery status per sent text, customer links.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('identity', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opted_out_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_status', sqlmodel.sql.sqltypes.AutoString(length=16),
                                      nullable=False, server_default=''))
        batch_op.add_column(sa.Column('delivery_error', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    op.create_index('ix_outbox_provider_id', 'outbox', ['provider_id'])
    op.create_table(
        'customerlink',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('customer_id', sa.Integer(), sa.ForeignKey('customer.id'), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    op.create_index('ix_customerlink_customer_id', 'customerlink', ['customer_id'])


def downgrade() -> None:
    op.drop_index('ix_customerlink_customer_id', table_name='customerlink')
    op.drop_table('customerlink')
    op.drop_index('ix_outbox_provider_id', table_name='outbox')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('delivery_error')
        batch_op.drop_column('delivery_status')
    with op.batch_alter_table('identity', schema=None) as batch_op:
        batch_op.drop_column('opted_out_at')

"""Outbox rows have a kind (reply | holding); drafts keep the signals they were routed on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='reply'))
        batch_op.drop_constraint('uq_outbox_draft', type_='unique')
        batch_op.create_unique_constraint('uq_outbox_draft_kind', ['draft_id', 'kind'])
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signals', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.drop_column('signals')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint('uq_outbox_draft_kind', type_='unique')
        batch_op.create_unique_constraint('uq_outbox_draft', ['draft_id'])
        batch_op.drop_column('kind')

"""The owner's side: approval audit trail, feedback, single-use links, lessons, digests, LLM usage.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
import secrets

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('sent_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('edited', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('reminded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('no_match', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('llm_prompt_tokens', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('llm_completion_tokens', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('llm_cost', sa.Float(), nullable=False, server_default='0'))
    conn = op.get_bind()
    for (draft_id,) in conn.execute(sa.text("SELECT id FROM draft")).all():
        conn.execute(sa.text("UPDATE draft SET token = :t WHERE id = :i"),
                     {"t": secrets.token_urlsafe(18), "i": draft_id})
    op.create_index('ix_draft_token', 'draft', ['token'], unique=True)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('draft_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('body_html', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('extra', sa.JSON(), nullable=True))

    op.create_table(
        'draftevent',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('draft_id', sa.Integer(), sa.ForeignKey('draft.id'), nullable=False),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )
    op.create_index('ix_draftevent_draft_id', 'draftevent', ['draft_id'])
    op.create_table(
        'feedback',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('draft_id', sa.Integer(), sa.ForeignKey('draft.id'), nullable=False),
        sa.Column('thread_id', sa.Integer(), sa.ForeignKey('thread.id'), nullable=True),
        sa.Column('vote', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.UniqueConstraint('draft_id', name='uq_feedback_draft'),
    )
    op.create_table(
        'usedlink',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.UniqueConstraint('nonce', name='uq_usedlink_nonce'),
    )
    op.create_table(
        'lesson',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('draft_id', sa.Integer(), sa.ForeignKey('draft.id'), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('addition', sa.Text(), nullable=False),
        sa.Column('diff', sa.Text(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    op.create_index('ix_lesson_draft_id', 'lesson', ['draft_id'])
    op.create_table(
        'digest',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('day', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('draft_ids', sa.JSON(), nullable=True),
        sa.Column('outbox_id', sa.Integer(), sa.ForeignKey('outbox.id'), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.UniqueConstraint('day', name='uq_digest_day'),
    )
    op.create_index('ix_digest_token', 'digest', ['token'], unique=True)
    op.create_table(
        'ownersetting',
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), primary_key=True),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ('ownersetting', 'digest', 'lesson', 'usedlink', 'feedback', 'draftevent'):
        op.drop_table(table)
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('extra')
        batch_op.drop_column('body_html')
        batch_op.alter_column('draft_id', existing_type=sa.Integer(), nullable=False)
    op.drop_index('ix_draft_token', table_name='draft')
    with op.batch_alter_table('draft', schema=None) as batch_op:
        for column in ('llm_cost', 'llm_completion_tokens', 'llm_prompt_tokens', 'no_match', 'reminded_at',
                       'decided_by', 'edited', 'sent_text', 'token'):
            batch_op.drop_column(column)

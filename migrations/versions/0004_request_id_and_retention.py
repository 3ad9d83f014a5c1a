"""Carry the accepting request's id to the relay and workers; index what retention deletes.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE notification ADD COLUMN request_id text;
        CREATE INDEX outbox_event_dispatched_idx ON outbox_event (dispatched_at)
            WHERE status = 'DISPATCHED';
        CREATE INDEX audit_log_created_idx ON audit_log (created_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX audit_log_created_idx;
        DROP INDEX outbox_event_dispatched_idx;
        ALTER TABLE notification DROP COLUMN request_id;
        """
    )

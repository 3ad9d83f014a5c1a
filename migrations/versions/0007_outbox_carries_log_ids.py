"""The outbox row carries its notification id and request id, so the relay's claim reads one
table: joining delivery and notification for them cost a fifth of the relay's throughput.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE outbox_event ADD COLUMN notification_id uuid, ADD COLUMN request_id text;
        UPDATE outbox_event o SET notification_id = d.notification_id, request_id = n.request_id
        FROM delivery d JOIN notification n ON n.id = d.notification_id
        WHERE d.id = o.delivery_id AND o.status = 'PENDING';
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE outbox_event DROP COLUMN notification_id, DROP COLUMN request_id")

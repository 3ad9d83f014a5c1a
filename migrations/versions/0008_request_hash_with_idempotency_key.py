"""A notification's request hash is kept only when it came with an Idempotency-Key: the hash
exists to tell a replay from a key reused with another body, and computing it for every request
cost the API a canonical dump and a SHA-256 per accept (bench/RESULTS.md).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE notification ALTER COLUMN request_hash DROP NOT NULL,
            ADD CONSTRAINT notification_idempotent_has_hash
                CHECK (idempotency_key IS NULL OR request_hash IS NOT NULL)
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE notification SET request_hash = '' WHERE request_hash IS NULL;
        ALTER TABLE notification DROP CONSTRAINT notification_idempotent_has_hash,
            ALTER COLUMN request_hash SET NOT NULL
        """
    )

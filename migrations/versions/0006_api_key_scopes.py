"""Per-key scopes (send, read, admin) and rotation lineage.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE api_key
            ADD COLUMN scopes text[] NOT NULL DEFAULT '{send,read}',
            ADD COLUMN rotated_from uuid REFERENCES api_key (id),
            ADD CONSTRAINT api_key_scopes_known
                CHECK (scopes <@ ARRAY['send', 'read', 'admin']::text[]);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE api_key DROP CONSTRAINT api_key_scopes_known,
            DROP COLUMN rotated_from, DROP COLUMN scopes;
        """
    )

"""Per API key webhook signing secret.

Revision ID: 0002
Revises: 0001

Webhook deliveries are signed with HMAC-SHA256 under a secret that belongs to the API key that
submitted the notification. It is kept in plain text because signing needs it; it is generated
with the key and shown once. Keys issued before this revision have none: their webhook
deliveries fail with ``webhook_no_secret`` until a new key is issued.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE api_key ADD COLUMN webhook_secret text")


def downgrade() -> None:
    op.execute("ALTER TABLE api_key DROP COLUMN webhook_secret")

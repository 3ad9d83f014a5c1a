"""The in-app inbox: one item per IN_APP delivery, per user, with read and delete marks.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE inbox_item (
            id               uuid PRIMARY KEY,
            -- The user's position counter: cursors are positions, so "what came after the last
            -- item I saw" is one index range. Items of one user are inserted under a per-user
            -- lock (app/store/inbox.py), so their positions grow in commit order.
            seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            user_id          text NOT NULL,
            -- One item per delivery: a redelivered task finds the item instead of adding one.
            delivery_id      uuid NOT NULL UNIQUE REFERENCES delivery (id) ON DELETE CASCADE,
            notification_id  uuid NOT NULL,
            category         text NOT NULL,
            title            text,
            body             text NOT NULL,
            data             jsonb,
            created_at       timestamptz NOT NULL DEFAULT now(),
            read_at          timestamptz,
            -- Deleting hides the item but keeps the row, so a re-driven delivery cannot bring
            -- it back.
            deleted_at       timestamptz
        );
        CREATE INDEX inbox_item_user_idx ON inbox_item (user_id, seq) WHERE deleted_at IS NULL;
        CREATE INDEX inbox_item_unread_idx ON inbox_item (user_id, seq)
            WHERE read_at IS NULL AND deleted_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE inbox_item")

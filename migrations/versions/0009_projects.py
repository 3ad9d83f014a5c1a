"""Projects: every API key belongs to one, and every row written through a key carries it.

Existing rows go to the project ``default``. Idempotency keys become unique per project (a key
rotated mid-retry still finds its replay), and user ids per project: a device token, an inbox
and its positions belong to (project, user). The list's keyset index leads with the project, as
every list query now does.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE project (
            id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO project (id) VALUES ('default');

        -- A constant default fills existing rows without rewriting the table; dropping it
        -- afterwards makes every later INSERT name its project.
        ALTER TABLE api_key ADD COLUMN project_id text NOT NULL DEFAULT 'default'
            REFERENCES project (id);
        ALTER TABLE api_key ALTER COLUMN project_id DROP DEFAULT;
        CREATE INDEX api_key_project_idx ON api_key (project_id, created_at);

        ALTER TABLE notification ADD COLUMN project_id text NOT NULL DEFAULT 'default';
        ALTER TABLE notification ALTER COLUMN project_id DROP DEFAULT;
        ALTER TABLE notification DROP CONSTRAINT notification_api_key_id_idempotency_key_key;
        ALTER TABLE notification ADD CONSTRAINT notification_project_idempotency_key_key
            UNIQUE (project_id, idempotency_key);
        DROP INDEX notification_created_idx;
        CREATE INDEX notification_project_created_idx
            ON notification (project_id, created_at DESC, id DESC);

        ALTER TABLE push_device ADD COLUMN project_id text NOT NULL DEFAULT 'default';
        ALTER TABLE push_device ALTER COLUMN project_id DROP DEFAULT;
        ALTER TABLE push_device DROP CONSTRAINT push_device_platform_token_key;
        ALTER TABLE push_device ADD CONSTRAINT push_device_project_platform_token_key
            UNIQUE (project_id, platform, token);
        DROP INDEX push_device_user_idx;
        CREATE INDEX push_device_user_idx ON push_device (project_id, user_id);
        DROP INDEX push_device_token_idx;
        CREATE INDEX push_device_token_idx ON push_device (project_id, token);

        ALTER TABLE inbox_item ADD COLUMN project_id text NOT NULL DEFAULT 'default';
        ALTER TABLE inbox_item ALTER COLUMN project_id DROP DEFAULT;
        DROP INDEX inbox_item_user_idx;
        CREATE INDEX inbox_item_user_idx ON inbox_item (project_id, user_id, seq)
            WHERE deleted_at IS NULL;
        DROP INDEX inbox_item_unread_idx;
        CREATE INDEX inbox_item_unread_idx ON inbox_item (project_id, user_id, seq)
            WHERE read_at IS NULL AND deleted_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX inbox_item_unread_idx;
        DROP INDEX inbox_item_user_idx;
        CREATE INDEX inbox_item_user_idx ON inbox_item (user_id, seq) WHERE deleted_at IS NULL;
        CREATE INDEX inbox_item_unread_idx ON inbox_item (user_id, seq)
            WHERE read_at IS NULL AND deleted_at IS NULL;
        ALTER TABLE inbox_item DROP COLUMN project_id;

        DROP INDEX push_device_token_idx;
        DROP INDEX push_device_user_idx;
        ALTER TABLE push_device DROP CONSTRAINT push_device_project_platform_token_key;
        ALTER TABLE push_device DROP COLUMN project_id;
        ALTER TABLE push_device ADD CONSTRAINT push_device_platform_token_key
            UNIQUE (platform, token);
        CREATE INDEX push_device_user_idx ON push_device (user_id);
        CREATE INDEX push_device_token_idx ON push_device (token);

        DROP INDEX notification_project_created_idx;
        ALTER TABLE notification DROP CONSTRAINT notification_project_idempotency_key_key;
        ALTER TABLE notification DROP COLUMN project_id;
        ALTER TABLE notification ADD CONSTRAINT notification_api_key_id_idempotency_key_key
            UNIQUE (api_key_id, idempotency_key);
        CREATE INDEX notification_created_idx ON notification (created_at DESC, id DESC);

        DROP INDEX api_key_project_idx;
        ALTER TABLE api_key DROP COLUMN project_id;
        DROP TABLE project;
        """
    )

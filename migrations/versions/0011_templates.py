"""Templates and layouts: immutable versions per project and key; a notification pins the
version it was accepted with, and each delivery keeps the content rendered for its recipient.

``template`` holds one row per (project, kind, key): the latest version and whether it is
archived; ``template_version`` every version's content (JSON), never changed once written.
Templates and layouts share the two tables (``kind``), as they share their routes' rules.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE template (
            project_id      text NOT NULL REFERENCES project (id),
            kind            text NOT NULL CHECK (kind IN ('template', 'layout')),
            key             text NOT NULL,
            latest_version  integer NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            archived_at     timestamptz,
            PRIMARY KEY (project_id, kind, key)
        );
        CREATE TABLE template_version (
            project_id  text NOT NULL,
            kind        text NOT NULL,
            key         text NOT NULL,
            version     integer NOT NULL,
            content     jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (project_id, kind, key, version),
            FOREIGN KEY (project_id, kind, key) REFERENCES template (project_id, kind, key)
        );

        -- What a templated notification was accepted with: no body of its own, the template
        -- version (and its layout's) pinned, and the request's locale.
        ALTER TABLE notification ALTER COLUMN body DROP NOT NULL;
        ALTER TABLE notification ADD COLUMN template_key text;
        ALTER TABLE notification ADD COLUMN template_version integer;
        ALTER TABLE notification ADD COLUMN layout_version integer;
        ALTER TABLE notification ADD COLUMN locale text;

        -- The content rendered for the recipient, and the template locale it used: written
        -- before the first send, so every retry sends the same and GET shows what was sent.
        ALTER TABLE delivery ADD COLUMN rendered jsonb;
        ALTER TABLE delivery ADD COLUMN rendered_locale text;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE delivery DROP COLUMN rendered_locale;
        ALTER TABLE delivery DROP COLUMN rendered;
        ALTER TABLE notification DROP COLUMN locale;
        ALTER TABLE notification DROP COLUMN layout_version;
        ALTER TABLE notification DROP COLUMN template_version;
        ALTER TABLE notification DROP COLUMN template_key;
        UPDATE notification SET body = '' WHERE body IS NULL;
        ALTER TABLE notification ALTER COLUMN body SET NOT NULL;
        DROP TABLE template_version;
        DROP TABLE template;
        """
    )

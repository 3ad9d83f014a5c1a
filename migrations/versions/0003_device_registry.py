"""Device registry for PUSH, and the per-device result of every PUSH delivery.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE push_device (
            id                   uuid PRIMARY KEY,
            user_id              text NOT NULL,
            platform             text NOT NULL CHECK (platform IN ('fcm', 'apns')),
            token                text NOT NULL,
            -- FCM: the Firebase app; APNs: the bundle id, sent as apns-topic.
            app_id               text NOT NULL,
            locale               text,
            active               boolean NOT NULL DEFAULT true,
            deactivated_at       timestamptz,
            deactivation_reason  text,
            created_at           timestamptz NOT NULL DEFAULT now(),
            updated_at           timestamptz NOT NULL DEFAULT now(),
            -- A token identifies one app install; registering it again (for any user) moves it.
            UNIQUE (platform, token)
        );
        CREATE INDEX push_device_user_idx ON push_device (user_id);
        CREATE INDEX push_device_token_idx ON push_device (token);

        -- One row per device a PUSH delivery fans out to, written on its first attempt. A retry
        -- sends only to rows still PENDING or RETRYING; SENT, INVALID and FAILED are final.
        CREATE TABLE delivery_device (
            id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id          uuid NOT NULL REFERENCES delivery (id) ON DELETE CASCADE,
            -- NULL once the device is removed from the registry; the row stays as history.
            device_id            uuid REFERENCES push_device (id) ON DELETE SET NULL,
            platform             text NOT NULL,
            token_prefix         text NOT NULL,
            status               text NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'RETRYING', 'SENT', 'INVALID', 'FAILED')),
            attempts             integer NOT NULL DEFAULT 0,
            error_code           text,
            last_error           text,
            provider_message_id  text,
            updated_at           timestamptz NOT NULL DEFAULT now(),
            sent_at              timestamptz,
            UNIQUE (delivery_id, device_id)
        );
        CREATE INDEX delivery_device_device_idx ON delivery_device (device_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE delivery_device, push_device")

"""Initial schema: api_key, notification, delivery, outbox_event, audit_log.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_key (
            id          uuid PRIMARY KEY,
            name        text NOT NULL,
            -- SHA-256 of the whole key: keys are 256-bit random, so a fast hash is safe and
            -- lets the lookup be an index probe instead of a scan of slow password hashes.
            key_hash    bytea NOT NULL UNIQUE,
            key_prefix  text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );

        CREATE TABLE notification (
            id               uuid PRIMARY KEY,
            api_key_id       uuid NOT NULL REFERENCES api_key (id),
            idempotency_key  text,
            request_hash     bytea NOT NULL,
            type             text NOT NULL CHECK (type IN ('TRANSACTIONAL', 'MARKETING', 'SYSTEM')),
            priority         text NOT NULL CHECK (priority IN ('HIGH', 'NORMAL', 'LOW')),
            recipient_email  text,
            recipient_phone  text,
            user_id          text,
            device_tokens    jsonb,
            webhook_url      text,
            subject          text,
            body             text NOT NULL,
            html_body        text,
            data             jsonb,
            send_at          timestamptz,
            expires_at       timestamptz,
            created_at       timestamptz NOT NULL DEFAULT now(),
            UNIQUE (api_key_id, idempotency_key)
        );
        -- Keyset pagination of GET /notifications walks (created_at, id) backwards.
        CREATE INDEX notification_created_idx ON notification (created_at DESC, id DESC);

        CREATE TABLE delivery (
            id                   uuid PRIMARY KEY,
            notification_id      uuid NOT NULL REFERENCES notification (id) ON DELETE CASCADE,
            channel              text NOT NULL
                CHECK (channel IN ('EMAIL', 'PUSH', 'SMS', 'WEBHOOK', 'IN_APP')),
            status               text NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'QUEUED', 'SENDING', 'RETRYING',
                                  'SENT', 'FAILED', 'EXPIRED', 'CANCELLED')),
            attempts             integer NOT NULL DEFAULT 0,
            error_code           text,
            last_error           text,
            provider_message_id  text,
            next_attempt_at      timestamptz,
            created_at           timestamptz NOT NULL DEFAULT now(),
            updated_at           timestamptz NOT NULL DEFAULT now(),
            sent_at              timestamptz,
            UNIQUE (notification_id, channel)
        );
        -- The sweeper looks only at in-flight deliveries.
        CREATE INDEX delivery_in_flight_idx ON delivery (updated_at)
            WHERE status IN ('QUEUED', 'SENDING', 'RETRYING');

        CREATE TABLE outbox_event (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id    uuid NOT NULL REFERENCES delivery (id) ON DELETE CASCADE,
            channel        text NOT NULL,
            priority       smallint NOT NULL,
            available_at   timestamptz NOT NULL DEFAULT now(),
            status         text NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'DISPATCHED')),
            attempts       integer NOT NULL DEFAULT 0,
            created_at     timestamptz NOT NULL DEFAULT now(),
            dispatched_at  timestamptz
        );
        -- Serves the relay's claim: due PENDING rows, highest priority first, then oldest.
        -- Partial, so it stays small however many DISPATCHED rows await retention.
        CREATE INDEX outbox_event_claim_idx ON outbox_event (priority, available_at)
            WHERE status = 'PENDING';
        CREATE INDEX outbox_event_delivery_idx ON outbox_event (delivery_id);

        CREATE TABLE audit_log (
            id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            notification_id      uuid NOT NULL,
            delivery_id          uuid NOT NULL,
            channel              text NOT NULL,
            from_status          text NOT NULL,
            to_status            text NOT NULL,
            attempt              integer NOT NULL,
            error_code           text,
            error                text,
            provider_message_id  text,
            created_at           timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX audit_log_delivery_idx ON audit_log (delivery_id, id);

        -- Every delivery status change is audited by the database itself, so no code path can
        -- forget to; a statement-level trigger writes one INSERT per batched UPDATE.
        CREATE FUNCTION audit_delivery_status() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO audit_log (notification_id, delivery_id, channel, from_status, to_status,
                                   attempt, error_code, error, provider_message_id)
            SELECT n.notification_id, n.id, n.channel, o.status, n.status,
                   n.attempts, n.error_code, n.last_error, n.provider_message_id
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE o.status IS DISTINCT FROM n.status;
            RETURN NULL;
        END $$;

        CREATE TRIGGER delivery_status_audit AFTER UPDATE ON delivery
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION audit_delivery_status();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE audit_log, outbox_event, delivery, notification, api_key;
        DROP FUNCTION audit_delivery_status();
        """
    )

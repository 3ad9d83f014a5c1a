"""Recipients and consent: user profiles, categories, preferences, the suppression list, the
SKIPPED status, each notification's category and each delivery's resolved address.

Everything is per project, as since 0009. The worker's claim (app/store/deliveries.py) reads a
profile, its preference row, the category and the suppression list in the claim statement
itself, so consent costs no extra round trip per chunk.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE user_profile (
            project_id   text NOT NULL REFERENCES project (id),
            user_id      text NOT NULL,
            email        text,
            phone        text,
            name         text,
            locale       text,
            timezone     text,
            -- Both set or both NULL; read in ``timezone`` (UTC without one).
            quiet_start  time,
            quiet_end    time,
            data         jsonb,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (project_id, user_id),
            CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
        );

        CREATE TABLE category (
            project_id        text NOT NULL REFERENCES project (id),
            key               text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
            required          boolean NOT NULL DEFAULT false,
            -- The channels a user who said nothing receives this category on.
            default_channels  text[] NOT NULL,
            description       text,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (project_id, key)
        );

        -- One row per user: the claim reads it with one primary-key probe.
        -- channels: {"SMS": false}; categories: {"digest": false, "news": {"EMAIL": false}}.
        CREATE TABLE preference (
            project_id  text NOT NULL REFERENCES project (id),
            user_id     text NOT NULL,
            channels    jsonb NOT NULL DEFAULT '{}',
            categories  jsonb NOT NULL DEFAULT '{}',
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (project_id, user_id)
        );

        -- The key every comparison of addresses uses: an e-mail address with its domain
        -- case-folded, an E.164 number as given, hashed so that an entry outlives the erasure
        -- of its address (the hash stays; the address is set to NULL).
        CREATE FUNCTION address_key(channel text, address text) RETURNS bytea
        LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT AS $$
            SELECT sha256(convert_to(
                channel || ':' || CASE WHEN channel = 'EMAIL' AND position('@' IN address) > 0
                    THEN substring(address FROM '^(.*)@') || '@'
                         || lower(substring(address FROM '@([^@]*)$'))
                    ELSE address END, 'UTF8'))
        $$;

        CREATE TABLE suppression (
            project_id   text NOT NULL REFERENCES project (id),
            channel      text NOT NULL CHECK (channel IN ('EMAIL', 'SMS')),
            address_key  bytea NOT NULL,
            address      text,  -- NULL once the address's user was erased
            reason       text NOT NULL CHECK (reason IN ('bounce', 'complaint',
                                  'invalid_recipient', 'manual', 'unsubscribed')),
            delivery_id  uuid,  -- the delivery whose provider answer added it, if any
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (project_id, channel, address_key)
        );
        CREATE INDEX suppression_list_idx ON suppression (project_id, created_at DESC, address_key);

        -- The local end of a quiet-hours window holding ``at``, as a moment; NULL when ``at``
        -- is outside the window. Local wall-clock arithmetic in the zone, so a window across a
        -- DST change ends at its local end time (a spring-forward night is an hour shorter).
        CREATE FUNCTION quiet_hours_end(zone text, start_at time, end_at time, at timestamptz)
        RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE
                WHEN start_at IS NULL OR end_at IS NULL OR start_at = end_at THEN NULL
                WHEN start_at < end_at THEN CASE
                    WHEN l::time >= start_at AND l::time < end_at
                    THEN (l::date + end_at) AT TIME ZONE z END
                WHEN l::time >= start_at THEN (l::date + 1 + end_at) AT TIME ZONE z
                WHEN l::time < end_at THEN (l::date + end_at) AT TIME ZONE z
            END
            FROM (SELECT COALESCE(zone, 'UTC') AS z,
                         at AT TIME ZONE COALESCE(zone, 'UTC') AS l) AS local
        $$;

        ALTER TABLE notification ADD COLUMN category text;

        -- The address a delivery was sent to (resolved from the profile at claim time when
        -- the request named none): what a dead-address answer suppresses.
        ALTER TABLE delivery ADD COLUMN address text;
        ALTER TABLE delivery DROP CONSTRAINT delivery_status_check;
        ALTER TABLE delivery ADD CONSTRAINT delivery_status_check
            CHECK (status IN ('PENDING', 'QUEUED', 'SENDING', 'RETRYING',
                              'SENT', 'FAILED', 'EXPIRED', 'CANCELLED', 'SKIPPED'));

        -- A provider's answer that the address is dead suppresses it in the transaction that
        -- records the answer, whichever code path recorded it (as the audit trigger does).
        CREATE FUNCTION suppress_dead_addresses() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO suppression (project_id, channel, address_key, address, reason,
                                     delivery_id)
            SELECT n.project_id, d.channel, address_key(d.channel, d.address), d.address,
                   CASE d.error_code WHEN 'sms_21610' THEN 'unsubscribed'
                                     WHEN 'sms_21211' THEN 'invalid_recipient'
                                     WHEN 'sms_21614' THEN 'invalid_recipient'
                                     ELSE 'bounce' END,
                   d.id
            FROM new_rows d JOIN old_rows o ON o.id = d.id
            JOIN notification n ON n.id = d.notification_id
            WHERE d.status = 'FAILED' AND o.status <> 'FAILED' AND d.address IS NOT NULL
              AND d.error_code IN ('smtp_550', 'smtp_551', 'smtp_553',
                                   'sms_21211', 'sms_21614', 'sms_21610')
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$;

        CREATE TRIGGER delivery_dead_address_suppression AFTER UPDATE ON delivery
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION suppress_dead_addresses();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER delivery_dead_address_suppression ON delivery;
        DROP FUNCTION suppress_dead_addresses();
        UPDATE delivery SET status = 'FAILED' WHERE status = 'SKIPPED';
        ALTER TABLE delivery DROP CONSTRAINT delivery_status_check;
        ALTER TABLE delivery ADD CONSTRAINT delivery_status_check
            CHECK (status IN ('PENDING', 'QUEUED', 'SENDING', 'RETRYING',
                              'SENT', 'FAILED', 'EXPIRED', 'CANCELLED'));
        ALTER TABLE delivery DROP COLUMN address;
        ALTER TABLE notification DROP COLUMN category;
        DROP FUNCTION quiet_hours_end(text, time, time, timestamptz);
        DROP TABLE suppression, preference, category, user_profile;
        DROP FUNCTION address_key(text, text);
        """
    )

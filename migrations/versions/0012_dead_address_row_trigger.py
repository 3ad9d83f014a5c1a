"""The dead-address suppression as a row trigger with a WHEN clause.

Revision ID: 0012
Revises: 0011

0010's statement-level trigger built transition tables of every delivery UPDATE (each claim,
each recorded outcome, each sweep) to look for the few that failed on a dead address; a row
trigger whose WHEN clause PostgreSQL evaluates before calling any function costs the other
updates nothing.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_DEAD = "('smtp_550', 'smtp_551', 'smtp_553', 'sms_21211', 'sms_21614', 'sms_21610')"


def upgrade() -> None:
    op.execute(
        f"""
        DROP TRIGGER delivery_dead_address_suppression ON delivery;
        DROP FUNCTION suppress_dead_addresses();

        CREATE FUNCTION suppress_dead_address() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO suppression (project_id, channel, address_key, address, reason,
                                     delivery_id)
            SELECT n.project_id, NEW.channel, address_key(NEW.channel, NEW.address),
                   NEW.address,
                   CASE NEW.error_code WHEN 'sms_21610' THEN 'unsubscribed'
                                       WHEN 'sms_21211' THEN 'invalid_recipient'
                                       WHEN 'sms_21614' THEN 'invalid_recipient'
                                       ELSE 'bounce' END,
                   NEW.id
            FROM notification n WHERE n.id = NEW.notification_id
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$;

        CREATE TRIGGER delivery_dead_address_suppression AFTER UPDATE ON delivery
            FOR EACH ROW
            WHEN (NEW.status = 'FAILED' AND OLD.status <> 'FAILED' AND NEW.address IS NOT NULL
                  AND NEW.error_code IN {_DEAD})
            EXECUTE FUNCTION suppress_dead_address();
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP TRIGGER delivery_dead_address_suppression ON delivery;
        DROP FUNCTION suppress_dead_address();

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
              AND d.error_code IN {_DEAD}
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$;

        CREATE TRIGGER delivery_dead_address_suppression AFTER UPDATE ON delivery
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION suppress_dead_addresses();
        """
    )

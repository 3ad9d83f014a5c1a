"""The guarded delivery status transitions, each written once.

Statuses move forward only: every UPDATE names the statuses it may leave (``WHERE status IN``),
so a duplicate task, a re-driven task and a cancel racing each other cannot both win. Every
change is audited by the ``delivery_status_audit`` trigger (migration 0001).

    PENDING → QUEUED (relay) → SENDING (worker) → SENT | FAILED | RETRYING → SENDING …
    PENDING | QUEUED | RETRYING → CANCELLED (API) ; → EXPIRED | SKIPPED | FAILED no_address
    (worker, at claim) ; QUEUED → PENDING (worker, at claim: quiet hours, due again at their end)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from app.core.domain import DeliveryStatus, Priority

# Redis delivers at least once and the sweeper may re-drive, so two tasks can carry the same
# delivery id. Only the task whose UPDATE moves the row to SENDING may call the provider; the
# other finds no row and does nothing. A SENDING row older than the lease belongs to a worker
# that died mid-send and may be taken over. The submitting key's webhook secret comes back with
# the row, so a webhook worker signs without another query.
#
# Consent is judged here too, in the same statement, so it costs no round trip of its own and
# nothing refused is ever handed to a provider (first match wins):
#   expiresAt passed → EXPIRED (SKIPPED quiet_hours_expired if it was waiting out quiet hours);
#   EMAIL / SMS without an address in the request or the profile → FAILED no_address;
#   the address is on the suppression list → SKIPPED suppressed;
#   the user opted out (preferences apply unless SYSTEM, TRANSACTIONAL without a category, or a
#   required category) → SKIPPED preference_opt_out;
#   inside the user's quiet hours (EMAIL, SMS, PUSH; not HIGH, not SYSTEM) → back to PENDING
#   until the window ends, with an outbox event due then, or SKIPPED quiet_hours_expired when
#   expiresAt comes first.
# The address is taken from the profile when the request gave none, at every claim, so a
# corrected address is used by a retry; it is stored on the delivery (a dead-address answer
# suppresses it, migration 0010). The judging SELECT takes no lock: the UPDATE re-checks the
# status guard on the row it locks, so a racing task still cannot claim twice.
_CLAIM_FOR_SENDING = text(
    """
    WITH judged AS (
        SELECT d.id, x.address, x.quiet_end, x.opt_outable,
               CASE
                 WHEN n.expires_at <= now() THEN
                   CASE WHEN d.error_code = 'quiet_hours' THEN 'quiet_hours_expired'
                        ELSE 'expired' END
                 WHEN d.channel IN ('EMAIL', 'SMS') AND x.address IS NULL THEN 'no_address'
                 WHEN d.channel IN ('EMAIL', 'SMS') AND EXISTS (
                     SELECT 1 FROM suppression s
                     WHERE s.project_id = n.project_id AND s.channel = d.channel
                       AND s.address_key = address_key(d.channel, x.address)
                       -- An e-mail address that unsubscribed opted out: what cannot be opted
                       -- out of still goes to it (an SMS STOP is the carrier's block of all).
                       AND (s.reason <> 'unsubscribed' OR s.channel = 'SMS' OR x.opt_outable))
                   THEN 'suppressed'
                 WHEN x.opt_outable AND NOT COALESCE(
                     CAST(p.categories -> n.category ->> d.channel AS boolean),
                     CASE WHEN jsonb_typeof(p.categories -> n.category) = 'boolean'
                          THEN CAST(p.categories ->> n.category AS boolean) END,
                     CAST(p.channels ->> d.channel AS boolean),
                     d.channel = ANY(c.default_channels),
                     true)
                   THEN 'preference_opt_out'
                 WHEN x.quiet_end IS NOT NULL AND n.expires_at <= x.quiet_end
                   THEN 'quiet_hours_expired'
                 WHEN x.quiet_end IS NOT NULL THEN 'quiet_hours'
               END AS verdict
        FROM delivery d
        JOIN notification n ON n.id = d.notification_id
        LEFT JOIN user_profile u ON u.project_id = n.project_id AND u.user_id = n.user_id
        LEFT JOIN preference p ON p.project_id = n.project_id AND p.user_id = n.user_id
        LEFT JOIN category c ON c.project_id = n.project_id AND c.key = n.category
        CROSS JOIN LATERAL (
            SELECT CASE d.channel WHEN 'EMAIL' THEN COALESCE(n.recipient_email, u.email)
                                  WHEN 'SMS' THEN COALESCE(n.recipient_phone, u.phone)
                   END AS address,
                   n.type <> 'SYSTEM' AND (n.type = 'MARKETING' OR n.category IS NOT NULL)
                       AND NOT COALESCE(c.required, false) AS opt_outable,
                   CASE WHEN u.quiet_start IS NOT NULL AND n.priority <> 'HIGH'
                             AND n.type <> 'SYSTEM' AND d.channel IN ('EMAIL', 'SMS', 'PUSH')
                        THEN quiet_hours_end(u.timezone, u.quiet_start, u.quiet_end,
                                             COALESCE(CAST(:at AS timestamptz), now()))
                   END AS quiet_end
        ) x
        WHERE d.id = ANY(CAST(:ids AS uuid[]))
          AND (d.status IN ('PENDING', 'QUEUED', 'RETRYING')
               OR (d.status = 'SENDING' AND d.updated_at < now() - make_interval(secs => :lease)))
    ), claimed AS (
        UPDATE delivery d
        SET status = CASE WHEN j.verdict IS NULL THEN 'SENDING'
                          WHEN j.verdict = 'expired' THEN 'EXPIRED'
                          WHEN j.verdict = 'no_address' THEN 'FAILED'
                          WHEN j.verdict = 'quiet_hours' THEN 'PENDING'
                          ELSE 'SKIPPED' END,
            attempts = d.attempts + CASE WHEN j.verdict IS NULL THEN 1 ELSE 0 END,
            error_code = COALESCE(j.verdict, d.error_code),
            last_error = CASE j.verdict
                WHEN 'expired' THEN 'expiresAt passed before the delivery could be sent'
                WHEN 'quiet_hours_expired'
                  THEN 'expiresAt passes before the user''s quiet hours end'
                WHEN 'no_address' THEN 'no address: none in the request, none in the profile'
                WHEN 'suppressed' THEN 'the address is on the suppression list'
                WHEN 'preference_opt_out' THEN 'the user opted out of this'
                WHEN 'quiet_hours' THEN 'waiting for the end of the user''s quiet hours'
                ELSE d.last_error END,
            next_attempt_at = CASE WHEN j.verdict = 'quiet_hours' THEN j.quiet_end END,
            address = COALESCE(j.address, d.address),
            updated_at = now()
        FROM judged j
        WHERE d.id = j.id
          AND (d.status IN ('PENDING', 'QUEUED', 'RETRYING')
               OR (d.status = 'SENDING' AND d.updated_at < now() - make_interval(secs => :lease)))
        RETURNING d.id, d.status, d.attempts, d.channel, d.notification_id, d.error_code,
                  d.next_attempt_at, j.address, j.opt_outable, d.rendered, d.rendered_locale
    ), deferred AS (
        -- Quiet hours: due again when the window ends (the relay publishes it then).
        INSERT INTO outbox_event (delivery_id, channel, priority, available_at, notification_id,
                                  request_id)
        SELECT cl.id, cl.channel, array_position(CAST(:priority_order AS text[]), n.priority) - 1,
               cl.next_attempt_at, n.id, n.request_id
        FROM claimed cl JOIN notification n ON n.id = cl.notification_id
        WHERE cl.status = 'PENDING'
    )
    SELECT cl.id, cl.status, cl.attempts, cl.channel, cl.notification_id, n.project_id, n.type,
           n.priority, n.category, cl.opt_outable,
           CASE WHEN cl.channel = 'EMAIL' THEN cl.address ELSE n.recipient_email
           END AS recipient_email,
           CASE WHEN cl.channel = 'SMS' THEN cl.address ELSE n.recipient_phone
           END AS recipient_phone,
           n.user_id, n.device_tokens, n.webhook_url,
           n.subject, n.body, n.html_body, n.data, n.created_at, n.request_id,
           cl.error_code, cl.next_attempt_at, k.webhook_secret,
           n.template_key, n.template_version, n.layout_version, n.locale, cl.rendered,
           cl.rendered_locale,
           -- An email the recipient may opt out of, sent to an address alone: its
           -- unsubscribe link names the address by this key (app/core/unsubscribe.py).
           CASE WHEN cl.status = 'SENDING' AND cl.channel = 'EMAIL' AND cl.opt_outable
                     AND n.user_id IS NULL
                THEN address_key(cl.channel, cl.address) END AS address_key
    FROM claimed cl
    JOIN notification n ON n.id = cl.notification_id
    JOIN api_key k ON k.id = n.api_key_id
    """
)

# Records outcomes (the worker records each one as soon as the provider answered it). Only the
# holder of SENDING may record; a late success also wins over the sweeper's RETRYING, because
# the provider did accept it. A SENT delivery keeps no error of an earlier attempt: the audit
# log has those.
_RECORD_OUTCOMES = text(
    """
    UPDATE delivery d
    SET status = v.status,
        provider_message_id = COALESCE(v.provider_message_id, d.provider_message_id),
        error_code = v.error_code,
        last_error = CASE WHEN v.status = 'SENT' THEN NULL
                          ELSE COALESCE(v.error, d.last_error) END,
        next_attempt_at = CASE WHEN v.status = 'RETRYING'
                               THEN now() + make_interval(secs => v.delay) END,
        sent_at = CASE WHEN v.status = 'SENT' THEN now() END,
        updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]),
                CAST(:provider_message_ids AS text[]), CAST(:error_codes AS text[]),
                CAST(:errors AS text[]), CAST(:delays AS float8[]))
         AS v(id, status, provider_message_id, error_code, error, delay)
    WHERE d.id = v.id
      AND (d.status = 'SENDING' OR (v.status = 'SENT' AND d.status = 'RETRYING'))
    RETURNING d.id, d.status
    """
)

# The lease of deliveries a live worker is still sending: the sweeper leaves a SENDING row alone
# until its updated_at is a lease old. Only the attempt the worker claimed is renewed.
_RENEW_LEASES = text(
    """
    UPDATE delivery d
    SET updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS v(id, attempt)
    WHERE d.id = v.id AND d.status = 'SENDING' AND d.attempts = v.attempt
    """
)

_CANCEL = text(
    """
    UPDATE delivery
    SET status = 'CANCELLED', error_code = 'cancelled', last_error = 'cancelled by the caller',
        next_attempt_at = NULL, updated_at = now()
    WHERE notification_id = :notification_id AND status IN ('PENDING', 'QUEUED', 'RETRYING')
    RETURNING id
    """
)

# Re-drives deliveries that the broker or a worker lost: anything in flight past its lease gets
# a fresh outbox row. A SENDING row past its lease means its worker died mid-send: that attempt
# counts as a retryable failure (or the final failure once attempts are used up). Renewing
# updated_at is the lease: the same delivery is not re-driven again before another lease passes.
_SWEEP = text(
    """
    WITH stale AS (
        SELECT id FROM delivery
        WHERE status IN ('QUEUED', 'SENDING', 'RETRYING')
          AND GREATEST(updated_at, COALESCE(next_attempt_at, updated_at))
              < now() - make_interval(secs => :lease)
        ORDER BY updated_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), swept AS (
        UPDATE delivery d
        SET status = CASE WHEN d.status <> 'SENDING' THEN d.status
                          WHEN d.attempts >= :max_attempts THEN 'FAILED'
                          ELSE 'RETRYING' END,
            error_code = CASE WHEN d.status = 'SENDING' THEN 'worker_lost' ELSE d.error_code END,
            last_error = CASE WHEN d.status = 'SENDING'
                              THEN 'worker stopped mid-send; lease expired'
                              ELSE d.last_error END,
            next_attempt_at = NULL,
            updated_at = now()
        FROM stale WHERE d.id = stale.id
        RETURNING d.id, d.status, d.channel, d.notification_id
    )
    INSERT INTO outbox_event (delivery_id, channel, priority, notification_id, request_id)
    SELECT s.id, s.channel, array_position(CAST(:priority_order AS text[]), n.priority) - 1,
           n.id, n.request_id
    FROM swept s JOIN notification n ON n.id = s.notification_id
    WHERE s.status <> 'FAILED'
    RETURNING delivery_id
    """
)

# Caps on what a provider or a receiver sent back, so one answer cannot bloat a row, the audit
# log or an API page.
MAX_ERROR_CHARS = 1000
MAX_CODE_CHARS = 100
MAX_PROVIDER_ID_CHARS = 300

PRIORITY_ORDER = sorted((p.value for p in Priority), key=lambda p: Priority(p).rank)


@dataclass(frozen=True)
class DeliveryResult:
    """What the worker learned about one delivery, ready to be recorded."""

    delivery_id: uuid.UUID
    status: DeliveryStatus
    provider_message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retry_in_seconds: float | None = None


def storable(value: str | None, limit: int) -> str | None:
    """``value`` as a PostgreSQL ``text`` column takes it, whoever wrote it: NUL (which text
    refuses) and unpaired surrogates (which UTF-8 cannot encode) replaced, at most ``limit``
    characters. Everything a provider or a receiver says passes here before it is stored."""
    if value is None:
        return None
    clean = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def claim_for_sending(
    conn: Connection,
    delivery_ids: Sequence[uuid.UUID | str],
    lease_seconds: float,
    *,
    at: datetime | None = None,
) -> list[Any]:
    """Rows this task now owns (status SENDING) or has just settled at claim (EXPIRED, FAILED
    ``no_address``, SKIPPED) or deferred past quiet hours (PENDING). Quiet hours are judged at
    ``at``, the database's ``now()`` unless given (tests set the clock so)."""
    params = {
        "ids": [str(i) for i in delivery_ids],
        "lease": lease_seconds,
        "at": at,
        "priority_order": PRIORITY_ORDER,
    }
    return list(conn.execute(_CLAIM_FOR_SENDING, params))


def record_outcomes(conn: Connection, outcomes: Sequence[DeliveryResult]) -> dict[uuid.UUID, str]:
    """Record outcomes in one statement; returns the statuses that were applied. What came
    from outside is made storable here, so recording cannot fail on a provider's answer."""
    if not outcomes:
        return {}
    rows = conn.execute(
        _RECORD_OUTCOMES,
        {
            "ids": [str(o.delivery_id) for o in outcomes],
            "statuses": [o.status.value for o in outcomes],
            "provider_message_ids": [
                storable(o.provider_message_id, MAX_PROVIDER_ID_CHARS) for o in outcomes
            ],
            "error_codes": [storable(o.error_code, MAX_CODE_CHARS) for o in outcomes],
            "errors": [storable(o.error, MAX_ERROR_CHARS) for o in outcomes],
            "delays": [o.retry_in_seconds or 0.0 for o in outcomes],
        },
    )
    return {row.id: row.status for row in rows}


def renew_leases(conn: Connection, held: Sequence[tuple[uuid.UUID, int]]) -> int:
    """Renew the lease of each (delivery id, attempt) still SENDING; returns how many."""
    if not held:
        return 0
    ids = [str(delivery_id) for delivery_id, _ in held]
    attempts = [attempt for _, attempt in held]
    return conn.execute(_RENEW_LEASES, {"ids": ids, "attempts": attempts}).rowcount


def cancel(conn: Connection, notification_id: uuid.UUID) -> list[uuid.UUID]:
    return [row.id for row in conn.execute(_CANCEL, {"notification_id": str(notification_id)})]


def sweep(conn: Connection, *, lease_seconds: float, max_attempts: int, limit: int) -> int:
    """Re-drive up to ``limit`` stale deliveries through the outbox; returns how many."""
    rows = conn.execute(
        _SWEEP,
        {
            "lease": lease_seconds,
            "max_attempts": max_attempts,
            "limit": limit,
            "priority_order": PRIORITY_ORDER,
        },
    )
    return len(rows.all())


# A templated delivery's content, rendered by the worker that holds it (tasks/rendering.py)
# before its first send; never replaced, so every later attempt sends what the first did.
_STORE_RENDERED = text(
    """
    UPDATE delivery d
    SET rendered = v.rendered, rendered_locale = v.locale
    FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:locales AS text[]),
                CAST(:rendered AS jsonb[])) AS v(id, attempt, locale, rendered)
    WHERE d.id = v.id AND d.status = 'SENDING' AND d.attempts = v.attempt AND d.rendered IS NULL
    """
)


def store_rendered(
    conn: Connection, rendered: Sequence[tuple[uuid.UUID, int, str | None, str]]
) -> int:
    """Store each (delivery id, attempt held, locale, content as JSON) on its delivery, if that
    attempt still holds it and nothing was stored yet; returns how many were stored."""
    if not rendered:
        return 0
    ids, attempts, locales, contents = (list(column) for column in zip(*rendered, strict=True))
    params = {
        "ids": [str(i) for i in ids],
        "attempts": attempts,
        "locales": locales,
        "rendered": contents,
    }
    return conn.execute(_STORE_RENDERED, params).rowcount

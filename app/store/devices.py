"""The PUSH device registry and each PUSH delivery's devices: every SQL statement on
``push_device`` and ``delivery_device``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

TOKEN_PREFIX_LENGTH = 8

_COLUMNS = f"""id, user_id, platform, left(token, {TOKEN_PREFIX_LENGTH}) AS token_prefix, app_id,
              locale, active, deactivated_at, deactivation_reason, created_at, updated_at"""

# A token identifies one app install, so (project, platform, token) is the key: registering it again
# updates it, moves it to this user (a different account signed in on the device) and
# re-activates it (the app obtained it afresh, so it is no longer known to be dead).
_UPSERT = text(
    f"""
    INSERT INTO push_device (id, project_id, user_id, platform, token, app_id, locale)
    VALUES (:id, :project_id, :user_id, :platform, :token, :app_id, :locale)
    ON CONFLICT (project_id, platform, token) DO UPDATE
    SET user_id = EXCLUDED.user_id, app_id = EXCLUDED.app_id, locale = EXCLUDED.locale,
        active = true, deactivated_at = NULL, deactivation_reason = NULL, updated_at = now()
    RETURNING {_COLUMNS}, (xmax = 0) AS created
    """
)


@dataclass(frozen=True)
class Registered:
    device: dict[str, Any]
    created: bool


def register(
    conn: Connection,
    project_id: str,
    user_id: str,
    *,
    platform: str,
    token: str,
    app_id: str,
    locale: str | None,
) -> Registered:
    params = {
        "id": str(uuid.uuid4()),
        "project_id": project_id,
        "user_id": user_id,
        "platform": platform,
        "token": token,
        "app_id": app_id,
        "locale": locale,
    }
    row = conn.execute(_UPSERT, params).one()
    return Registered(_as_view(row), created=bool(row.created))


def list_for_user(conn: Connection, project_id: str, user_id: str) -> list[dict[str, Any]]:
    """Every device of the user, active or not, oldest first."""
    rows = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM push_device"
            " WHERE project_id = :project_id AND user_id = :user_id ORDER BY created_at, id"
        ),
        {"project_id": project_id, "user_id": user_id},
    )
    return [_as_view(row) for row in rows]


def remove(conn: Connection, project_id: str, user_id: str, device_id: uuid.UUID) -> bool:
    """Remove one of the user's devices; False if the user has no such device."""
    removed = conn.execute(
        text(
            "DELETE FROM push_device"
            " WHERE id = :id AND project_id = :project_id AND user_id = :user_id RETURNING id"
        ),
        {"id": str(device_id), "project_id": project_id, "user_id": user_id},
    ).first()
    return removed is not None


def unusable_tokens(conn: Connection, project_id: str, tokens: Sequence[str]) -> set[str]:
    """The tokens that are not an active registered device of the project, of any platform."""
    usable = conn.scalars(
        text(
            "SELECT token FROM push_device"
            " WHERE project_id = :project_id AND token = ANY(:tokens) AND active"
        ),
        {"project_id": project_id, "tokens": list(tokens)},
    )
    return set(tokens) - set(usable)


# Fixes a delivery's devices on its first attempt only (NOT EXISTS), so a device registered
# later does not join a retry. Explicit tokens include deactivated devices, so the caller sees
# why they were skipped; a user's deactivated devices are simply not theirs any more.
_FAN_OUT = text(
    f"""
    INSERT INTO delivery_device (delivery_id, device_id, platform, token_prefix)
    SELECT :delivery_id, p.id, p.platform, left(p.token, {TOKEN_PREFIX_LENGTH})
    FROM push_device p
    WHERE NOT EXISTS (SELECT 1 FROM delivery_device WHERE delivery_id = :delivery_id)
      AND p.project_id = :project_id
      AND CASE WHEN CAST(:tokens AS text[]) IS NULL THEN p.user_id = :user_id AND p.active
               ELSE p.token = ANY(CAST(:tokens AS text[])) END
    ORDER BY p.created_at, p.id
    ON CONFLICT (delivery_id, device_id) DO NOTHING
    """
)

_TARGETS = text(
    """
    SELECT dd.id, dd.device_id, dd.status, dd.error_code, dd.last_error, dd.provider_message_id,
           p.platform, p.token, p.app_id, p.locale, p.active
    FROM delivery_device dd LEFT JOIN push_device p ON p.id = dd.device_id
    WHERE dd.delivery_id = :delivery_id
    ORDER BY dd.id
    """
)

# Only rows still open are written: a late duplicate of an attempt cannot undo a final result.
_RECORD = text(
    """
    UPDATE delivery_device dd
    SET status = v.status,
        attempts = dd.attempts + v.tried,
        error_code = v.error_code,
        last_error = COALESCE(v.error, dd.last_error),
        provider_message_id = COALESCE(v.provider_message_id, dd.provider_message_id),
        sent_at = CASE WHEN v.status = 'SENT' THEN now() ELSE dd.sent_at END,
        updated_at = now()
    FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:tried AS int[]),
                CAST(:error_codes AS text[]), CAST(:errors AS text[]),
                CAST(:provider_message_ids AS text[]))
         AS v(id, status, tried, error_code, error, provider_message_id)
    WHERE dd.id = v.id AND dd.status IN ('PENDING', 'RETRYING')
    """
)

_DEACTIVATE = text(
    """
    UPDATE push_device p
    SET active = false, deactivated_at = now(), deactivation_reason = v.reason, updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS v(id, reason)
    WHERE p.id = v.id AND p.active
    """
)


def delivery_targets(
    conn: Connection,
    project_id: str,
    delivery_id: uuid.UUID,
    user_id: str | None,
    tokens: Sequence[str] | None,
) -> list[Any]:
    """The devices of one PUSH delivery with their results so far; fixed on its first call."""
    conn.execute(
        _FAN_OUT,
        {
            "delivery_id": str(delivery_id),
            "project_id": project_id,
            "user_id": user_id,
            "tokens": list(tokens or []) or None,
        },
    )
    return list(conn.execute(_TARGETS, {"delivery_id": str(delivery_id)}))


def record_results(
    conn: Connection,
    *,
    row_ids: Sequence[int],
    statuses: Sequence[str],
    tried: Sequence[int],
    error_codes: Sequence[str | None],
    errors: Sequence[str | None],
    provider_message_ids: Sequence[str | None],
) -> None:
    """One attempt's result for each of a delivery's devices, in one statement."""
    conn.execute(
        _RECORD,
        {
            "ids": list(row_ids),
            "statuses": list(statuses),
            "tried": list(tried),
            "error_codes": list(error_codes),
            "errors": list(errors),
            "provider_message_ids": list(provider_message_ids),
        },
    )


def deactivate(
    conn: Connection, device_ids: Sequence[uuid.UUID], reasons: Sequence[str | None]
) -> None:
    """Devices whose token the platform reported dead: never tried again."""
    conn.execute(_DEACTIVATE, {"ids": [str(i) for i in device_ids], "reasons": list(reasons)})


def _as_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "userId": row.user_id,
        "platform": row.platform,
        "tokenPrefix": row.token_prefix,
        "appId": row.app_id,
        "locale": row.locale,
        "active": row.active,
        "deactivatedAt": row.deactivated_at,
        "deactivationReason": row.deactivation_reason,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }

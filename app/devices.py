"""The PUSH device registry: what the API does to ``push_device``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from app.db import transaction
from app.schemas import DeviceRegistration

TOKEN_PREFIX_LENGTH = 8

_COLUMNS = f"""id, user_id, platform, left(token, {TOKEN_PREFIX_LENGTH}) AS token_prefix, app_id,
              locale, active, deactivated_at, deactivation_reason, created_at, updated_at"""

# A token identifies one app install, so (platform, token) is the key: registering it again
# updates it, moves it to this user (a different account signed in on the device) and
# re-activates it (the app obtained it afresh, so it is no longer known to be dead).
_UPSERT = text(
    f"""
    INSERT INTO push_device (id, user_id, platform, token, app_id, locale)
    VALUES (:id, :user_id, :platform, :token, :app_id, :locale)
    ON CONFLICT (platform, token) DO UPDATE
    SET user_id = EXCLUDED.user_id, app_id = EXCLUDED.app_id, locale = EXCLUDED.locale,
        active = true, deactivated_at = NULL, deactivation_reason = NULL, updated_at = now()
    RETURNING {_COLUMNS}, (xmax = 0) AS created
    """
)


@dataclass(frozen=True)
class Registered:
    device: dict[str, Any]
    created: bool


def register(engine: Engine, user_id: str, registration: DeviceRegistration) -> Registered:
    params = {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "platform": registration.platform.value,
        "token": registration.token,
        "app_id": registration.app_id,
        "locale": registration.locale,
    }
    with transaction(engine) as conn:
        row = conn.execute(_UPSERT, params).one()
    return Registered(_as_view(row), created=bool(row.created))


def list_for_user(engine: Engine, user_id: str) -> list[dict[str, Any]]:
    """Every device of the user, active or not, oldest first."""
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM push_device WHERE user_id = :user_id"
                " ORDER BY created_at, id"
            ),
            {"user_id": user_id},
        )
        return [_as_view(row) for row in rows]


def remove(engine: Engine, user_id: str, device_id: uuid.UUID) -> bool:
    """Remove one of the user's devices; False if the user has no such device."""
    with transaction(engine) as conn:
        removed = conn.execute(
            text("DELETE FROM push_device WHERE id = :id AND user_id = :user_id RETURNING id"),
            {"id": str(device_id), "user_id": user_id},
        ).first()
    return removed is not None


def unusable_tokens(engine: Engine, tokens: Sequence[str]) -> set[str]:
    """The tokens that are not an active registered device of any platform."""
    with transaction(engine) as conn:
        usable = conn.scalars(
            text("SELECT token FROM push_device WHERE token = ANY(:tokens) AND active"),
            {"tokens": list(tokens)},
        )
        return set(tokens) - set(usable)


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

"""User profiles and their erasure: every SQL statement on ``user_profile``, and the erasure of
everything a user left in other tables (each of those tables' rows are the user's alone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, text

# The profile fields a write may carry, as columns (``quiet_hours`` is the two quiet_* ones).
FIELDS = ("email", "phone", "name", "locale", "timezone", "quiet_hours", "data")

_COLUMNS = """user_id, email, phone, name, locale, timezone,
              to_char(quiet_start, 'HH24:MI') AS quiet_start,
              to_char(quiet_end, 'HH24:MI') AS quiet_end, data, created_at, updated_at"""

_ITEMS = """
    SELECT * FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS v(
        user_id text, present text[], replace boolean, email text, phone text, name text,
        locale text, timezone text, quiet_start time, quiet_end time, data jsonb)
"""

# New users: a merge into nothing is the fields given (data without its null-valued keys).
_INSERT = text(
    f"""
    INSERT INTO user_profile (project_id, user_id, email, phone, name, locale, timezone,
                              quiet_start, quiet_end, data)
    SELECT :project_id, v.user_id, v.email, v.phone, v.name, v.locale, v.timezone,
           v.quiet_start, v.quiet_end,
           CASE WHEN v.replace OR v.data IS NULL THEN v.data
                ELSE v.data - ARRAY(SELECT key FROM jsonb_each(v.data) WHERE value = 'null')
           END
    FROM ({_ITEMS}) v
    ON CONFLICT (project_id, user_id) DO NOTHING
    RETURNING user_id
    """
)

# Existing users, in a statement of its own: its fresh snapshot sees a profile another request
# inserted meanwhile, and the row lock orders concurrent merges. A field absent from a merge
# keeps its value; ``data`` is merged key by key (a null value removes the key).
_UPDATE = text(
    f"""
    UPDATE user_profile u
    SET email = CASE WHEN 'email' = ANY(v.present) THEN v.email ELSE u.email END,
        phone = CASE WHEN 'phone' = ANY(v.present) THEN v.phone ELSE u.phone END,
        name = CASE WHEN 'name' = ANY(v.present) THEN v.name ELSE u.name END,
        locale = CASE WHEN 'locale' = ANY(v.present) THEN v.locale ELSE u.locale END,
        timezone = CASE WHEN 'timezone' = ANY(v.present) THEN v.timezone ELSE u.timezone END,
        quiet_start = CASE WHEN 'quiet_hours' = ANY(v.present) THEN v.quiet_start
                           ELSE u.quiet_start END,
        quiet_end = CASE WHEN 'quiet_hours' = ANY(v.present) THEN v.quiet_end
                         ELSE u.quiet_end END,
        data = CASE WHEN NOT 'data' = ANY(v.present) THEN u.data
                    WHEN v.replace OR v.data IS NULL THEN v.data
                    ELSE (COALESCE(u.data, '{{}}') || v.data)
                         - ARRAY(SELECT key FROM jsonb_each(v.data) WHERE value = 'null') END,
        updated_at = now()
    FROM ({_ITEMS}) v
    WHERE u.project_id = :project_id AND u.user_id = v.user_id
      AND NOT v.user_id = ANY(CAST(:created AS text[]))
    """
)


@dataclass(frozen=True)
class ProfileWrite:
    """One user's write: ``values`` by field name (FIELDS), ``quiet_hours`` as (start, end) or
    None. ``replace`` clears every field not given (PUT); otherwise absent fields are kept."""

    user_id: str
    values: dict[str, Any] = field(default_factory=dict)
    replace: bool = False


def upsert(conn: Connection, project_id: str, writes: Sequence[ProfileWrite]) -> set[str]:
    """Create or change each user's profile; returns the user ids that were created."""
    items = []
    for write in writes:
        quiet = write.values.get("quiet_hours")
        items.append(
            {
                "user_id": write.user_id,
                "present": list(FIELDS) if write.replace else list(write.values),
                "replace": write.replace,
                **{name: write.values.get(name) for name in FIELDS if name != "quiet_hours"},
                "quiet_start": quiet[0] if quiet else None,
                "quiet_end": quiet[1] if quiet else None,
            }
        )
    params = {"project_id": project_id, "items": orjson.dumps(items).decode()}
    created = list(conn.scalars(_INSERT, params))
    conn.execute(_UPDATE, {**params, "created": created})
    return set(created)


def get(conn: Connection, project_id: str, user_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM user_profile"
            " WHERE project_id = :project_id AND user_id = :user_id"
        ),
        {"project_id": project_id, "user_id": user_id},
    ).first()
    return None if row is None else _as_view(row)


def _as_view(row: Any) -> dict[str, Any]:
    return {
        "userId": row.user_id,
        "email": row.email,
        "phone": row.phone,
        "name": row.name,
        "locale": row.locale,
        "timezone": row.timezone,
        "quietHours": {"start": row.quiet_start, "end": row.quiet_end} if row.quiet_start else None,
        "data": row.data,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


# --- erasure ---------------------------------------------------------------------------------

# The user's notifications: named by user id, or sent to one of the user's addresses (compared
# as the suppression list compares them). A scan of the project's notifications: erasure is
# rare, and an index on every address would cost every accept.
_USER_NOTIFICATIONS = """
    SELECT id FROM notification
    WHERE project_id = :project_id
      AND (user_id = :user_id
           OR address_key('EMAIL', recipient_email) = ANY(CAST(:keys AS bytea[]))
           OR address_key('SMS', recipient_phone) = ANY(CAST(:keys AS bytea[])))
"""

_ADDRESSES = text(
    """
    SELECT 'EMAIL' AS channel, email AS address FROM user_profile
    WHERE project_id = :project_id AND user_id = :user_id AND email IS NOT NULL
    UNION SELECT 'SMS', phone FROM user_profile
    WHERE project_id = :project_id AND user_id = :user_id AND phone IS NOT NULL
    UNION SELECT 'EMAIL', recipient_email FROM notification
    WHERE project_id = :project_id AND user_id = :user_id AND recipient_email IS NOT NULL
    UNION SELECT 'SMS', recipient_phone FROM notification
    WHERE project_id = :project_id AND user_id = :user_id AND recipient_phone IS NOT NULL
    UNION SELECT d.channel, d.address FROM delivery d JOIN notification n
        ON n.id = d.notification_id
    WHERE n.project_id = :project_id AND n.user_id = :user_id AND d.address IS NOT NULL
    """
)

# Deliveries not yet sending are cancelled: there is no one left to send them to.
_CANCEL = text(
    f"""
    UPDATE delivery
    SET status = 'CANCELLED', error_code = 'user_erased', last_error = 'the user was erased',
        next_attempt_at = NULL, address = NULL, updated_at = now()
    WHERE notification_id IN ({_USER_NOTIFICATIONS})
      AND status IN ('PENDING', 'QUEUED', 'RETRYING')
    """
)

_REDACT_DELIVERIES = text(
    f"""
    UPDATE delivery SET address = NULL
    WHERE notification_id IN ({_USER_NOTIFICATIONS}) AND address IS NOT NULL
    """
)

# Ids, statuses and timestamps stay (metrics and the audit log stay whole); the content goes
# with the addresses, since it was written for this person.
_REDACT_NOTIFICATIONS = text(
    f"""
    UPDATE notification
    SET recipient_email = NULL, recipient_phone = NULL, user_id = NULL, device_tokens = NULL,
        subject = NULL, body = '', html_body = NULL, data = NULL
    WHERE id IN ({_USER_NOTIFICATIONS})
    """
)

# The entry stays, by its hash: an erased address that bounced stays suppressed.
_FORGET_SUPPRESSED = text(
    """
    UPDATE suppression SET address = NULL
    WHERE project_id = :project_id AND address_key = ANY(CAST(:keys AS bytea[]))
    """
)

_DELETES = {
    "profiles": "DELETE FROM user_profile WHERE project_id = :project_id AND user_id = :user_id",
    "preferences": "DELETE FROM preference WHERE project_id = :project_id AND user_id = :user_id",
    "devices": "DELETE FROM push_device WHERE project_id = :project_id AND user_id = :user_id",
    "inboxItems": "DELETE FROM inbox_item WHERE project_id = :project_id AND user_id = :user_id",
}


def erase(conn: Connection, project_id: str, user_id: str) -> dict[str, int]:
    """Remove the user's profile, preferences, devices and inbox; cancel their unsent
    deliveries; redact their notifications and the addresses in the suppression list (the
    entries stay, by hash). Returns how many rows each step touched."""
    params: dict[str, Any] = {"project_id": project_id, "user_id": user_id}
    addresses = conn.execute(_ADDRESSES, params).all()
    params["keys"] = list(
        conn.scalars(
            text(
                "SELECT address_key(c, a) FROM unnest(CAST(:channels AS text[]),"
                " CAST(:addresses AS text[])) AS v(c, a)"
            ),
            {
                "channels": [row.channel for row in addresses],
                "addresses": [row.address for row in addresses],
            },
        )
    )
    counts = {
        "deliveriesCancelled": conn.execute(_CANCEL, params).rowcount,
        "suppressionsKept": conn.execute(_FORGET_SUPPRESSED, params).rowcount,
    }
    conn.execute(_REDACT_DELIVERIES, params)
    counts["notificationsRedacted"] = conn.execute(_REDACT_NOTIFICATIONS, params).rowcount
    for name, statement in _DELETES.items():
        counts[name] = conn.execute(text(statement), params).rowcount
    return counts


def for_templates(
    conn: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """What a template may say of each (project, userId) that has a profile: ``name``,
    ``email``, ``phone``, ``locale``, ``timezone``, ``data``; one statement for a whole chunk."""
    if not keys:
        return {}
    rows = conn.execute(
        text(
            "SELECT p.project_id, p.user_id, p.email, p.phone, p.name, p.locale, p.timezone,"
            " p.data FROM user_profile p"
            " JOIN unnest(CAST(:projects AS text[]), CAST(:users AS text[]))"
            " AS k(project_id, user_id) ON p.project_id = k.project_id AND p.user_id = k.user_id"
        ),
        {"projects": [p for p, _ in keys], "users": [u for _, u in keys]},
    )
    fields = ("email", "phone", "name", "locale", "timezone", "data")
    return {
        (row.project_id, row.user_id): {f: getattr(row, f) for f in fields if getattr(row, f)}
        for row in rows
    }

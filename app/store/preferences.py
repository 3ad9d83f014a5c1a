"""Categories and users' preferences: every SQL statement on ``category`` and ``preference``.

How the worker's claim judges them is in app/store/deliveries.py (in SQL, in the claim);
``effective`` here says the same in Python for ``GET /users/{userId}/preferences``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, text

_CATEGORY_COLUMNS = "key, required, default_channels, description, created_at, updated_at"


@dataclass(frozen=True)
class Preferences:
    channels: dict[str, bool]
    categories: dict[str, bool | dict[str, bool]]


def put_category(
    conn: Connection,
    project_id: str,
    key: str,
    *,
    required: bool,
    default_channels: Sequence[str],
    description: str | None,
) -> tuple[dict[str, Any], bool]:
    """Declare or change a category; returns it and whether it was created."""
    row = conn.execute(
        text(
            f"""
            INSERT INTO category (project_id, key, required, default_channels, description)
            VALUES (:project_id, :key, :required, CAST(:default_channels AS text[]),
                    :description)
            ON CONFLICT (project_id, key) DO UPDATE
            SET required = EXCLUDED.required, default_channels = EXCLUDED.default_channels,
                description = EXCLUDED.description, updated_at = now()
            RETURNING {_CATEGORY_COLUMNS}, (xmax = 0) AS created
            """
        ),
        {
            "project_id": project_id,
            "key": key,
            "required": required,
            "default_channels": list(default_channels),
            "description": description,
        },
    ).one()
    return _category_view(row), bool(row.created)


def get_category(conn: Connection, project_id: str, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        text(
            f"SELECT {_CATEGORY_COLUMNS} FROM category"
            " WHERE project_id = :project_id AND key = :key"
        ),
        {"project_id": project_id, "key": key},
    ).first()
    return None if row is None else _category_view(row)


def list_categories(conn: Connection, project_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            f"SELECT {_CATEGORY_COLUMNS} FROM category WHERE project_id = :project_id ORDER BY key"
        ),
        {"project_id": project_id},
    )
    return [_category_view(row) for row in rows]


def required_categories(conn: Connection, project_id: str, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are declared required in the project."""
    return set(
        conn.scalars(
            text(
                "SELECT key FROM category WHERE project_id = :project_id"
                " AND key = ANY(CAST(:keys AS text[])) AND required"
            ),
            {"project_id": project_id, "keys": list(keys)},
        )
    )


def put(conn: Connection, project_id: str, user_id: str, preferences: Preferences) -> None:
    """Replace the user's preferences."""
    conn.execute(
        text(
            """
            INSERT INTO preference (project_id, user_id, channels, categories)
            VALUES (:project_id, :user_id, CAST(:channels AS jsonb), CAST(:categories AS jsonb))
            ON CONFLICT (project_id, user_id) DO UPDATE
            SET channels = EXCLUDED.channels, categories = EXCLUDED.categories,
                updated_at = now()
            """
        ),
        {
            "project_id": project_id,
            "user_id": user_id,
            "channels": orjson.dumps(preferences.channels).decode(),
            "categories": orjson.dumps(preferences.categories).decode(),
        },
    )


def get(conn: Connection, project_id: str, user_id: str) -> Preferences:
    """The user's preferences as set (none set: empty)."""
    row = conn.execute(
        text(
            "SELECT channels, categories FROM preference"
            " WHERE project_id = :project_id AND user_id = :user_id"
        ),
        {"project_id": project_id, "user_id": user_id},
    ).first()
    return Preferences({}, {}) if row is None else Preferences(row.channels, row.categories)


def effective(
    preferences: Preferences, categories: Sequence[dict[str, Any]], channels: Sequence[str]
) -> dict[str, Any]:
    """Whether a MARKETING notification would go out on each channel, without and with each
    category (the declared ones and those the user mentioned): the user's choice for the
    category and channel, else for the whole category, else for the channel, else the
    category's default channels, else yes. The claim decides by the same order."""
    declared = {c["key"]: c for c in categories}
    result: dict[str, dict[str, bool]] = {}
    for key in sorted({*declared, *preferences.categories}):
        choice = preferences.categories.get(key)
        defaults = declared[key]["defaultChannels"] if key in declared else None
        result[key] = {}
        for channel in channels:
            if isinstance(choice, dict) and channel in choice:
                value = choice[channel]
            elif isinstance(choice, bool):
                value = choice
            elif channel in preferences.channels:
                value = preferences.channels[channel]
            elif defaults is not None:
                value = channel in defaults
            else:
                value = True
            result[key][channel] = value
    return {
        "channels": {c: preferences.channels.get(c, True) for c in channels},
        "categories": result,
    }


def _category_view(row: Any) -> dict[str, Any]:
    return {
        "key": row.key,
        "required": row.required,
        "defaultChannels": list(row.default_channels),
        "description": row.description,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


# One click: the category off on that channel (or, without a category, the channel off),
# whatever else the user chose. A category already off entirely stays so.
_OPT_OUT = text(
    """
    INSERT INTO preference AS p (project_id, user_id, channels, categories)
    VALUES (:project_id, :user_id,
            CASE WHEN CAST(:category AS text) IS NULL
                 THEN jsonb_build_object(CAST(:channel AS text), false) ELSE '{}' END,
            CASE WHEN CAST(:category AS text) IS NULL THEN '{}'
                 ELSE jsonb_build_object(CAST(:category AS text),
                                         jsonb_build_object(CAST(:channel AS text), false)) END)
    ON CONFLICT (project_id, user_id) DO UPDATE
    SET channels = p.channels || EXCLUDED.channels,
        categories = CASE
            WHEN CAST(:category AS text) IS NULL OR p.categories -> :category = 'false'
              THEN p.categories
            WHEN jsonb_typeof(p.categories -> :category) = 'object'
              THEN jsonb_set(p.categories, ARRAY[CAST(:category AS text)],
                             (p.categories -> :category) || (EXCLUDED.categories -> :category))
            ELSE p.categories || EXCLUDED.categories END,
        updated_at = now()
    """
)


def opt_out(
    conn: Connection, project_id: str, user_id: str, category: str | None, channel: str
) -> None:
    """Switch the user's category (or, without one, the channel) off on ``channel``."""
    conn.execute(
        _OPT_OUT,
        {"project_id": project_id, "user_id": user_id, "category": category, "channel": channel},
    )

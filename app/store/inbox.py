"""The in-app inbox: every SQL statement on ``inbox_item`` (the IN_APP provider stores, the inbox
API and the sockets read and mark).

An item's position (``seq``) is its cursor. Reading a page walks positions backwards; a socket
catching up walks forwards from the last position it saw.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, text

from app.core import cursors

# Positions must grow in commit order within one inbox (a user of a project), or a client that
# saw position 10 could later miss a position-9 item that committed after it. The per-inbox
# transaction lock makes the position (taken at INSERT) and the commit happen in the same order
# for every writer of one inbox; writers of different inboxes do not wait for each other.
_LOCK_USER = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(:project_id || ':' || :user_id, 7531))"
)

# A redelivered task finds the item its first run stored (one item per delivery).
_STORE = text(
    """
    INSERT INTO inbox_item (id, project_id, user_id, delivery_id, notification_id, category,
                            title, body, data)
    VALUES (:id, :project_id, :user_id, :delivery_id, :notification_id, :category, :title, :body,
            CAST(:data AS jsonb))
    ON CONFLICT (delivery_id) DO NOTHING
    """
)

_COLUMNS = "id, seq, user_id, notification_id, category, title, body, data, created_at, read_at"

_UNREAD_COUNT = text(
    "SELECT count(*) FROM inbox_item"
    " WHERE project_id = :project_id AND user_id = :user_id"
    " AND read_at IS NULL AND deleted_at IS NULL"
)

_MARK_READ = text(
    """
    UPDATE inbox_item SET read_at = now()
    WHERE project_id = :project_id AND user_id = :user_id AND id = ANY(CAST(:ids AS uuid[]))
      AND read_at IS NULL AND deleted_at IS NULL
    RETURNING id
    """
)

_MARK_ALL_READ = text(
    """
    UPDATE inbox_item SET read_at = now()
    WHERE project_id = :project_id AND user_id = :user_id
      AND read_at IS NULL AND deleted_at IS NULL
    RETURNING id
    """
)

_DELETE = text(
    """
    UPDATE inbox_item SET deleted_at = now()
    WHERE project_id = :project_id AND user_id = :user_id AND id = :id AND deleted_at IS NULL
    RETURNING id
    """
)

_CURSOR = re.compile(r"^inbox:([0-9]{1,18})$")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    unread_count: int


def encode_cursor(seq: int) -> str:
    return cursors.wrap(f"inbox:{seq}")


def decode_cursor(raw: str) -> int:
    """The position in a cursor this API issued; ValueError for anything else."""
    match = _CURSOR.match(cursors.unwrap(raw))
    if match is None:
        raise ValueError("not a cursor")
    return int(match.group(1))


def view(row: Any) -> dict[str, Any]:
    """An item as the API and the sockets show it (camelCase, JSON-ready)."""
    return {
        "id": str(row.id),
        "notificationId": str(row.notification_id),
        "category": row.category,
        "title": row.title,
        "body": row.body,
        "data": row.data,
        "createdAt": row.created_at.isoformat(),
        "readAt": row.read_at.isoformat() if row.read_at else None,
        "cursor": encode_cursor(row.seq),
    }


def store(
    conn: Connection,
    *,
    project_id: str,
    user_id: str,
    delivery_id: uuid.UUID,
    notification_id: uuid.UUID,
    category: str,
    title: str | None,
    body: str,
    data: dict[str, Any] | None,
) -> tuple[dict[str, Any], int]:
    """Store the item of one IN_APP delivery (or find the one a previous run stored).

    Returns the item's view and the user's unread count after it.
    """
    conn.execute(_LOCK_USER, {"project_id": project_id, "user_id": user_id})
    conn.execute(
        _STORE,
        {
            "id": str(uuid.uuid4()),
            "project_id": project_id,
            "user_id": user_id,
            "delivery_id": str(delivery_id),
            "notification_id": str(notification_id),
            "category": category,
            "title": title,
            "body": body,
            "data": None if data is None else orjson.dumps(data).decode(),
        },
    )
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM inbox_item WHERE delivery_id = :delivery_id"),
        {"delivery_id": str(delivery_id)},
    ).one()
    return view(row), unread_count(conn, project_id, user_id)


def unread_count(conn: Connection, project_id: str, user_id: str) -> int:
    return int(conn.scalar(_UNREAD_COUNT, {"project_id": project_id, "user_id": user_id}) or 0)


def page(
    conn: Connection,
    project_id: str,
    user_id: str,
    *,
    unread: bool | None,
    before: int | None,
    limit: int,
) -> Page:
    """Newest first; ``before`` is the position of the last item of the previous page."""
    where = ["project_id = :project_id", "user_id = :user_id", "deleted_at IS NULL"]
    params: dict[str, Any] = {"project_id": project_id, "user_id": user_id, "limit": limit + 1}
    if unread is True:
        where.append("read_at IS NULL")
    elif unread is False:
        where.append("read_at IS NOT NULL")
    if before is not None:
        where.append("seq < :before")
        params["before"] = before
    rows = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM inbox_item WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT :limit"
        ),
        params,
    ).all()
    items = [view(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return Page(items, next_cursor, unread_count(conn, project_id, user_id))


def unread_after(
    conn: Connection, project_id: str, user_id: str, after: int | None
) -> list[dict[str, Any]]:
    """The unread items after position ``after`` (all unread when None), oldest first: what a
    socket is sent when it connects."""
    rows = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM inbox_item"
            " WHERE project_id = :project_id AND user_id = :user_id"
            " AND read_at IS NULL AND deleted_at IS NULL"
            " AND seq > :after ORDER BY seq"
        ),
        {"project_id": project_id, "user_id": user_id, "after": after or 0},
    ).all()
    return [view(row) for row in rows]


def get(
    conn: Connection, project_id: str, user_id: str, item_id: uuid.UUID
) -> dict[str, Any] | None:
    row = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM inbox_item"
            " WHERE project_id = :project_id AND user_id = :user_id AND id = :id"
            " AND deleted_at IS NULL"
        ),
        {"project_id": project_id, "user_id": user_id, "id": str(item_id)},
    ).first()
    return None if row is None else view(row)


def mark_read(
    conn: Connection, project_id: str, user_id: str, item_ids: Sequence[uuid.UUID]
) -> list[str]:
    """Mark the user's items read; returns the ids that were unread until now."""
    rows = conn.execute(
        _MARK_READ,
        {"project_id": project_id, "user_id": user_id, "ids": [str(i) for i in item_ids]},
    )
    return [str(row.id) for row in rows]


def mark_all_read(conn: Connection, project_id: str, user_id: str) -> list[str]:
    return [
        str(row.id)
        for row in conn.execute(_MARK_ALL_READ, {"project_id": project_id, "user_id": user_id})
    ]


def delete(conn: Connection, project_id: str, user_id: str, item_id: uuid.UUID) -> bool:
    return (
        conn.execute(
            _DELETE, {"project_id": project_id, "user_id": user_id, "id": str(item_id)}
        ).first()
        is not None
    )

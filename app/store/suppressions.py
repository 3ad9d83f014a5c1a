"""The suppression list: every SQL statement on ``suppression``.

Addresses are compared by ``address_key(channel, address)`` (migration 0010): the e-mail domain
case-folded, an E.164 number as given, hashed, so an entry outlives the erasure of its address.
The worker's claim checks the list in its own statement (app/store/deliveries.py), and a
provider's dead-address answer adds to it by trigger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from app.core import cursors

_COLUMNS = "channel, address, reason, delivery_id, created_at, address_key"


def normalized(channel: str, address: str) -> str:
    """The address as the list shows it: an e-mail domain in lower case."""
    if channel == "EMAIL" and "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local}@{domain.lower()}"
    return address


def put(
    conn: Connection, project_id: str, channel: str, address: str, reason: str
) -> tuple[dict[str, Any], bool]:
    """Add the address (or change its reason); returns the entry and whether it is new."""
    row = conn.execute(
        text(
            f"""
            INSERT INTO suppression (project_id, channel, address_key, address, reason)
            VALUES (:project_id, :channel, address_key(:channel, :address), :address, :reason)
            ON CONFLICT (project_id, channel, address_key) DO UPDATE
            SET reason = EXCLUDED.reason, address = EXCLUDED.address
            RETURNING {_COLUMNS}, (xmax = 0) AS created
            """
        ),
        {
            "project_id": project_id,
            "channel": channel,
            "address": normalized(channel, address),
            "reason": reason,
        },
    ).one()
    return _as_view(row), bool(row.created)


def get(conn: Connection, project_id: str, channel: str, address: str) -> dict[str, Any] | None:
    row = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM suppression WHERE project_id = :project_id"
            " AND channel = :channel AND address_key = address_key(:channel, :address)"
        ),
        {"project_id": project_id, "channel": channel, "address": address},
    ).first()
    return None if row is None else _as_view(row)


def remove(conn: Connection, project_id: str, channel: str, address: str) -> bool:
    removed = conn.execute(
        text(
            "DELETE FROM suppression WHERE project_id = :project_id AND channel = :channel"
            " AND address_key = address_key(:channel, :address) RETURNING channel"
        ),
        {"project_id": project_id, "channel": channel, "address": address},
    ).first()
    return removed is not None


# One click from an email sent to an address alone. The link names the address by its key
# only; the entry shows the address while the delivery that carried the link still holds it.
# An entry already there stays as it is: a bounce or a complaint says more than an unsubscribe.
_UNSUBSCRIBE = text(
    """
    INSERT INTO suppression (project_id, channel, address_key, address, reason, delivery_id)
    SELECT :project_id, :channel, :address_key,
           (SELECT d.address FROM delivery d JOIN notification n ON n.id = d.notification_id
            WHERE d.id = :delivery_id AND n.project_id = :project_id AND d.channel = :channel
              AND address_key(d.channel, d.address) = :address_key),
           'unsubscribed', :delivery_id
    ON CONFLICT (project_id, channel, address_key) DO NOTHING
    """
)


def unsubscribe(
    conn: Connection, project_id: str, channel: str, address_key: bytes, delivery_id: str
) -> None:
    """Suppress the address as ``unsubscribed`` unless it is on the list already."""
    conn.execute(
        _UNSUBSCRIBE,
        {
            "project_id": project_id,
            "channel": channel,
            "address_key": address_key,
            "delivery_id": delivery_id,
        },
    )


@dataclass(frozen=True)
class ListFilters:
    channel: str | None = None
    reason: str | None = None
    cursor: tuple[datetime, bytes] | None = None
    limit: int = 50


def list_(
    conn: Connection, project_id: str, filters: ListFilters
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the project's entries, newest first, and the next page's cursor."""
    where = ["project_id = :project_id"]
    params: dict[str, Any] = {"project_id": project_id, "limit": filters.limit + 1}
    if filters.channel:
        where.append("channel = :channel")
        params["channel"] = filters.channel
    if filters.reason:
        where.append("reason = :reason")
        params["reason"] = filters.reason
    if filters.cursor:
        where.append("(created_at, address_key) < (:cursor_created, :cursor_key)")
        params["cursor_created"], params["cursor_key"] = filters.cursor
    rows = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM suppression WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, address_key DESC LIMIT :limit"
        ),
        params,
    ).all()
    page = [_as_view(row) for row in rows[: filters.limit]]
    last = rows[filters.limit - 1] if len(rows) > filters.limit else None
    cursor = (
        cursors.wrap(f"{last.created_at.isoformat()}|{bytes(last.address_key).hex()}")
        if last is not None
        else None
    )
    return page, cursor


def decode_cursor(raw: str) -> tuple[datetime, bytes]:
    """Raises ValueError for anything this API did not issue."""
    created, _, key = cursors.unwrap(raw).partition("|")
    when = datetime.fromisoformat(created)
    if when.tzinfo is None or len(key) != 64:
        raise ValueError("not a cursor")
    return when, bytes.fromhex(key)


def _as_view(row: Any) -> dict[str, Any]:
    return {
        "channel": row.channel,
        "address": row.address,
        "reason": row.reason,
        "deliveryId": row.delivery_id,
        "createdAt": row.created_at,
    }

"""Every SQL statement on ``api_key``: keys are stored as a SHA-256 digest, never as text."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

_INSERT = text(
    "INSERT INTO api_key (id, name, key_hash, key_prefix, webhook_secret, scopes, rotated_from)"
    " VALUES (:id, :name, :hash, :prefix, :webhook_secret, :scopes, :rotated_from)"
)

# Revoking is a guarded UPDATE: a key already revoked is not revoked again (nor rotated twice).
_REVOKE = text(
    "UPDATE api_key SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"
    " RETURNING name, scopes, webhook_secret"
)

_LIST = text(
    "SELECT id, name, key_prefix, scopes, created_at, revoked_at, rotated_from"
    " FROM api_key ORDER BY created_at"
)

# Looked up by the digest through an index, never by comparing key text, so timing reveals
# nothing about how much of a guessed key was right.
_LIVE_BY_HASH = text("SELECT id, scopes FROM api_key WHERE key_hash = :hash AND revoked_at IS NULL")


def insert(
    conn: Connection,
    *,
    key_id: uuid.UUID,
    name: str,
    key_hash: bytes,
    key_prefix: str,
    webhook_secret: str,
    scopes: Sequence[str],
    rotated_from: uuid.UUID | None = None,
) -> None:
    conn.execute(
        _INSERT,
        {
            "id": str(key_id),
            "name": name,
            "hash": key_hash,
            "prefix": key_prefix,
            "webhook_secret": webhook_secret,
            "scopes": list(scopes),
            "rotated_from": str(rotated_from) if rotated_from else None,
        },
    )


def revoke(conn: Connection, key_id: uuid.UUID) -> Any | None:
    """Revoke a live key; returns its name, scopes and webhook secret, or None if no live key
    has this id."""
    return conn.execute(_REVOKE, {"id": str(key_id)}).first()


def list_all(conn: Connection) -> list[dict[str, object]]:
    return [dict(row._mapping) for row in conn.execute(_LIST)]


def find_live(conn: Connection, key_hash: bytes) -> Any | None:
    """The id and scopes of the live key with this digest, or None."""
    return conn.execute(_LIVE_BY_HASH, {"hash": key_hash}).first()

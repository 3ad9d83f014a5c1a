"""Every SQL statement on ``api_key``: keys are stored as a SHA-256 digest, never as text."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

_ENSURE_PROJECT = text("INSERT INTO project (id) VALUES (:id) ON CONFLICT (id) DO NOTHING")

_INSERT = text(
    "INSERT INTO api_key (id, project_id, name, key_hash, key_prefix, webhook_secret, scopes,"
    " rotated_from)"
    " VALUES (:id, :project_id, :name, :hash, :prefix, :webhook_secret, :scopes, :rotated_from)"
)

# Revoking is a guarded UPDATE: a key already revoked is not revoked again (nor rotated twice).
_REVOKE = text(
    "UPDATE api_key SET revoked_at = now()"
    " WHERE id = :id AND project_id = :project_id AND revoked_at IS NULL"
    " RETURNING name, scopes, webhook_secret"
)

_LIST = text(
    "SELECT id, project_id, name, key_prefix, scopes, created_at, revoked_at, rotated_from"
    " FROM api_key WHERE project_id = :project_id ORDER BY created_at"
)

# Looked up by the digest through an index, never by comparing key text, so timing reveals
# nothing about how much of a guessed key was right.
_LIVE_BY_HASH = text(
    "SELECT id, project_id, scopes FROM api_key WHERE key_hash = :hash AND revoked_at IS NULL"
)


def ensure_project(conn: Connection, project_id: str) -> None:
    """Create the project if it does not exist yet."""
    conn.execute(_ENSURE_PROJECT, {"id": project_id})


def insert(
    conn: Connection,
    *,
    key_id: uuid.UUID,
    project_id: str,
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
            "project_id": project_id,
            "name": name,
            "hash": key_hash,
            "prefix": key_prefix,
            "webhook_secret": webhook_secret,
            "scopes": list(scopes),
            "rotated_from": str(rotated_from) if rotated_from else None,
        },
    )


def revoke(conn: Connection, project_id: str, key_id: uuid.UUID) -> Any | None:
    """Revoke a live key of the project; returns its name, scopes and webhook secret, or None if
    the project has no live key with this id."""
    return conn.execute(_REVOKE, {"id": str(key_id), "project_id": project_id}).first()


def list_all(conn: Connection, project_id: str) -> list[dict[str, object]]:
    """The project's keys, revoked ones included, oldest first."""
    return [dict(row._mapping) for row in conn.execute(_LIST, {"project_id": project_id})]


def find_live(conn: Connection, key_hash: bytes) -> Any | None:
    """The id, project and scopes of the live key with this digest, or None."""
    return conn.execute(_LIVE_BY_HASH, {"hash": key_hash}).first()

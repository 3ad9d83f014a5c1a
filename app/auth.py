"""API keys: issued once, stored only as a hash, checked on every API route."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from flask import g, request
from sqlalchemy import Engine, text

from app.db import transaction
from app.errors import ApiError

KEY_PREFIX = "nsk_"
WEBHOOK_SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    key: str  # shown to the operator once; never stored
    # Signs this key's webhook deliveries; stored as is (signing needs it), shown once.
    webhook_secret: str


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create_api_key(engine: Engine, name: str) -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    webhook_secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
    key_id = uuid.uuid4()
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO api_key (id, name, key_hash, key_prefix, webhook_secret)"
                " VALUES (:id, :name, :hash, :prefix, :webhook_secret)"
            ),
            {
                "id": str(key_id),
                "name": name,
                "hash": hash_key(key),
                "prefix": key[:8],
                "webhook_secret": webhook_secret,
            },
        )
    return IssuedKey(key_id, name, key, webhook_secret)


def authenticate(engine: Engine, authorization: str | None) -> uuid.UUID | None:
    """The id of the live API key in an ``Authorization: Bearer`` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    # Looked up by the hash of the presented key: what is compared is a digest in an index, so
    # response time does not reveal how much of a guessed key was right.
    with transaction(engine) as conn:
        return conn.scalar(
            text("SELECT id FROM api_key WHERE key_hash = :hash AND revoked_at IS NULL"),
            {"hash": hash_key(key)},
        )


def require_api_key() -> None:
    """``before_request`` hook of every blueprint but health: 401 unless a live key is shown."""
    from app.services import services

    api_key_id = authenticate(services().engine, request.headers.get("Authorization"))
    if api_key_id is None:
        raise ApiError(
            401,
            "unauthorized",
            "A valid API key is required: Authorization: Bearer <key>.",
            headers={"WWW-Authenticate": 'Bearer realm="notifications"'},
        )
    g.api_key_id = api_key_id

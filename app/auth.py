"""API keys: issued once, stored only as a hash, checked on every API route."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
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


class KeyCache:
    """Live keys seen in the last ``ttl`` seconds, so most requests skip the lookup. A revoked
    key stops working within ``ttl``. Unknown keys are never cached: guessing fills nothing."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[bytes, tuple[uuid.UUID, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> uuid.UUID | None:
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, digest: bytes, key_id: uuid.UUID) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (key_id, time.monotonic() + self.ttl)


def authenticate(
    engine: Engine, authorization: str | None, cache: KeyCache | None = None
) -> uuid.UUID | None:
    """The id of the live API key in an ``Authorization: Bearer`` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    # Looked up by the hash of the presented key: what is compared is a digest in an index, so
    # response time does not reveal how much of a guessed key was right.
    digest = hash_key(key)
    if cache is not None and (cached := cache.get(digest)) is not None:
        return cached
    with engine.connect() as conn:
        key_id: uuid.UUID | None = conn.scalar(
            text("SELECT id FROM api_key WHERE key_hash = :hash AND revoked_at IS NULL"),
            {"hash": digest},
        )
    if key_id is not None and cache is not None:
        cache.put(digest, key_id)
    return key_id


def require_api_key() -> None:
    """``before_request`` hook of every blueprint but health: 401 unless a live key is shown."""
    from app.services import services

    found = services()
    api_key_id = authenticate(found.engine, request.headers.get("Authorization"), found.key_cache)
    if api_key_id is None:
        raise ApiError(
            401,
            "unauthorized",
            "A valid API key is required: Authorization: Bearer <key>.",
            headers={"WWW-Authenticate": 'Bearer realm="notifications"'},
        )
    g.api_key_id = api_key_id

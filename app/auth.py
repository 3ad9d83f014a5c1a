"""API keys: issued once, stored only as a hash, scoped, revocable, rotatable, checked on every
API route but health and metrics."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from flask import g, request
from sqlalchemy import Connection, Engine, text

from app.db import transaction
from app.errors import ApiError

KEY_PREFIX = "nsk_"
WEBHOOK_SECRET_PREFIX = "whsec_"
SCOPES = ("send", "read", "admin")
DEFAULT_SCOPES = ("send", "read")

# Which scope a request needs: reading needs ``read``, changing needs ``send``; blueprints that
# manage the service itself need ``admin`` whatever the method.
ADMIN_BLUEPRINTS = frozenset({"api_keys"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    key: str  # shown to the operator once; never stored
    # Signs this key's webhook deliveries; stored as is (signing needs it), shown once.
    webhook_secret: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES


@dataclass(frozen=True)
class Caller:
    """Who is calling: the live API key's id and what it may do."""

    key_id: uuid.UUID
    scopes: frozenset[str]


class UnknownKey(LookupError):
    """No live API key has this id."""


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _insert_key(
    conn: Connection,
    name: str,
    scopes: Iterable[str],
    webhook_secret: str,
    rotated_from: uuid.UUID | None = None,
) -> IssuedKey:
    scopes = tuple(sorted(set(scopes), key=SCOPES.index))
    key, key_id = _new_key(), uuid.uuid4()
    conn.execute(
        text(
            "INSERT INTO api_key (id, name, key_hash, key_prefix, webhook_secret, scopes,"
            " rotated_from) VALUES (:id, :name, :hash, :prefix, :webhook_secret, :scopes,"
            " :rotated_from)"
        ),
        {
            "id": str(key_id),
            "name": name,
            "hash": hash_key(key),
            "prefix": key[:8],
            "webhook_secret": webhook_secret,
            "scopes": list(scopes),
            "rotated_from": str(rotated_from) if rotated_from else None,
        },
    )
    return IssuedKey(key_id, name, key, webhook_secret, scopes)


def create_api_key(engine: Engine, name: str, scopes: Iterable[str] = DEFAULT_SCOPES) -> IssuedKey:
    webhook_secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction(engine) as conn:
        return _insert_key(conn, name, scopes, webhook_secret)


def revoke_api_key(engine: Engine, key_id: uuid.UUID) -> None:
    with transaction(engine) as conn:
        revoked = conn.execute(
            text(
                "UPDATE api_key SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"
                " RETURNING id"
            ),
            {"id": str(key_id)},
        ).first()
    if revoked is None:
        raise UnknownKey(str(key_id))


def rotate_api_key(engine: Engine, key_id: uuid.UUID) -> IssuedKey:
    """A new key with the same name, scopes and webhook secret (receivers keep verifying); the
    old key is revoked in the same transaction."""
    with transaction(engine) as conn:
        old = conn.execute(
            text(
                "UPDATE api_key SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"
                " RETURNING name, scopes, webhook_secret"
            ),
            {"id": str(key_id)},
        ).first()
        if old is None:
            raise UnknownKey(str(key_id))
        return _insert_key(conn, old.name, old.scopes, old.webhook_secret, rotated_from=key_id)


def list_api_keys(engine: Engine) -> list[dict[str, object]]:
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT id, name, key_prefix, scopes, created_at, revoked_at, rotated_from"
                " FROM api_key ORDER BY created_at"
            )
        )
        return [dict(row._mapping) for row in rows]


class KeyCache:
    """Live keys seen in the last ``ttl`` seconds, so most requests skip the lookup. A key
    revoked through this process is dropped at once; elsewhere it lapses within ``ttl``.
    Unknown keys are never cached: guessing fills nothing."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[bytes, tuple[Caller, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> Caller | None:
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, digest: bytes, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (caller, time.monotonic() + self.ttl)

    def forget(self, key_id: uuid.UUID) -> None:
        with self._lock:
            for digest, (caller, _) in list(self._entries.items()):
                if caller.key_id == key_id:
                    del self._entries[digest]


def authenticate(
    engine: Engine, authorization: str | None, cache: KeyCache | None = None
) -> Caller | None:
    """The live API key in an ``Authorization: Bearer`` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    # Looked up by the SHA-256 of the presented key, never by comparing key text: what the
    # database compares is a digest through an index, so timing reveals nothing about how much
    # of a guessed key was right.
    digest = hash_key(key)
    if cache is not None and (cached := cache.get(digest)) is not None:
        return cached
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, scopes FROM api_key WHERE key_hash = :hash AND revoked_at IS NULL"),
            {"hash": digest},
        ).first()
    if row is None:
        return None
    caller = Caller(row.id, frozenset(row.scopes))
    if cache is not None:
        cache.put(digest, caller)
    return caller


def required_scope(method: str, blueprint: str | None) -> str:
    if blueprint in ADMIN_BLUEPRINTS:
        return "admin"
    return "read" if method in SAFE_METHODS else "send"


def require_api_key() -> None:
    """``before_request`` hook of every blueprint but health: 401 unless a live key is shown,
    403 unless it has the scope the request needs, 429 past its rate limit."""
    from app.services import services

    found = services()
    caller = authenticate(found.engine, request.headers.get("Authorization"), found.key_cache)
    if caller is None:
        raise ApiError(
            401,
            "unauthorized",
            "A valid API key is required: Authorization: Bearer <key>.",
            headers={"WWW-Authenticate": 'Bearer realm="notifications"'},
        )
    needed = required_scope(request.method, request.blueprint)
    if needed not in caller.scopes:
        raise ApiError(403, "insufficient_scope", f"This API key lacks the '{needed}' scope.")
    found.rate_limiter.check(caller.key_id)
    g.api_key_id = caller.key_id
    g.caller = caller

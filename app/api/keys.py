"""API keys: issued once, stored only as a hash (app/store/api_keys.py), scoped, revocable,
rotatable; the cache and the lookup that every authenticated request goes through."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from app.core.db import transaction
from app.store import api_keys

KEY_PREFIX = "nsk_"
WEBHOOK_SECRET_PREFIX = "whsec_"
SCOPES = ("send", "read", "admin")
DEFAULT_SCOPES = ("send", "read")
DEFAULT_PROJECT = "default"
# As the project table's CHECK: a slug, so it can prefix a Redis channel name unambiguously.
PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    key: str  # shown to the operator once; never stored
    # Signs this key's webhook deliveries; stored as is (signing needs it), shown once.
    webhook_secret: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    project_id: str = DEFAULT_PROJECT


@dataclass(frozen=True)
class Caller:
    """Who is calling: the live API key's id, its project and what it may do."""

    key_id: uuid.UUID
    project_id: str
    scopes: frozenset[str]


class UnknownKey(LookupError):
    """The caller's project has no live API key with this id."""


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _insert_key(
    conn: Connection,
    project_id: str,
    name: str,
    scopes: Iterable[str],
    webhook_secret: str,
    rotated_from: uuid.UUID | None = None,
) -> IssuedKey:
    scopes = tuple(sorted(set(scopes), key=SCOPES.index))
    key, key_id = _new_key(), uuid.uuid4()
    api_keys.insert(
        conn,
        key_id=key_id,
        project_id=project_id,
        name=name,
        key_hash=hash_key(key),
        key_prefix=key[:8],
        webhook_secret=webhook_secret,
        scopes=scopes,
        rotated_from=rotated_from,
    )
    return IssuedKey(key_id, name, key, webhook_secret, scopes, project_id)


def create_api_key(
    engine: Engine,
    name: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    project_id: str = DEFAULT_PROJECT,
) -> IssuedKey:
    """A new key of ``project_id`` (created if it does not exist yet)."""
    if not PROJECT_ID.match(project_id):
        raise ValueError(f"not a project id: {project_id!r}")
    webhook_secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction(engine) as conn:
        api_keys.ensure_project(conn, project_id)
        return _insert_key(conn, project_id, name, scopes, webhook_secret)


def revoke_api_key(engine: Engine, project_id: str, key_id: uuid.UUID) -> None:
    with transaction(engine) as conn:
        revoked = api_keys.revoke(conn, project_id, key_id)
    if revoked is None:
        raise UnknownKey(str(key_id))


def rotate_api_key(engine: Engine, project_id: str, key_id: uuid.UUID) -> IssuedKey:
    """A new key with the same name, scopes and webhook secret (receivers keep verifying); the
    old key is revoked in the same transaction."""
    with transaction(engine) as conn:
        old = api_keys.revoke(conn, project_id, key_id)
        if old is None:
            raise UnknownKey(str(key_id))
        return _insert_key(
            conn, project_id, old.name, old.scopes, old.webhook_secret, rotated_from=key_id
        )


def list_api_keys(engine: Engine, project_id: str) -> list[dict[str, object]]:
    with transaction(engine) as conn:
        return api_keys.list_all(conn, project_id)


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
    digest = hash_key(key)
    if cache is not None and (cached := cache.get(digest)) is not None:
        return cached
    with engine.connect() as conn:
        row = api_keys.find_live(conn, digest)
    if row is None:
        return None
    caller = Caller(row.id, row.project_id, frozenset(row.scopes))
    if cache is not None:
        cache.put(digest, caller)
    return caller

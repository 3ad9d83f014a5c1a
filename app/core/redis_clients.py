"""Every Redis client of the service is built here, from the process's one ``Settings``.

Without ``REDIS_SENTINELS`` a client connects to ``REDIS_URL``. With it, every client asks the
Sentinels for the current master of ``REDIS_SENTINEL_MASTER`` whenever it opens a connection,
so after a failover the next reconnect reaches the promoted replica; ``REDIS_URL`` then gives
only the database number and the credentials. Celery reaches the same master through kombu's
own Sentinel transport (``broker_url`` and ``broker_transport_options`` below).

Pub/sub channel names carry the database number (app/core/pubsub.py), which a Sentinel-built
client keeps in its pool's connection arguments exactly as a URL-built one does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.connection import SSLConnection, parse_url
from redis.sentinel import Sentinel

from app.core.settings import Settings


def redis_client(settings: Settings, *, timeout: float, **options: Any) -> redis.Redis:
    """A client of the Redis master. ``timeout`` bounds connecting and each reply (asking the
    Sentinels included); ``options`` are redis-py's connection arguments and override it."""
    arguments = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **options}
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **arguments)
    sentinels = Sentinel(
        settings.redis_sentinel_addresses(),
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
    )
    client: redis.Redis = sentinels.master_for(
        settings.redis_sentinel_master, **_database_and_credentials(settings), **arguments
    )
    return client


def _database_and_credentials(settings: Settings) -> dict[str, Any]:
    """What of REDIS_URL applies to the master the Sentinels name: not its host and port."""
    found: dict[str, Any] = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    found.pop("host", None)
    found.pop("port", None)
    if found.pop("connection_class", None) is SSLConnection:
        found["ssl"] = True  # the Sentinel pool then picks its TLS connection class
    return found


def broker_url(settings: Settings) -> str:
    """Celery's broker: REDIS_URL, or one ``sentinel://`` URL per Sentinel (kombu's form), each
    with REDIS_URL's credentials and database."""
    if not settings.redis_sentinels:
        return settings.redis_url
    parts = urlsplit(settings.redis_url)
    userinfo = parts.netloc.rpartition("@")[0]
    credentials = f"{userinfo}@" if userinfo else ""
    database = parts.path if parts.path not in ("", "/") else "/0"
    return ";".join(
        f"sentinel://{credentials}{host}:{port}{database}"
        for host, port in settings.redis_sentinel_addresses()
    )


def broker_transport_options(settings: Settings, *, timeout: float) -> dict[str, Any]:
    """The transport options kombu's Sentinel transport needs (none without Sentinels)."""
    if not settings.redis_sentinels:
        return {}
    return {
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": {"socket_timeout": timeout, "socket_connect_timeout": timeout},
    }

"""What a running API process holds: settings and its connections, created once."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app
from sqlalchemy import Engine

from app.auth import KeyCache
from app.db import make_engine
from app.domain import Channel
from app.hub import Hub
from app.ingest import AcceptWriter
from app.ratelimit import RateLimiter
from app.settings import Settings
from app.wake import Waker


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    available_channels: frozenset[Channel]
    key_cache: KeyCache
    ingest: AcceptWriter  # this process's group-committing writer of accepts
    rate_limiter: RateLimiter
    hub: Hub  # this process's WebSockets; its listener thread starts with the first socket

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from tasks.channels import available_channels

        broker = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        waker = Waker(broker)
        return cls(
            settings=settings,
            # No ping per checkout: it would double the round trips of every request. A dead
            # connection fails one request (503) and SQLAlchemy then refreshes the whole pool.
            engine=make_engine(settings, pool_size=settings.api_db_pool_size, pre_ping=False),
            redis=broker,
            available_channels=available_channels(settings),
            key_cache=KeyCache(settings.api_key_cache_seconds),
            # A batch of accepts is one autocommitted round trip (app/ingest.py); its own pool
            # saves setting and resetting the isolation level on every checkout.
            ingest=AcceptWriter(
                make_engine(settings, pool_size=1, pre_ping=False, autocommit=True),
                on_written=waker.wake,
            ),
            rate_limiter=RateLimiter(
                broker, settings.rate_limit_per_second, settings.rate_limit_burst
            ),
            hub=Hub(
                settings.redis_url,
                settings.ws_max_connections,
                settings.ws_max_connections_per_user,
            ),
        )


def services() -> Services:
    """The current Flask app's services."""
    found: Services = current_app.extensions["notification_service"]
    return found

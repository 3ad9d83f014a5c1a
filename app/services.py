"""What a running API process holds: settings and its connections, created once."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app
from sqlalchemy import Engine

from app.auth import KeyCache
from app.db import make_engine
from app.domain import Channel
from app.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    available_channels: frozenset[Channel]
    key_cache: KeyCache

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from tasks.channels import available_channels

        return cls(
            settings=settings,
            # No ping per checkout: it would double the round trips of every request. A dead
            # connection fails one request (503) and SQLAlchemy then refreshes the whole pool.
            engine=make_engine(settings, pool_size=settings.api_threads, pre_ping=False),
            redis=redis.Redis.from_url(
                settings.redis_url, socket_timeout=2, socket_connect_timeout=2
            ),
            available_channels=available_channels(settings),
            key_cache=KeyCache(settings.api_key_cache_seconds),
        )


def services() -> Services:
    """The current Flask app's services."""
    found: Services = current_app.extensions["notification_service"]
    return found

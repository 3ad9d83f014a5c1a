"""What a running API process holds: settings and its connections, created once."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app
from sqlalchemy import Engine

from app.db import make_engine
from app.domain import Channel
from app.hub import Hub
from app.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    available_channels: frozenset[Channel]
    hub: Hub  # this process's WebSockets; its listener thread starts with the first socket

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from tasks.channels import available_channels

        return cls(
            settings=settings,
            engine=make_engine(settings, pool_size=settings.api_threads),
            redis=redis.Redis.from_url(
                settings.redis_url, socket_timeout=2, socket_connect_timeout=2
            ),
            available_channels=available_channels(settings),
            hub=Hub(settings.redis_url, settings.ws_max_connections),
        )


def services() -> Services:
    """The current Flask app's services."""
    found: Services = current_app.extensions["notification_service"]
    return found

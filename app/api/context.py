"""What a running API process holds: the process context and the API's own parts."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.api.ingest import AcceptWriter
from app.api.keys import KeyCache
from app.api.live.hub import Hub
from app.api.ratelimit import RateLimiter
from app.core.process import ProcessContext
from app.core.settings import Settings
from app.core.wake import Waker

EXTENSION = "notification_service"


@dataclass(frozen=True, kw_only=True)
class ApiContext(ProcessContext):
    key_cache: KeyCache
    ingest: AcceptWriter  # this process's group-committing writer of accepts
    rate_limiter: RateLimiter
    hub: Hub  # this process's WebSockets; its listener thread starts with the first socket

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        # No ping per checkout: it would double the round trips of every request. A dead
        # connection fails one request (503) and SQLAlchemy then refreshes the whole pool. The
        # group commit's one autocommitted statement holds one connection of ``statements``.
        process = ProcessContext.connect(settings, pool_size=settings.api_db_pool_size)
        return cls.extend(
            process,
            key_cache=KeyCache(settings.api_key_cache_seconds),
            ingest=AcceptWriter(process.statements, on_written=Waker(process.redis).wake),
            rate_limiter=RateLimiter(
                process.redis, settings.rate_limit_per_second, settings.rate_limit_burst
            ),
            hub=Hub(
                settings,
                settings.ws_max_connections,
                settings.ws_max_connections_per_user,
            ),
        )


def api_context() -> ApiContext:
    """The current Flask app's context."""
    found: ApiContext = current_app.extensions[EXTENSION]
    return found

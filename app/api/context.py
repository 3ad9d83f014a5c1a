"""What a running API process holds: the process context and the API's own parts."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.api.ingest import AcceptWriter
from app.api.keys import KeyCache
from app.api.live.hub import Hub
from app.api.ratelimit import RateLimiter
from app.core.db import ANSWER_GRACE_SECONDS
from app.core.process import ProcessContext
from app.core.redis_clients import redis_client
from app.core.settings import Settings
from app.core.templating import Limits, Templating
from app.core.wake import Waker

EXTENSION = "notification_service"
# The API's own Redis calls (readiness, the inbox's live pushes, relay wake-ups) are tried once
# with this deadline: a hung Redis then costs such a request this much, far inside the 5 s a
# request must be answered within, instead of redis-py's retries of a 2 s read.
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True, kw_only=True)
class ApiContext(ProcessContext):
    key_cache: KeyCache
    ingest: AcceptWriter  # this process's group-committing writer of accepts
    rate_limiter: RateLimiter
    hub: Hub  # this process's WebSockets; its listener thread starts with the first socket
    templating: Templating  # checks templates at PUT, at accept (strict data) and previews

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        # No ping per checkout: it would double the round trips of every request. A dead
        # connection fails one request (503) and SQLAlchemy then refreshes the whole pool. The
        # group commit's one autocommitted statement holds one connection of ``statements``.
        process = ProcessContext.connect(
            settings,
            pool_size=settings.api_db_pool_size,
            redis_timeout_seconds=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        return cls.extend(
            process,
            key_cache=KeyCache(settings.api_key_cache_seconds),
            ingest=AcceptWriter(
                process.statements,
                on_written=Waker(process.redis).wake,
                # As long as a statement on a pooled connection may take to fail, so a request
                # is answered within the same deadline whether it waits here or not.
                answer_within=settings.database_statement_timeout_ms / 1000 + ANSWER_GRACE_SECONDS,
            ),
            rate_limiter=RateLimiter(
                redis_client(
                    settings,
                    timeout=settings.rate_limit_timeout_ms / 1000,
                    retry=Retry(NoBackoff(), 0),
                ),
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
            ),
            hub=Hub(
                settings,
                settings.ws_max_connections,
                settings.ws_max_connections_per_user,
                settings.ws_max_pending,
            ),
            templating=Templating(Limits.of(settings), strict_data=True),
        )

    def close(self) -> None:
        """Stop the writer and close the sockets, then every connection (tests build many apps
        in one process)."""
        self.ingest.close()
        self.hub.shutdown()
        super().close()


def api_context() -> ApiContext:
    """The current Flask app's context."""
    found: ApiContext = current_app.extensions[EXTENSION]
    return found

"""Names of this service's Redis pub/sub channels, scoped to the Redis database in use.

Pub/sub channels belong to the whole Redis server, not to one of its numbered databases: two
deployments on databases 3 and 4 of one server would wake each other's relays and, worse, each
would forward the other's inbox events to its own users of the same id. So every channel name
starts with the database number, as kombu scopes Celery's fan-out channels (``/3.``).
"""

from __future__ import annotations

import redis
import redis.asyncio


def channel(client: redis.Redis | redis.asyncio.Redis, name: str) -> str:
    """``name`` as published and subscribed through ``client``'s database."""
    return f"/{client.connection_pool.connection_kwargs.get('db', 0)}.{name}"

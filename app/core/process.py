"""What every process holds, built once from one ``Settings``: the API's workers, the relay and
the Celery workers each extend this one shape with their own parts (app/api/context.py,
relay/main.py, tasks/deliver.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Self

import redis
from sqlalchemy import Engine

from app.core.db import make_engine
from app.core.redis_clients import redis_client
from app.core.settings import Settings


@dataclass(frozen=True, kw_only=True)
class ProcessContext:
    settings: Settings
    # Transactions: ``with transaction(engine) as conn``; store functions take that ``conn``.
    engine: Engine
    # Autocommit: one guarded statement is one round trip (BEGIN and COMMIT would be two more).
    statements: Engine
    redis: redis.Redis
    pid: int = field(default_factory=os.getpid)  # a forked child builds its own

    @classmethod
    def connect(
        cls,
        settings: Settings,
        *,
        pool_size: int,
        pre_ping: bool = False,
        statements_pool_size: int = 1,
        redis_timeout_seconds: float = 2.0,
        statement_timeout_ms: int | None = None,
        **redis_options: Any,
    ) -> ProcessContext:
        """Connections are opened on first use, so building a context costs nothing. Every
        connection has the settings' deadlines (``statement_timeout_ms`` for a process whose
        statements may run long, see make_engine); ``redis_options`` are redis-py's."""
        return ProcessContext(
            settings=settings,
            engine=make_engine(
                settings,
                pool_size=pool_size,
                pre_ping=pre_ping,
                statement_timeout_ms=statement_timeout_ms,
            ),
            statements=make_engine(
                settings,
                pool_size=statements_pool_size,
                pre_ping=False,
                autocommit=True,
                statement_timeout_ms=statement_timeout_ms,
            ),
            redis=redis_client(settings, timeout=redis_timeout_seconds, **redis_options),
        )

    @classmethod
    def extend(cls, base: ProcessContext, **parts: Any) -> Self:
        """``base`` with a process kind's own parts."""
        shared = {f.name: getattr(base, f.name) for f in fields(ProcessContext)}
        return cls(**shared, **parts)

    def close(self) -> None:
        self.engine.dispose()
        self.statements.dispose()
        self.redis.close()

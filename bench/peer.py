"""The peer: procrastinate 3.10, a PostgreSQL-backed job queue, on the same no-op work."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import harness


def _conninfo() -> str:
    return str(make_url(harness.DATABASE_URL).set(database="bench_peer")).replace("+psycopg2", "")


def measure(jobs: int = 5_000, concurrency: int = 10) -> tuple[float, float]:
    """(jobs deferred one by one per second, jobs drained by one worker per second)."""
    import procrastinate

    admin = create_engine(
        make_url(harness.DATABASE_URL).set(drivername="postgresql+psycopg2", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS bench_peer WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE bench_peer"))
    admin.dispose()

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_conninfo()))

    @app.task(queue="bench", name="noop")
    async def noop(i: int) -> None:
        return None

    with app.open():
        app.schema_manager.apply_schema()
        start = time.perf_counter()
        for i in range(jobs):
            noop.defer(i=i)
        defer_rate = jobs / (time.perf_counter() - start)
        start = time.perf_counter()
        app.run_worker(
            queues=["bench"],
            concurrency=concurrency,
            wait=False,
            install_signal_handlers=False,
            delete_jobs="always",
        )
        drain_rate = jobs / (time.perf_counter() - start)
    return defer_rate, drain_rate

"""What every benchmark stage shares: a scratch database and Redis, processes, wrk, timing."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, text

from app.core.db import ensure_database, make_engine, migrate
from app.core.settings import Settings

BIN = Path(sys.executable).parent
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/notifications_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
LOG_DIR = Path(tempfile.mkdtemp(prefix="bench-logs-"))

SETTINGS = Settings(
    database_url=DATABASE_URL,
    redis_url=REDIS_URL,
    email_provider="noop",
    log_level="WARNING",
    relay_metrics_port=0,
    worker_metrics_port=0,
    relay_batch_size=500,
    relay_poll_interval_ms=1000,
    sweeper_interval_seconds=3600,
    retention_interval_seconds=36000,
    # The limiter still runs on every request (its cost is measured), but never refuses.
    rate_limit_per_second=1_000_000.0,
    rate_limit_burst=2_000_000,
)


def settings(**overrides: Any) -> Settings:
    return replace(SETTINGS, **overrides)


def env_for(s: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **s.to_env(), **extra}


def fresh_database() -> Engine:
    """An empty schema, built by the migrations, and an empty Redis database."""
    ensure_database(DATABASE_URL)
    engine = make_engine(SETTINGS, pool_size=4, statement_timeout_ms=0)  # backlogs: bulk work
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(DATABASE_URL)
    broker().flushdb()
    return engine


def broker() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def reset(engine: Engine) -> None:
    """Empty tables whose size the planner does not know. Not VACUUM ANALYZE: that records them
    as empty, and every plan made during the stage (the foreign-key checks of each insert, the
    prepared accept, the claims) then scans them sequentially while they grow: PostgreSQL spent
    0.75 instead of 0.1 ms of CPU per accepted notification in the API stage that way."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE audit_log, outbox_event, delivery, notification, user_profile, preference"
                " RESTART IDENTITY CASCADE"
            )
        )
    broker().flushdb()


@contextmanager
def process(name: str, argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    log = (LOG_DIR / f"{name}.log").open("ab")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Seconds until ``predicate`` held; raises after ``timeout``."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"benchmark stage did not finish in {timeout}s")
        time.sleep(interval)
    return time.perf_counter() - start


def wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    def up() -> bool:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except Exception as exc:  # any answer at all means the server is up
            return hasattr(exc, "code")

    wait_until(up, timeout, 0.1)


def warm_up(url: str, body: str, headers: dict[str, str]) -> None:
    """Two seconds of the same load, not counted. gunicorn answers its first request before
    every worker has loaded the app, and wrk keeps its connections for the whole run: started
    at once, it could hand all of them to the one worker that was ready, and measure half the
    server (it did so in two runs of five)."""
    wrk_post(url, body, headers, 2, 32)


def wrk_post(url: str, body: str, headers: dict[str, str], seconds: int, connections: int) -> float:
    """Requests per second that wrk sustained; fails if any answer was not 2xx."""
    script = LOG_DIR / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = [[{body}]]"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", f"-c{connections}", "-t2", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"wrk saw {bad.group(1)} failed responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))

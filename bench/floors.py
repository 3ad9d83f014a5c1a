"""Floors: what PostgreSQL, Redis and stock Celery do on this machine with no service around."""

from __future__ import annotations

import os
import threading
import time

from sqlalchemy import Engine, text

from bench import harness

SEED_BODY = (
    '{"type":"TRANSACTIONAL","priority":"HIGH","recipientEmail":"user@example.com",'
    '"subject":"Test Notification","body":"This is a test","channels":["EMAIL"]}'
)


def commit_floor(engine: Engine, seconds: float = 3) -> float:
    """Single-row INSERT + COMMIT on one connection: rows/s."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_commit; CREATE TABLE bench_commit (v int)"))
    raw = engine.raw_connection()
    cur = raw.cursor()
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        cur.execute("INSERT INTO bench_commit VALUES (1)")
        raw.commit()
        done += 1
    rate = done / (time.perf_counter() - start)
    raw.close()
    return rate


def notify_cost(engine: Engine, threads: int = 16, seconds: float = 4) -> tuple[float, float]:
    """Concurrent INSERT + COMMIT with and without NOTIFY in the transaction: commits/s each.
    A transaction that issued NOTIFY holds a global lock through its commit."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_notify; CREATE TABLE bench_notify (v int)"))
    # A connection per client: the harness's pool is smaller, and its checkout deadline (the
    # connect deadline) is shorter than a client would wait for another's connection.
    engine = harness.make_engine(harness.SETTINGS, pool_size=threads)

    def run(statement: str) -> float:
        counts = [0] * threads
        stop = time.perf_counter() + seconds

        def client(i: int) -> None:
            raw = engine.raw_connection()
            cur = raw.cursor()
            while time.perf_counter() < stop:
                cur.execute(statement)
                raw.commit()
                counts[i] += 1
            raw.close()

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(counts) / seconds

    plain = run("INSERT INTO bench_notify VALUES (1)")
    notified = run("INSERT INTO bench_notify VALUES (1); SELECT pg_notify('bench', '')")
    engine.dispose()
    return plain, notified


def claim_floor(engine: Engine, rows: int = 50_000) -> float:
    """``UPDATE … WHERE id IN (SELECT … LIMIT 500 FOR UPDATE SKIP LOCKED) RETURNING``: rows/s."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "DROP TABLE IF EXISTS bench_claim;"
                " CREATE TABLE bench_claim (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " priority smallint NOT NULL, available_at timestamptz NOT NULL DEFAULT now(),"
                " status text NOT NULL DEFAULT 'PENDING', payload uuid DEFAULT gen_random_uuid());"
                " CREATE INDEX ON bench_claim (priority, available_at) WHERE status = 'PENDING';"
                f" INSERT INTO bench_claim (priority) SELECT 1 FROM generate_series(1, {rows});"
                " ANALYZE bench_claim;"
            )
        )
    claimed, start = 0, time.perf_counter()
    while True:
        with engine.begin() as conn:
            n = len(
                conn.execute(
                    text(
                        "UPDATE bench_claim SET status = 'DISPATCHED' WHERE id IN ("
                        " SELECT id FROM bench_claim WHERE status = 'PENDING'"
                        " AND available_at <= now() ORDER BY priority, available_at"
                        " LIMIT 500 FOR UPDATE SKIP LOCKED) RETURNING id, payload"
                    )
                ).all()
            )
        claimed += n
        if n < 500:
            break
    return claimed / (time.perf_counter() - start)


def broker_floor(messages: int = 100_000) -> float:
    """redis-py LPUSH in pipelines of 500, ~600-byte values: messages/s."""
    client = harness.broker()
    client.delete("bench_floor")
    value = os.urandom(300).hex()
    start = time.perf_counter()
    for _offset in range(0, messages, 500):
        pipe = client.pipeline(transaction=False)
        for _ in range(500):
            pipe.lpush("bench_floor", value)
        pipe.execute()
    rate = messages / (time.perf_counter() - start)
    client.delete("bench_floor")
    return rate


def naive_relay(messages: int = 5_000) -> float:
    """Celery ``apply_async`` one by one with a shared producer: tasks/s."""
    from bench.naive_worker import app, noop

    harness.broker().delete("naive")
    start = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(messages):
            noop.apply_async((i,), producer=producer)
    return messages / (time.perf_counter() - start)


def naive_worker(messages: int = 5_000, pool: str = "threads", concurrency: int = 8) -> float:
    """A stock Celery worker draining no-op tasks with acks_late: tasks/s."""
    client = harness.broker()
    client.delete("naive")
    naive_relay(messages)
    argv = [
        str(harness.BIN / "celery"),
        "-A",
        "bench.naive_worker",
        "worker",
        "-Q",
        "naive",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--loglevel=WARNING",
        "--without-mingle",
        "--without-gossip",
    ]
    with harness.process(f"naive-worker-{pool}", argv, harness.env_for(harness.SETTINGS)):
        harness.wait_until(lambda: client.llen("naive") < messages, 60)
        start = time.perf_counter()
        left = client.llen("naive")
        harness.wait_until(
            lambda: client.llen("naive") == 0 and client.hlen("unacked") == 0, 120, 0.005
        )
        return left / (time.perf_counter() - start)


def api_floors(seconds: int = 10) -> tuple[float, float]:
    """Bare Flask and Flask + two INSERTs, gunicorn with 2 sync workers, wrk -c32: req/s."""
    engine = harness.make_engine(harness.SETTINGS, pool_size=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "DROP TABLE IF EXISTS bench_b, bench_a;"
                " CREATE TABLE bench_a (id uuid PRIMARY KEY, body text);"
                " CREATE TABLE bench_b (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " a_id uuid REFERENCES bench_a (id))"
            )
        )
    engine.dispose()
    port = 18081
    argv = [
        str(harness.BIN / "gunicorn"),
        "-w",
        "2",
        "-k",
        "sync",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "bench.floor_app:app",
    ]
    headers = {"Content-Type": "application/json"}
    with harness.process("floor-api", argv, harness.env_for(harness.SETTINGS)):
        harness.wait_http(f"http://127.0.0.1:{port}/")
        harness.warm_up(f"http://127.0.0.1:{port}/bare", SEED_BODY, headers)
        bare = harness.wrk_post(f"http://127.0.0.1:{port}/bare", SEED_BODY, headers, seconds, 32)
        naive = harness.wrk_post(f"http://127.0.0.1:{port}/naive", SEED_BODY, headers, seconds, 32)
    return bare, naive

"""This service's stages, through its real processes, with the no-op provider."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from app.core.domain import Priority
from app.store import templates
from bench import harness
from bench.floors import SEED_BODY
from tests.helpers.factories import insert_backlog

API_PORT = 18080


# A two-variable email template, as a caller would store it (issue 16's bench row).
BENCH_TEMPLATE = "bench-order"
BENCH_TEMPLATE_CONTENT = {
    "channels": {
        "EMAIL": {
            "subject": "Order {{ data.orderId }} shipped",
            "text": "Hi {{ data.name }}, your order is on its way.",
        }
    }
}


def consenting_recipients(engine: Engine) -> None:
    """Give the backlog's notifications what issue 15 judges at claim: each names a user with a
    profile (its address comes from there), preferences (SMS off, the category on) and a
    declared, opt-outable category, so every check runs and every delivery is still sent."""
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO category (project_id, key, default_channels)
                VALUES ('default', 'news', ARRAY['EMAIL', 'SMS']) ON CONFLICT DO NOTHING;
                UPDATE notification SET user_id = 'user-' || id, category = 'news',
                                         recipient_email = NULL;
                INSERT INTO user_profile (project_id, user_id, email, name, timezone)
                SELECT 'default', 'user-' || id, id || '@example.com', 'Name', 'Europe/Lisbon'
                FROM notification ON CONFLICT DO NOTHING;
                INSERT INTO preference (project_id, user_id, channels, categories)
                SELECT 'default', 'user-' || id, '{"SMS": false}', '{"news": {"EMAIL": true}}'
                FROM notification ON CONFLICT DO NOTHING;
                """
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE notification, user_profile, preference, category"))


def backlog(engine: Engine, count: int, template: str | None = None) -> None:
    """``count`` due EMAIL notifications with deliveries and outbox rows, as the API writes them
    (the tests' factory), then fresh planner statistics so every stage starts alike. With
    ``template``, each is sent with the bench template instead of its own subject and body."""
    if template is not None:
        with engine.begin() as conn:
            templates.put(conn, "default", "template", template, BENCH_TEMPLATE_CONTENT)
    insert_backlog(engine, count, priority=Priority.NORMAL, template=template)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE notification, delivery, outbox_event"))


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(sql)))


def _relay(name: str, **env: str):  # type: ignore[no-untyped-def]
    argv = [str(harness.BIN / "notification-service"), "relay"]
    return harness.process(name, argv, harness.env_for(harness.SETTINGS, **env))


def _worker(name: str, concurrency: int = 4, **env: str):  # type: ignore[no-untyped-def]
    argv = [str(harness.BIN / "notification-service"), "worker", "--queues", "email"]
    extra = {"WORKER_CONCURRENCY": str(concurrency), **env}
    return harness.process(name, argv, harness.env_for(harness.SETTINGS, **extra))


def _api(workers: int):  # type: ignore[no-untyped-def]
    argv = [
        str(harness.BIN / "notification-service"),
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(API_PORT),
    ]
    env = {"API_WORKERS": str(workers)}
    return harness.process(f"api-{workers}", argv, harness.env_for(harness.SETTINGS, **env))


# The same request naming the bench template instead of carrying its subject and body.
TEMPLATE_BODY = (
    '{"type":"TRANSACTIONAL","priority":"HIGH","recipientEmail":"user@example.com",'
    f'"template":"{BENCH_TEMPLATE}","data":{{"orderId":1234,"name":"Ana"}},"channels":["EMAIL"]}}'
)


def api_rate(engine: Engine, workers: int, seconds: int = 10, body: str = SEED_BODY) -> float:
    """Accepted notifications/s (one channel) through gunicorn, wrk -c32."""
    harness.reset(engine)
    key = create_api_key(engine, "bench-api").key
    if body == TEMPLATE_BODY:
        with engine.begin() as conn:
            templates.put(conn, "default", "template", BENCH_TEMPLATE, BENCH_TEMPLATE_CONTENT)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    with _api(workers):
        harness.wait_http(f"http://127.0.0.1:{API_PORT}/api/v1/health/live")
        url = f"http://127.0.0.1:{API_PORT}/api/v1/notifications"
        harness.warm_up(url, body, headers)
        return harness.wrk_post(url, body, headers, seconds, 32)


def relay_rate(engine: Engine, rows: int, chunk: int) -> float:
    """Outbox rows → Celery messages per second, one relay process."""
    harness.reset(engine)
    backlog(engine, rows)
    with _relay(f"relay-chunk{chunk}", RELAY_TASK_CHUNK=str(chunk)):
        pending = "SELECT count(*) FROM outbox_event WHERE status = 'PENDING'"
        harness.wait_until(lambda: _count(engine, pending) < rows, 60)
        start = time.perf_counter()
        left = _count(engine, pending)
        harness.wait_until(lambda: _count(engine, pending) == 0, 300, 0.005)
        return left / (time.perf_counter() - start)


def worker_rate(
    engine: Engine,
    rows: int,
    chunk: int,
    concurrency: int = 8,
    template: str | None = None,
    consent: bool = False,
) -> float:
    """Deliveries/s of one worker process draining a published backlog (no-op provider); with
    ``consent``, every delivery is judged against its recipient's profile and preferences."""
    harness.reset(engine)
    backlog(engine, rows, template)
    if consent:
        consenting_recipients(engine)
    with _relay("relay-prefill", RELAY_TASK_CHUNK=str(chunk)):
        pending = "SELECT count(*) FROM outbox_event WHERE status = 'PENDING'"
        harness.wait_until(lambda: _count(engine, pending) == 0, 300, 0.05)
    with _worker(f"worker-chunk{chunk}", concurrency):
        harness.wait_until(
            lambda: _count(engine, "SELECT count(*) FROM delivery WHERE status = 'SENT'") == rows,
            300,
            0.05,
        )
    span = "SELECT EXTRACT(EPOCH FROM max(sent_at) - min(sent_at)) FROM delivery"
    with engine.connect() as conn:
        seconds = float(conn.scalar(text(span)))
    return (rows - 1) / seconds


def end_to_end(engine: Engine, rows: int, chunk: int, workers: int, concurrency: int) -> float:
    """From a backlog of ``rows`` to all SENT with a relay and ``workers`` worker processes."""
    harness.reset(engine)
    backlog(engine, rows)
    sent = "SELECT count(*) FROM delivery WHERE status = 'SENT'"
    from contextlib import ExitStack

    with ExitStack() as stack:
        for i in range(workers):
            stack.enter_context(_worker(f"e2e-worker{i}", concurrency))
        time.sleep(3)  # workers up before the clock starts
        start = time.perf_counter()
        stack.enter_context(_relay("e2e-relay", RELAY_TASK_CHUNK=str(chunk)))
        harness.wait_until(lambda: _count(engine, sent) == rows, 600, 0.05)
        return rows / (time.perf_counter() - start)


@dataclass(frozen=True)
class Live:
    offered_per_second: float
    achieved_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sent: int
    accepted: int


def live(engine: Engine, rate: float, seconds: float, chunk: int, worker_threads: int = 4) -> Live:
    """An open-loop load of ``rate`` POSTs/s for ``seconds`` through the whole system; latency
    from acceptance (the API's transaction) to the provider call's outcome being recorded.

    One second of the same load goes first and is not counted: it warms every process (the
    worker's threads open their connections on their first task, which alone put 2 % of a
    20-second light run past 200 ms)."""
    harness.reset(engine)
    key = create_api_key(engine, "bench-live").key
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    total = int(rate * seconds)
    from contextlib import ExitStack

    with ExitStack() as stack:
        # One API process: at these rates it is not CPU-bound, and a second one only adds
        # CPU contention on two cores (threaded worker: 2 x 8 gave p50 31 ms where 1 x 8
        # gave 22, same run).
        stack.enter_context(_api(1))
        stack.enter_context(_worker("live-worker", worker_threads))
        stack.enter_context(_relay("live-relay", RELAY_TASK_CHUNK=str(chunk)))
        harness.wait_http(f"http://127.0.0.1:{API_PORT}/api/v1/health/live")
        time.sleep(3)
        sent = "SELECT count(*) FROM delivery WHERE status = 'SENT'"
        warm = _open_loop(int(rate), rate, headers)
        harness.wait_until(lambda: _count(engine, sent) >= warm, 60, 0.05)
        with engine.connect() as conn:
            since = conn.scalar(text("SELECT now()"))
        accepted = _open_loop(total, rate, headers)
        harness.wait_until(lambda: _count(engine, sent) >= warm + accepted, 120, 0.1)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), count(*)"
                " FROM (SELECT EXTRACT(EPOCH FROM d.sent_at - n.created_at) * 1000 AS ms"
                " FROM delivery d JOIN notification n ON n.id = d.notification_id"
                " WHERE d.status = 'SENT' AND n.created_at > :since) t"
            ),
            {"since": since},
        ).one()
        span = conn.scalar(
            text(
                "SELECT EXTRACT(EPOCH FROM max(created_at) - min(created_at)) FROM notification"
                " WHERE created_at > :since"
            ),
            {"since": since},
        )
    return Live(rate, accepted / float(span or 1), row[0], row[1], row[2], row[3], accepted)


def _open_loop(total: int, rate: float, headers: dict[str, str], threads: int = 16) -> int:
    """Send ``total`` POSTs on a fixed schedule (request i at start + i/rate), whatever the
    latency of earlier ones; returns how many were accepted (202).

    Raw kept-alive sockets and one prepared request: http.client parsed every response's
    headers with the email package and took a sixth of the two cores at 500/s, CPU that the
    service under test then lacked."""
    request = (
        "POST /api/v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + f"Content-Length: {len(SEED_BODY.encode())}\r\n\r\n{SEED_BODY}"
    ).encode()
    lock = threading.Lock()
    state = {"next": 0, "accepted": 0}
    start = time.perf_counter() + 0.2

    def sender() -> None:
        sock = socket.create_connection(("127.0.0.1", API_PORT), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
            if index >= total:
                break
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(request)
            status, buffer = _read_response(sock, buffer)
            if status == 202:
                with lock:
                    state["accepted"] += 1
        sock.close()

    pool = [threading.Thread(target=sender) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return state["accepted"]


def _read_response(sock: socket.socket, buffer: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 response's status from a kept-alive socket (its body sized by
    Content-Length, as every API answer is); returns what was read past it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the API closed the connection")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the API closed the connection")
        rest += chunk
    return int(lines[0].split()[1]), rest[length:]

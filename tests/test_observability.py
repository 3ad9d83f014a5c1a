"""Operators' view: metrics from every process, correlated JSON logs, gauges, retention."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace
from typing import Any

import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from app.core.domain import Channel
from app.core.settings import Settings
from relay.main import export_gauges
from relay.retention import purge
from tests.helpers.api import SEED
from tests.helpers.db import status_counts
from tests.helpers.factories import insert_backlog
from tests.helpers.net import free_port
from tests.helpers.processes import BIN, Processes, settings_env, wait_for
from tests.standins.smtp import SmtpStandIn

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int, path: str = "/metrics") -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels. A missing sample fails the test: it is not a 0,
    it is a metric that was never exported (or exported under other labels)."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        others = sorted(str(dict(other)) for sample, other in samples if sample == name)
        raise AssertionError(f"no sample {name} {labels}; its samples: {others or 'none'}")
    return samples[key]


def registry_value(name: str, **labels: str) -> float:
    """The same, from this process's own registry (``get_sample_value`` answers None)."""
    found = REGISTRY.get_sample_value(name, labels)
    if found is None:
        raise AssertionError(f"no sample {name} {labels} in this process's registry")
    return found


def http_json(method: str, url: str, key: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def json_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_every_process_exports_metrics_that_move_by_the_right_amounts_and_logs_correlate(
    processes: Processes, smtp: SmtpStandIn, api_key: str, engine: Engine
) -> None:
    api_port, relay_port, worker_port = free_port(), free_port(), free_port()
    smtp.plan("bounce@example.com", 550)
    smtp.plan("later@example.com", 451)
    api = processes.spawn(
        "api",
        [str(BIN / "notification-service"), "api", "--host", "127.0.0.1", "--port", str(api_port)],
        settings_env(processes.settings, API_WORKERS="2", API_CONNECTIONS="50"),
        ready="Booting worker",
    )
    # One task per delivery, so provider calls can be counted exactly.
    relay = processes.relay(RELAY_METRICS_PORT=str(relay_port), RELAY_TASK_CHUNK="1")
    worker = processes.worker(WORKER_METRICS_PORT=str(worker_port))
    base = f"http://127.0.0.1:{api_port}/api/v1/notifications"
    wait_for(lambda: _answers(f"http://127.0.0.1:{api_port}/api/v1/health/live"), what="API up")

    created = [
        http_json("POST", base, api_key, {**SEED, "recipientEmail": r})
        for r in ("user@example.com", "bounce@example.com", "later@example.com")
    ]
    wait_for(lambda: status_counts(engine) == {"SENT": 2, "FAILED": 1}, what="all finished")

    # Several scrapes, answered by either gunicorn worker, all show the whole API's counts.
    for _ in range(4):
        api_samples = scrape(api_port)
        assert value(api_samples, "notifications_accepted_total", channel="EMAIL") == 3
        assert value(api_samples, "flask_http_request_total", method="POST", status="202") == 3
        route = {"method": "POST", "path": "/api/v1/notifications", "status": "202"}
        assert value(api_samples, "flask_http_request_duration_seconds_count", **route) == 3
        assert 0 < value(api_samples, "flask_http_request_duration_seconds_sum", **route) < 30
    # The path label is the route, never a URL with an id in it; scrapes are not counted.
    http_json("GET", f"{base}/{created[0]['id']}", api_key)
    paths = {dict(labels).get("path") for _, labels in scrape(api_port)}
    assert "/api/v1/notifications/<notification_id>" in paths
    assert not {p for p in paths if p and (created[0]["id"] in p or p == "/metrics")}
    relay_samples = scrape(relay_port)
    assert value(relay_samples, "outbox_events_processed_total", channel="EMAIL") == 3
    assert value(relay_samples, "relay_batch_size_sum") == 3
    assert value(relay_samples, "outbox_lag_seconds") == 0
    assert value(relay_samples, "celery_queue_depth", queue="email") == 0
    worker_samples = scrape(worker_port)
    assert value(worker_samples, "notifications_delivered_total", channel="EMAIL") == 2
    failed = value(worker_samples, "notifications_failed_total", channel="EMAIL", reason="smtp_550")
    assert failed == 1
    assert value(worker_samples, "notification_retries_total", channel="EMAIL") == 1
    latency = "notification_delivery_latency_seconds_count"
    assert value(worker_samples, latency, channel="EMAIL") == 2
    assert value(worker_samples, "provider_call_duration_seconds_count", channel="EMAIL") == 4

    # JSON logs: one notification's id and request id appear in the API's, the relay's and
    # the worker's lines; no recipient address and no API key appears anywhere.
    first = created[0]["id"]
    by_process = {p.name: json_lines(p.log()) for p in (api, relay, worker)}
    request_ids = set()
    for name, lines in by_process.items():
        mine = [line for line in lines if line.get("notification_id") == first]
        assert mine, f"no {name} log line carries notification {first}"
        request_ids |= {line["request_id"] for line in mine}
    assert len(request_ids) == 1
    delivery_id = created[0]["deliveries"][0]["id"]
    assert any(line.get("delivery_id") == delivery_id for line in by_process["worker-email"])
    for process in (api, relay, worker):
        assert "@example.com" not in process.log()
        assert api_key not in process.log()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def test_queue_depth_adds_up_every_priority_list_and_outbox_lag_ages(
    processes: Processes, engine: Engine, redis_client: redis.Redis, settings: Settings
) -> None:
    from app.core.domain import Priority

    insert_backlog(engine, 2, priority=Priority.HIGH, prefix="h")
    insert_backlog(engine, 3, priority=Priority.LOW, prefix="l")
    relay = processes.relay(RELAY_TASK_CHUNK="1")  # one message per delivery, to count them
    wait_for(lambda: status_counts(engine) == {"QUEUED": 5}, what="dispatch")
    relay.stop()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox_event (delivery_id, channel, priority, available_at)"
                " SELECT id, 'EMAIL', 1, now() - interval '90 seconds' FROM delivery LIMIT 1"
            )
        )

    export_gauges(engine, redis_client)

    assert redis_client.llen("email") == 2 and redis_client.llen("email:2") == 3
    assert registry_value("celery_queue_depth", queue=Channel.EMAIL.queue) == 5
    assert registry_value("celery_queue_depth", queue=Channel.SMS.queue) == 0
    assert 90 <= registry_value("outbox_lag_seconds") < 120


def test_retention_deletes_exactly_what_is_past_its_age(engine: Engine, settings: Settings) -> None:
    insert_backlog(engine, 6)
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                UPDATE outbox_event SET status = 'DISPATCHED',
                    dispatched_at = now() - CASE WHEN id <= 3 THEN interval '4 days'
                                                 ELSE interval '1 hour' END
                WHERE id <= 5;
                UPDATE outbox_event SET available_at = now() - interval '9 days' WHERE id = 6;
                UPDATE delivery SET status = 'QUEUED';
                UPDATE audit_log SET created_at = now() - interval '100 days'
                WHERE id IN (SELECT id FROM audit_log ORDER BY id LIMIT 4);
                """
            )
        )

    purged = purge(engine, replace(settings, retention_batch_size=2))

    with engine.connect() as conn:
        outbox = conn.execute(text("SELECT id, status FROM outbox_event ORDER BY id")).all()
        audit_left = conn.scalar(text("SELECT count(*) FROM audit_log"))
    assert (purged.outbox_events, purged.audit_rows) == (3, 4)
    assert [tuple(r) for r in outbox] == [(4, "DISPATCHED"), (5, "DISPATCHED"), (6, "PENDING")]
    assert audit_left == 2

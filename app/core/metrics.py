"""Every Prometheus metric the service exports, named once.

The API serves these (with prometheus-flask-exporter's request metrics) at ``/metrics`` on its
own port; the relay and each worker serve theirs on ``RELAY_METRICS_PORT`` and
``WORKER_METRICS_PORT``. Alerts and dashboards in ``k8s/`` use only names defined here.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

# API
NOTIFICATIONS_ACCEPTED = Counter(
    "notifications_accepted",
    "Notifications accepted by the API, per requested channel",
    ["channel"],
)
WEBSOCKETS_OPEN = Gauge(
    "inapp_websockets_open",
    "In-app WebSockets open, summed over the API's live worker processes",
    multiprocess_mode="livesum",
)
WEBSOCKET_EVENTS_FORWARDED = Counter(
    "inapp_websocket_events_forwarded",
    "Inbox events (items, read and delete marks) handed to open WebSockets",
)

# Relay
OUTBOX_EVENTS_PROCESSED = Counter(
    "outbox_events_processed", "Outbox events the relay published to Celery", ["channel"]
)
RELAY_BATCH_SIZE = Histogram(
    "relay_batch_size",
    "Outbox rows claimed per relay transaction",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
OUTBOX_LAG = Gauge("outbox_lag_seconds", "Age of the oldest due PENDING outbox row (0 if none)")
QUEUE_DEPTH = Gauge(
    "celery_queue_depth",
    "Messages waiting in a channel's Celery queue, all priority lists added up",
    ["queue"],
)
SWEEPER_REDRIVEN = Counter("sweeper_redriven", "Deliveries the sweeper re-drove through the outbox")

# Workers
NOTIFICATIONS_DELIVERED = Counter(
    "notifications_delivered", "Deliveries the provider accepted", ["channel"]
)
NOTIFICATIONS_FAILED = Counter(
    "notifications_failed",
    "Deliveries that ended FAILED or EXPIRED; reason is the error code",
    ["channel", "reason"],
)
NOTIFICATIONS_SKIPPED = Counter(
    "notifications_skipped",
    "Deliveries settled SKIPPED at claim, never sent; reason: preference_opt_out, suppressed,"
    " quiet_hours_expired",
    ["channel", "reason"],
)
NOTIFICATION_RETRIES = Counter(
    "notification_retries", "Delivery attempts that will be retried", ["channel"]
)
DELIVERY_LATENCY = Histogram(
    "notification_delivery_latency_seconds",
    "From acceptance by the API to the provider accepting the delivery",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_CALL_DURATION = Histogram(
    "provider_call_duration_seconds",
    "Duration of one provider send call (a chunk of deliveries)",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)

# Every API request, under the names and labels prometheus-flask-exporter's defaults use
# (dashboards and alerts rely on them), recorded by app/api/factory.py's after-request hook
# instead of the exporter's: its hooks probe the request proxy a dozen times, four of them for
# attributes that are missing (an AttributeError each), a measurable share of the API's
# throughput. The exporter still serves ``/metrics`` (app/api/metrics.py).
HTTP_REQUESTS = Counter(
    "flask_http_request_total", "Total number of HTTP requests", ["method", "status"]
)
HTTP_REQUEST_DURATION = Histogram(
    "flask_http_request_duration_seconds",
    "Flask HTTP request duration in seconds",
    ["method", "path", "status"],  # path: the route (``url_rule``), never the URL with its ids
)
API_REQUEST_METRICS = ("flask_http_request_total", "flask_http_request_duration_seconds")
METRICS_ENDPOINT = "prometheus_metrics"  # the exporter's view; scrapes are not counted


def observe_request(method: str, route: object, status: int, seconds: float) -> None:
    """Count one answered request and its duration; ``route`` is the matched rule, None when
    no route matched (its label is then "None", as the exporter wrote it)."""
    HTTP_REQUESTS.labels(method, status).inc()
    HTTP_REQUEST_DURATION.labels(method, route, status).observe(seconds)


def metrics_registry() -> CollectorRegistry:
    """What a process serves: every process's files in multiprocess mode, else its own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def serve_metrics(port: int, what: str) -> None:
    """Serve ``/metrics`` on ``port`` from a daemon thread (0 = off). A port already taken is
    logged, not fatal: losing metrics must not stop deliveries."""
    if port <= 0:
        return
    try:
        start_http_server(port, registry=metrics_registry())
        log.info("%s metrics on :%d/metrics", what, port)
    except OSError as exc:
        log.warning("%s metrics not served on :%d: %s", what, port, exc)

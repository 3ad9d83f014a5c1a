"""The API's ``/metrics``: prometheus-flask-exporter serving the API metrics of
app/core/metrics.py."""

from __future__ import annotations

import os

from flask import Flask
from prometheus_client import CollectorRegistry

from app.core.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    NOTIFICATIONS_ACCEPTED,
    WEBSOCKET_EVENTS_FORWARDED,
    WEBSOCKETS_OPEN,
)


def init_flask_metrics(app: Flask) -> None:
    """``/metrics`` on the API, serving the API metrics above.

    Under gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set by ``notification-service api``) every
    worker writes its samples to files and ``/metrics`` adds them up, so a scrape answered by
    any worker is the whole API's.
    """
    from prometheus_flask_exporter import PrometheusMetrics
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        GunicornInternalPrometheusMetrics(app, export_defaults=False)
        return
    # One registry per app, so tests may build many apps in one process.
    registry = CollectorRegistry()
    for collector in (
        NOTIFICATIONS_ACCEPTED,
        WEBSOCKETS_OPEN,
        WEBSOCKET_EVENTS_FORWARDED,
        HTTP_REQUESTS,
        HTTP_REQUEST_DURATION,
    ):
        registry.register(collector)
    PrometheusMetrics(app, registry=registry, export_defaults=False)

"""The worker process's Celery app, built from the environment: the module ``celery -A tasks``
loads, and the only one in the project with import-time side effects."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, worker_init

from app.core import metrics
from app.core.logs import configure_logging
from app.core.settings import Settings
from tasks.app import make_celery

settings = Settings.from_env()
app = make_celery(settings)


def _configure_logging(**_: Any) -> None:
    """Workers log like every other process, whether started by notification-service or celery."""
    configure_logging(settings)


def _serve_worker_metrics(**_: Any) -> None:
    metrics.serve_metrics(settings.worker_metrics_port, "worker")


setup_logging.connect(_configure_logging)
worker_init.connect(_serve_worker_metrics)

"""The worker process's Celery app, built from the environment: the module ``celery -A tasks``
loads, and the only one in the project with import-time side effects."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_init

from app.core import metrics
from app.core.logs import configure_logging
from app.core.settings import Settings
from tasks.app import make_celery

settings = Settings.from_env()
app = make_celery(settings)


class _AckLostToBrokerOutage(logging.Filter):
    """Celery logs an ack that Redis did not take as CRITICAL with a traceback. It is neither:
    the message stays unacknowledged, Redis hands it out again after the visibility timeout,
    and the delivery's guarded claim makes that copy a no-op. One warning line says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Couldn't ack"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.getMessage()} (the broker redelivers it; its claim is a no-op)"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def _configure_logging(**_: Any) -> None:
    """Workers log like every other process, whether started by notification-service or celery."""
    configure_logging(settings)
    logging.getLogger("celery.worker.request").addFilter(_AckLostToBrokerOutage())


def _serve_worker_metrics(**_: Any) -> None:
    metrics.serve_metrics(settings.worker_metrics_port, "worker")


setup_logging.connect(_configure_logging)
worker_init.connect(_serve_worker_metrics)

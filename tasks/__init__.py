"""Celery workers: the Celery app (``tasks.celery``), the delivery task, channel providers.

``celery -A tasks worker -Q email`` finds the app in ``tasks.celery``.
"""

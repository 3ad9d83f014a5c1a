"""Celery workers: the Celery app (``tasks.app``; ``tasks.celery`` is the process's instance),
the delivery task (``tasks.deliver``), channel providers (``tasks.channels``).

``celery -A tasks worker -Q email`` finds the app in ``tasks.celery``.
"""

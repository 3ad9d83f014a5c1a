"""The outbox relay: claim due outbox rows, publish them to Celery, mark them, commit."""

"""Notification service core: settings, database, schemas, the Flask API and auth.

The Flask app comes from ``app.api.factory.create_app``; importing this package starts nothing.
"""

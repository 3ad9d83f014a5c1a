"""The Flask application factory."""

from __future__ import annotations

from flask import Flask

from app.api import devices, health, notifications, openapi
from app.errors import register_error_handlers
from app.services import Services
from app.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["notification_service"] = Services.build(settings)
    register_error_handlers(app)
    app.register_blueprint(health.blueprint, url_prefix="/api/v1/health")
    app.register_blueprint(notifications.blueprint, url_prefix="/api/v1/notifications")
    app.register_blueprint(devices.blueprint, url_prefix="/api/v1/users")
    app.register_blueprint(openapi.blueprint, url_prefix="/api/v1")
    return app

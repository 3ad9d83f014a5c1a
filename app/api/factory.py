"""The Flask application factory."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from types import FunctionType
from typing import Any

from flask import Flask, Response, g, request

from app.api import (
    api_keys,
    categories,
    console,
    devices,
    docs,
    health,
    inbox,
    notifications,
    openapi,
    suppressions,
    templates,
    unsubscribe,
    users,
)
from app.api.context import EXTENSION, ApiContext
from app.api.errors import ApiError, error_response, register_error_handlers
from app.api.live import page, websocket
from app.api.metrics import init_flask_metrics
from app.core.logs import bind_log_context, unbind_log_context
from app.core.metrics import METRICS_ENDPOINT, observe_request
from app.core.settings import Settings


class _Flask(Flask):
    """Flask asks of every hook and view, on every request, whether it is a coroutine function
    (``ensure_sync``); the answer for a function never changes, so it is asked once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[FunctionType, Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:  # bound methods are new objects every time
            return super().ensure_sync(func)
        found = self._sync.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync) < 1024:  # hooks and views are made once; bound it all the same
                self._sync[func] = found
        return found


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = _Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    app.config["SOCK_SERVER_OPTIONS"] = websocket.server_options(settings.ws_ping_interval_seconds)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = ApiContext.build(settings)
    register_error_handlers(app)
    _trace_requests(app)
    init_flask_metrics(app)
    _register_blueprints(app)
    app.wsgi_app = _BoundedBody(app.wsgi_app, settings.api_max_body_bytes)  # type: ignore[method-assign]
    return app


def _register_blueprints(app: Flask) -> None:
    app.register_blueprint(health.blueprint, url_prefix="/api/v1/health")
    app.register_blueprint(notifications.blueprint, url_prefix="/api/v1/notifications")
    app.register_blueprint(api_keys.blueprint, url_prefix="/api/v1/api-keys")
    app.register_blueprint(devices.blueprint, url_prefix="/api/v1/users")
    app.register_blueprint(openapi.blueprint, url_prefix="/api/v1")
    app.register_blueprint(inbox.blueprint, url_prefix="/api/v1/users")
    app.register_blueprint(templates.blueprint, url_prefix="/api/v1/templates")
    app.register_blueprint(templates.layouts_blueprint, url_prefix="/api/v1/layouts")
    app.register_blueprint(users.blueprint, url_prefix="/api/v1/users")
    app.register_blueprint(categories.blueprint, url_prefix="/api/v1/categories")
    app.register_blueprint(suppressions.blueprint, url_prefix="/api/v1/suppressions")
    app.register_blueprint(unsubscribe.blueprint)
    app.register_blueprint(websocket.blueprint)
    app.register_blueprint(page.blueprint)
    app.register_blueprint(docs.blueprint)
    app.register_blueprint(console.blueprint, url_prefix="/api/v1/console")
    app.register_blueprint(console.page)


def routes_only() -> Flask:
    """The app's routes and hooks without a process (no database, no Redis): what the OpenAPI
    document is generated from where no API runs, e.g. to fuzz it or to write it to a file."""
    app = Flask(__name__)
    _register_blueprints(app)
    return app


class _BoundedBody:
    """A body without Content-Length (``Transfer-Encoding: chunked``) is read here, up to one
    byte past the limit: over it is 413; under it, the app gets it with its length. (Werkzeug
    would cut such a body at MAX_CONTENT_LENGTH without a word, and the cut may parse.)"""

    def __init__(self, app: Callable[..., Iterable[bytes]], limit: int) -> None:
        self._app = app
        self._limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if (
            environ.get("CONTENT_LENGTH")
            or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(self._limit + 1)
        if len(body) > self._limit:
            too_large = ApiError(
                413,
                "request_entity_too_large",
                f"The request body is larger than {self._limit} bytes.",
                headers={"Connection": "close"},
            )
            return error_response(too_large)(environ, start_response)
        # Now a body of known length: Werkzeug reads a chunked one only when told it is
        # terminated, and then up to MAX_CONTENT_LENGTH.
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self._app(environ, start_response)


access_log = logging.getLogger("notifications.access")
_REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")


def _trace_requests(app: Flask) -> None:
    """Give every request an id (the caller's ``X-Request-Id`` if sane), bind it to the logs of
    the request, return it, count it in the request metrics, and write one access-log line."""

    @app.before_request
    def _begin() -> None:
        offered = request.headers.get("X-Request-Id", "")
        g.request_id = offered if _REQUEST_ID.match(offered) else os.urandom(16).hex()
        g.started = time.perf_counter()
        g.log_context = bind_log_context(request_id=g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        seconds = time.perf_counter() - g.get("started", 0)
        if request.endpoint != METRICS_ENDPOINT:
            observe_request(request.method, request.url_rule, response.status_code, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return response
        access_log.info(
            "%s %s %d",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
        return response

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        token = g.pop("log_context", None)
        if token is not None:
            unbind_log_context(token)

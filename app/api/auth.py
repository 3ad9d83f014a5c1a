"""The API's authentication hook: every route but health, metrics and the docs needs a live key
(app/api/keys.py) with the scope the request needs, within its rate limit."""

from __future__ import annotations

from flask import g, request

from app.api.context import api_context
from app.api.errors import ApiError
from app.api.keys import authenticate

# Which scope a request needs: reading needs ``read``, changing needs ``send``; blueprints that
# manage the service itself need ``admin`` whatever the method.
ADMIN_BLUEPRINTS = frozenset({"api_keys", "console"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(method: str, blueprint: str | None) -> str:
    if blueprint in ADMIN_BLUEPRINTS:
        return "admin"
    return "read" if method in SAFE_METHODS else "send"


def require_api_key() -> None:
    """``before_request`` hook of every blueprint but health: 401 unless a live key is shown,
    403 unless it has the scope the request needs, 429 past its rate limit."""
    found = api_context()
    caller = authenticate(found.engine, request.headers.get("Authorization"), found.key_cache)
    if caller is None:
        raise ApiError(
            401,
            "unauthorized",
            "A valid API key is required: Authorization: Bearer <key>.",
            headers={"WWW-Authenticate": 'Bearer realm="notifications"'},
        )
    needed = required_scope(request.method, request.blueprint)
    if needed not in caller.scopes:
        raise ApiError(403, "insufficient_scope", f"This API key lacks the '{needed}' scope.")
    found.rate_limiter.check(caller.key_id)
    g.api_key_id = caller.key_id
    g.project_id = caller.project_id
    g.caller = caller

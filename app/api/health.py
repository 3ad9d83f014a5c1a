"""Liveness and readiness: unauthenticated, for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, Response

from app.api.context import api_context
from app.api.openapi import operation, tag
from app.api.schemas import HealthCheck
from app.core.db import ping

blueprint = Blueprint("health", __name__)
tag(blueprint, "Health", "Liveness and readiness, without a key.")
_HEALTH = {200: HealthCheck, 503: HealthCheck}


def _checks() -> dict[str, str]:
    found = api_context()
    checks = {}
    try:
        with found.engine.connect() as conn:
            ping(conn)
        checks["postgres"] = "ok"
    except Exception:
        checks["postgres"] = "unreachable"
    try:
        found.redis.ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unreachable"
    return checks


def _report(checks: dict[str, str]) -> Response:
    healthy = all(v == "ok" for v in checks.values())
    body = HealthCheck(status="ok" if healthy else "unavailable", checks=checks)
    return Response(body.model_dump_json(), 200 if healthy else 503, mimetype="application/json")


@blueprint.get("")
@operation("getHealth", "Overall health: PostgreSQL and Redis reachable", responses=_HEALTH)
def health() -> Response:
    return _report(_checks())


@blueprint.get("/live")
@operation("getLiveness", "The process is up", responses={200: HealthCheck})
def live() -> Response:
    """The process answers: nothing else is checked, so a database outage restarts nothing."""
    return _report({})


@blueprint.get("/ready")
@operation("getReadiness", "Ready to serve: PostgreSQL and Redis reachable", responses=_HEALTH)
def ready() -> Response:
    """503 naming each dependency that cannot be reached."""
    return _report(_checks())

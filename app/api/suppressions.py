"""``/api/v1/suppressions``: addresses never sent to (bounced, complained, unsubscribed, or
added by hand). Providers' dead-address answers add entries on their own."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import json_response, parse_body, query_cursor, validate
from app.api.schemas import (
    SuppressionChannel,
    SuppressionPage,
    SuppressionPath,
    SuppressionQuery,
    SuppressionView,
    SuppressionWrite,
)
from app.core.db import transaction
from app.store import suppressions

blueprint = Blueprint("suppressions", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "Suppressions", "Addresses nothing is sent to: bounces, complaints, unsubscribes.")
_PATH = {"channel": SuppressionChannel}


@blueprint.put("/<channel>/<address>")
@operation(
    "putSuppression",
    "Suppress an address (reason optional, default manual); 201 if new",
    body=SuppressionWrite,
    responses={200: SuppressionView, 201: SuppressionView},
    errors=(415,),
    path=_PATH,
)
def put(channel: str, address: str) -> Response:
    """Add an address (or change its reason); the body may be empty (reason ``manual``)."""
    path = _path(channel, address)
    raw = request.get_data()
    if raw and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    body = parse_body(SuppressionWrite, raw) if raw else SuppressionWrite()
    with transaction(api_context().engine) as conn:
        found, created = suppressions.put(
            conn, g.project_id, path.channel, path.address, body.reason.value
        )
    return json_response(SuppressionView, found, 201 if created else 200)


@blueprint.get("/<channel>/<address>")
@operation(
    "getSuppression",
    "One suppressed address",
    responses={200: SuppressionView},
    errors=(404,),
    path=_PATH,
)
def read(channel: str, address: str) -> Response:
    path = _path(channel, address)
    with transaction(api_context().engine) as conn:
        found = suppressions.get(conn, g.project_id, path.channel, path.address)
    if found is None:
        raise ApiError(404, "not_found", "This address is not suppressed.")
    return json_response(SuppressionView, found)


@blueprint.delete("/<channel>/<address>")
@operation(
    "deleteSuppression",
    "Remove an address from the suppression list",
    responses={204: None},
    errors=(404,),
    path=_PATH,
)
def remove(channel: str, address: str) -> Response:
    path = _path(channel, address)
    with transaction(api_context().engine) as conn:
        removed = suppressions.remove(conn, g.project_id, path.channel, path.address)
    if not removed:
        raise ApiError(404, "not_found", "This address is not suppressed.")
    return Response(status=204)


@blueprint.get("")
@operation(
    "listSuppressions",
    "The suppression list, newest first; filters channel and reason",
    query=SuppressionQuery,
    responses={200: SuppressionPage},
)
def list_suppressions() -> Response:
    query = validate(SuppressionQuery, dict(request.args), where="query string")
    cursor = query_cursor(query.cursor, suppressions.decode_cursor)
    filters = suppressions.ListFilters(
        channel=query.channel,
        reason=query.reason and query.reason.value,
        cursor=cursor,
        limit=query.limit,
    )
    with transaction(api_context().engine) as conn:
        items, next_cursor = suppressions.list_(conn, g.project_id, filters)
    return json_response(SuppressionPage, {"items": items, "nextCursor": next_cursor})


def _path(channel: str, address: str) -> SuppressionPath:
    return validate(SuppressionPath, {"channel": channel, "address": address}, where="path")

"""``/api/v1/notifications``: submit, read, list and cancel notifications."""

from __future__ import annotations

import logging

import orjson
from flask import Blueprint, Response, g, request

from app.api import ingest, templates
from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import json_response, parse_body, path_uuid, query_cursor, validate
from app.api.schemas import (
    CancelResult,
    FieldError,
    ListQuery,
    NotificationCreate,
    NotificationPage,
    NotificationView,
    missing_recipients,
    sms_body_too_long,
)
from app.core.db import transaction
from app.core.domain import Channel
from app.core.logs import log_context
from app.core.metrics import NOTIFICATIONS_ACCEPTED
from app.store import devices, notifications

blueprint = Blueprint("notifications", __name__)

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat with the same key and body returns the first notification",
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
    "example": "order-1234-shipped",
}


blueprint.before_request(require_api_key)
tag(blueprint, "Notifications", "Submit notifications, read their deliveries, list and cancel.")


@blueprint.post("")
@operation(
    "createNotification",
    "Submit a notification for delivery on one or more channels",
    body=NotificationCreate,
    responses={202: NotificationView},
    errors=(409, 415),
    headers=(IDEMPOTENCY_HEADER,),
)
def submit() -> Response:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json.")
    body = parse_body(NotificationCreate, request.get_data())
    problems = (
        templates.content_problems(body)
        + missing_recipients(body)
        + sms_body_too_long(body, api_context().settings.sms_max_segments)
    )
    if not problems:
        problems = _unregistered_device_tokens(body)
    if problems:
        raise ApiError.invalid(problems)
    pinned = templates.pin_for_send_request(g.project_id, body)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise ApiError.invalid(
            [FieldError(field="Idempotency-Key", rule="length", message="1 to 255 characters")],
            where="request headers",
        )
    try:
        accepted = ingest.accept(
            api_context().ingest,
            g.project_id,
            g.api_key_id,
            body,
            idempotency_key,
            g.request_id,
            template_version=pinned.version if pinned else None,
            layout_version=pinned.layout_version if pinned else None,
        )
    except ingest.Refused as refused:
        # Only this request's rows were refused: its batch mates were written without it.
        raise ApiError.invalid(
            [FieldError(field=refused.field, rule=refused.rule, message=refused.reason)]
        ) from None
    except ingest.IdempotencyConflict:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body.",
        ) from None
    notification_id = accepted.notification["id"]
    if accepted.replayed:
        response = json_response(NotificationView, accepted.notification, 202)
        response.headers["Idempotent-Replayed"] = "true"
    else:
        for channel in body.channels:
            NOTIFICATIONS_ACCEPTED.labels(channel.value).inc()
        # Built by ingest.accept in NotificationView's shape (the OpenAPI tests hold it
        # to the schema); validating it again through the model was a measurable share of an accept.
        response = Response(
            orjson.dumps(accepted.notification, option=orjson.OPT_UTC_Z),
            202,
            mimetype="application/json",
        )
    if log.isEnabledFor(logging.INFO):
        with log_context(notification_id=notification_id):
            log.info(
                "notification %s %s",
                "replayed" if accepted.replayed else "accepted",
                notification_id,
                extra={"delivery_ids": [str(d["id"]) for d in accepted.notification["deliveries"]]},
            )
    response.headers["Location"] = f"{request.path.rstrip('/')}/{notification_id}"
    return response


@blueprint.get("/<notification_id>")
@operation(
    "getNotification",
    "One notification with the status of each delivery",
    responses={200: NotificationView},
    errors=(404,),
)
def read(notification_id: str) -> Response:
    with transaction(api_context().engine) as conn:
        found = notifications.get(conn, g.project_id, path_uuid(notification_id))
    if found is None:
        raise ApiError(404, "not_found", "No notification has this id.")
    return json_response(NotificationView, found)


@blueprint.get("")
@operation(
    "listNotifications",
    "List notifications, newest first, with keyset pagination",
    query=ListQuery,
    responses={200: NotificationPage},
)
def list_notifications() -> Response:
    query = validate(ListQuery, dict(request.args), where="query string")
    cursor = query_cursor(query.cursor, notifications.decode_cursor)
    filters = notifications.ListFilters(
        status=query.status and query.status.value,
        channel=query.channel and query.channel.value,
        type=query.type and query.type.value,
        created_after=query.created_after,
        created_before=query.created_before,
        cursor=cursor,
        limit=query.limit,
    )
    with transaction(api_context().engine) as conn:
        items, next_cursor = notifications.list_(conn, g.project_id, filters)
    return json_response(NotificationPage, {"items": items, "nextCursor": next_cursor})


@blueprint.post("/<notification_id>/cancel")
@operation(
    "cancelNotification",
    "Cancel the deliveries that are not yet sending or sent",
    responses={200: CancelResult},
    errors=(404, 409),
)
def cancel(notification_id: str) -> Response:
    with transaction(api_context().engine) as conn:
        found, cancelled = notifications.cancel(conn, g.project_id, path_uuid(notification_id))
    if found is None:
        raise ApiError(404, "not_found", "No notification has this id.")
    if cancelled == 0:
        raise ApiError(409, "not_cancellable", "Every delivery is already sending or finished.")
    return json_response(CancelResult, {"cancelled": cancelled, "notification": found})


def _unregistered_device_tokens(body: NotificationCreate) -> list[FieldError]:
    """PUSH to explicit tokens: each must be an active registered device, which is where its
    platform and app come from."""
    if Channel.PUSH not in body.channels or not body.device_tokens:
        return []
    with transaction(api_context().engine) as conn:
        unusable = devices.unusable_tokens(conn, g.project_id, body.device_tokens)
    return [
        FieldError(
            field=f"deviceTokens[{index}]",
            rule="device_not_registered",
            message="not the token of an active registered device (PUT /users/{userId}/devices)",
        )
        for index, token in enumerate(body.device_tokens)
        if token in unusable
    ]

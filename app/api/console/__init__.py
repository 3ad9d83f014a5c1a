"""``/console``: the operator console, and the admin API it reads (``/api/v1/console``).

"What happened to the notification for order 1234?" without SQL: search the project's
notifications by id, user, recipient address, status, channel and time; open one to see each
delivery with its attempts and errors, what was sent, and every status change from
``audit_log``; cancel it, or retry a failed delivery now. The page is plain HTML, CSS and
JavaScript shipped in the package, like ``/inbox``; it asks for an API key and keeps it in memory.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, g, request

from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.openapi import operation, tag
from app.api.params import json_response, path_uuid, query_cursor, static_page, validate
from app.api.schemas import ConsoleQuery, ConsoleSummary, NotificationHistory, NotificationPage
from app.core.db import transaction
from app.core.domain import Channel
from app.core.routing import priority_lists
from app.core.wake import wake_relay
from app.store import audit, notifications, outbox

log = logging.getLogger(__name__)

blueprint = Blueprint("console", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "Console", "What the operator console reads and does (admin scope).")

page = Blueprint(
    "console_page", __name__, static_folder="static", static_url_path="/console/static"
)

OUTCOME_WINDOW_SECONDS = 60.0


@blueprint.get("/notifications")
@operation(
    "searchNotifications",
    "Search notifications by id, user, recipient address, status, channel and time",
    query=ConsoleQuery,
    responses={200: NotificationPage},
)
def search() -> Response:
    """Newest first, a page at a time (``cursor``). ``recipient`` matches the email address
    (case-blind), the phone number or the webhook URL exactly."""
    query = validate(ConsoleQuery, dict(request.args), where="query string")
    filters = notifications.ListFilters(
        status=query.status and query.status.value,
        channel=query.channel and query.channel.value,
        type=query.type and query.type.value,
        created_after=query.created_after,
        created_before=query.created_before,
        cursor=query_cursor(query.cursor, notifications.decode_cursor),
        limit=query.limit,
        notification_id=query.id,
        user_id=query.user_id,
        recipient=query.recipient,
    )
    with transaction(api_context().engine) as conn:
        items, next_cursor = notifications.list_(conn, g.project_id, filters)
    return json_response(NotificationPage, {"items": items, "nextCursor": next_cursor})


@blueprint.get("/notifications/<notification_id>")
@operation(
    "getNotificationHistory",
    "One notification's deliveries, content and status changes",
    responses={200: NotificationHistory},
    errors=(404,),
)
def history(notification_id: str) -> Response:
    ident = path_uuid(notification_id, "notification_id")
    with transaction(api_context().engine) as conn:
        found = notifications.get(conn, g.project_id, ident)
        sent_with = notifications.content(conn, g.project_id, ident)
        changes = audit.timeline(conn, g.project_id, ident)
    if found is None or sent_with is None:
        raise ApiError(404, "not_found", "No notification has this id.")
    return json_response(
        NotificationHistory, {"notification": found, "content": sent_with, "timeline": changes}
    )


@blueprint.post("/deliveries/<delivery_id>/retry")
@operation(
    "retryDelivery",
    "Retry a FAILED or RETRYING delivery now, through the outbox",
    responses={200: NotificationHistory},
    errors=(404, 409),
)
def retry(delivery_id: str) -> Response:
    """The delivery goes back to RETRYING with error code ``operator_retry`` (which the audit
    log records with the key that asked) and is published at once; one more attempt is made
    even when its attempts are used up."""
    ident = path_uuid(delivery_id, "delivery_id")
    reason = f"retried now by an operator (API key {g.api_key_id})"
    context = api_context()
    with transaction(context.engine) as conn:
        notification_id = outbox.requeue(conn, g.project_id, ident, reason)
        if notification_id is not None:
            found = notifications.get(conn, g.project_id, notification_id)
            sent_with = notifications.content(conn, g.project_id, notification_id)
            changes = audit.timeline(conn, g.project_id, notification_id)
    if notification_id is None:
        with transaction(context.engine) as conn:
            exists = notifications.delivery_exists(conn, g.project_id, ident)
        if not exists:
            raise ApiError(404, "not_found", "No delivery has this id.")
        raise ApiError(409, "not_retryable", "Only a FAILED or RETRYING delivery can be retried.")
    wake_relay(context.redis)
    log.info("delivery %s re-queued by an operator", ident)
    return json_response(
        NotificationHistory, {"notification": found, "content": sent_with, "timeline": changes}
    )


@blueprint.get("/summary")
@operation(
    "getConsoleSummary",
    "Outbox lag, queue depths and the last minute's sent and failed deliveries",
    responses={200: ConsoleSummary},
)
def summary() -> Response:
    """The outbox lag and the queue depths are the whole service's; the counts are the
    project's."""
    context = api_context()
    with transaction(context.engine) as conn:
        lag = outbox.lag_seconds(conn)
        sent, failed = audit.recent_outcomes(conn, g.project_id, OUTCOME_WINDOW_SECONDS)
    return json_response(
        ConsoleSummary,
        {
            "outboxLagSeconds": round(lag, 3),
            "queueDepths": {
                channel.queue: _depth(context.redis, channel.queue) for channel in Channel
            },
            "lastMinute": {"sent": sent, "failed": failed},
        },
    )


def _depth(client: redis.Redis, queue: str) -> int | None:
    try:
        pipe = client.pipeline(transaction=False)
        for name in priority_lists(queue):
            pipe.llen(name)
        return sum(int(n) for n in pipe.execute())
    except redis.RedisError:
        return None  # the page says "unknown"; the rest of the header still answers


@page.get("/console")
def console_page() -> Response:
    return static_page(page, "console.html")

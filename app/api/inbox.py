"""``/api/v1/users/{userId}``: a user's in-app inbox, and tokens for the user's WebSocket."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, Response, g, request

from app.api.auth import require_api_key
from app.api.context import api_context
from app.api.errors import ApiError
from app.api.live import tokens
from app.api.openapi import operation, tag
from app.api.params import json_response, query_cursor, validate
from app.api.schemas import (
    InboxItemPath,
    InboxItemView,
    InboxPage,
    InboxPath,
    InboxQuery,
    InboxReadResult,
    WsToken,
)
from app.core import inbox_events
from app.core.db import transaction
from app.store import inbox

blueprint = Blueprint("inbox", __name__)
blueprint.before_request(require_api_key)
tag(blueprint, "Inbox", "Each user's in-app inbox, and tokens for its WebSocket.")

WS_PATH = "/ws/notifications"


@blueprint.get("/<user_id>/inbox")
@operation(
    "listInboxItems",
    "The user's in-app inbox, newest first, with the unread count",
    query=InboxQuery,
    responses={200: InboxPage},
)
def list_items(user_id: str) -> Response:
    user = _user(user_id)
    query = validate(InboxQuery, dict(request.args), where="query string")
    before = query_cursor(query.cursor, inbox.decode_cursor)
    with transaction(api_context().engine) as conn:
        found = inbox.page(
            conn, g.project_id, user, unread=query.unread, before=before, limit=query.limit
        )
    return json_response(
        InboxPage,
        {"items": found.items, "nextCursor": found.next_cursor, "unreadCount": found.unread_count},
    )


@blueprint.post("/<user_id>/inbox/<item_id>/read")
@operation(
    "markInboxItemRead",
    "Mark one item read (every open socket of the user is told)",
    responses={200: InboxItemView},
    errors=(404,),
)
def read_item(user_id: str, item_id: str) -> Response:
    user, item = _item(user_id, item_id)
    with transaction(api_context().engine) as conn:
        marked = inbox.mark_read(conn, g.project_id, user, [item])
        found = inbox.get(conn, g.project_id, user, item)
        unread = inbox.unread_count(conn, g.project_id, user)
    if found is None:
        raise ApiError(404, "not_found", "This user has no inbox item with this id.")
    if marked:
        inbox_events.publish(
            api_context().redis,
            inbox_events.inbox_of(g.project_id, user),
            inbox_events.read_event(marked, unread),
        )
    return json_response(InboxItemView, found)


@blueprint.post("/<user_id>/inbox/read-all")
@operation(
    "markAllInboxItemsRead", "Mark every item of the user read", responses={200: InboxReadResult}
)
def read_all(user_id: str) -> Response:
    user = _user(user_id)
    with transaction(api_context().engine) as conn:
        marked = inbox.mark_all_read(conn, g.project_id, user)
        unread = inbox.unread_count(conn, g.project_id, user)
    if marked:
        inbox_events.publish(
            api_context().redis,
            inbox_events.inbox_of(g.project_id, user),
            inbox_events.read_event(marked, unread),
        )
    return json_response(InboxReadResult, {"marked": len(marked), "unreadCount": unread})


@blueprint.delete("/<user_id>/inbox/<item_id>")
@operation(
    "deleteInboxItem", "Delete one item from the user's inbox", responses={204: None}, errors=(404,)
)
def delete_item(user_id: str, item_id: str) -> Response:
    user, item = _item(user_id, item_id)
    with transaction(api_context().engine) as conn:
        deleted = inbox.delete(conn, g.project_id, user, item)
        unread = inbox.unread_count(conn, g.project_id, user)
    if not deleted:
        raise ApiError(404, "not_found", "This user has no inbox item with this id.")
    inbox_events.publish(
        api_context().redis,
        inbox_events.inbox_of(g.project_id, user),
        inbox_events.deleted_event([str(item)], unread),
    )
    return Response(status=204)


@blueprint.post("/<user_id>/ws-token")
@operation(
    "createWsToken",
    "A short-lived token for the user's WebSocket at /ws/notifications",
    responses={201: WsToken},
)
def ws_token(user_id: str) -> Response:
    user = _user(user_id)
    settings = api_context().settings
    if not settings.ws_token_secret:
        raise ApiError(
            503, "ws_tokens_disabled", "WebSocket tokens are not enabled (WS_TOKEN_SECRET)."
        )
    token = tokens.issue(
        settings.ws_token_secret, g.project_id, user, settings.ws_token_ttl_seconds
    )
    return json_response(
        WsToken,
        {
            "token": token.value,
            "expiresAt": datetime.fromtimestamp(token.expires_at, UTC),
            "url": WS_PATH,
        },
        201,
    )


def _user(user_id: str) -> str:
    return validate(InboxPath, {"user_id": user_id}, where="path").user_id


def _item(user_id: str, item_id: str) -> tuple[str, uuid.UUID]:
    path = validate(InboxItemPath, {"user_id": user_id, "item_id": item_id}, where="path")
    return path.user_id, path.item_id

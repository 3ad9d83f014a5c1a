"""Inbox events on Redis pub/sub: one channel per user, published by whoever changed the inbox.

The IN_APP provider publishes each stored item; the API publishes read and delete marks. Every
API process that holds a socket of the user is subscribed to that user's channel
(app/api/live/hub.py) and forwards the event, already in its wire form, to those sockets.
PUBLISH answers how many processes received it: the IN_APP provider records that count (0 = the
user had no socket open).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis
import redis.asyncio

from app.core.pubsub import channel

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "inapp:user:"


def inbox_of(project_id: str, user_id: str) -> str:
    """Whose inbox: a user id is unique only within its project (a project id holds no ':'), so
    sockets, channels and per-user limits are keyed by both."""
    return f"{project_id}:{user_id}"


def user_channel(client: redis.Redis | redis.asyncio.Redis, inbox: str) -> str:
    """The channel of one inbox (``inbox_of(project, user)``)."""
    return channel(client, CHANNEL_PREFIX + inbox)


def item_event(item: dict[str, Any], unread_count: int) -> dict[str, Any]:
    return {"type": "item", "item": item, "unreadCount": unread_count}


def read_event(ids: list[str], unread_count: int) -> dict[str, Any]:
    return {"type": "read", "ids": ids, "unreadCount": unread_count}


def deleted_event(ids: list[str], unread_count: int) -> dict[str, Any]:
    return {"type": "deleted", "ids": ids, "unreadCount": unread_count}


def publish(client: redis.Redis, inbox: str, event: dict[str, Any]) -> int | None:
    """Publish to the sockets of one inbox (``inbox_of(project, user)``); the number of API
    processes that received it, or None if Redis could not be reached (the inbox is the record,
    so that loses nothing: sockets read what they missed when they reconnect)."""
    try:
        return int(client.publish(user_channel(client, inbox), orjson.dumps(event)))
    except redis.RedisError as exc:
        log.warning("inbox event for a user not published: %s", exc)
        return None

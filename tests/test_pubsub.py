"""Pub/sub channels are scoped to the Redis database: deployments sharing a server stay apart."""

from __future__ import annotations

import threading

import redis

from app.core import inbox_events
from app.core.settings import Settings
from app.core.wake import WakeListener, wake_relay
from tests.conftest import TEST_REDIS_URL

OTHER_DATABASE = 8  # used by no test and no benchmark


def test_a_deployment_on_another_redis_database_neither_wakes_our_relay_nor_sees_our_inbox(
    redis_client: redis.Redis,
) -> None:
    other = redis.Redis.from_url(TEST_REDIS_URL.rsplit("/", 1)[0] + f"/{OTHER_DATABASE}")
    listener = WakeListener(Settings(redis_url=TEST_REDIS_URL))
    listener.subscribe()
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(
        inbox_events.user_channel(redis_client, inbox_events.inbox_of("default", "ana"))
    )
    subscriber.get_message(timeout=1)
    event = inbox_events.deleted_event(["1"], 0)
    try:
        wake_relay(other)
        assert not listener.wait(0.5, threading.Event())
        wake_relay(redis_client)
        assert listener.wait(2, threading.Event())

        assert inbox_events.publish(other, inbox_events.inbox_of("default", "ana"), event) == 0
        assert (
            inbox_events.publish(redis_client, inbox_events.inbox_of("default", "ana"), event) == 1
        )
        assert (
            subscriber.get_message(timeout=2)["data"]
            == b'{"type":"deleted","ids":["1"],"unreadCount":0}'
        )
    finally:
        subscriber.close()
        listener.close()
        other.close()

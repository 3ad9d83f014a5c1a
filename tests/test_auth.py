"""Who may call what: keys on every route, scopes, revocation, rotation, rate limits, TLS."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.errors import ApiError
from app.api.factory import create_app
from app.api.keys import create_api_key
from app.api.ratelimit import RateLimiter
from app.core.settings import Settings
from tests.helpers.api import SEED
from tests.helpers.factories import make_api_key
from tests.helpers.processes import BIN, settings_env

# Served without a key: health, and the OpenAPI document (it holds no project's data).
PUBLIC = re.compile(r"^/api/v1/(health(/.*)?|openapi\.json)$")


def api_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, concrete URL) for every API route the app serves, placeholders filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or PUBLIC.match(rule.rule):
            continue
        url = re.sub(r"<(?:\w+:)?(\w*_id|id)>", str(uuid.uuid4()), rule.rule)
        url = re.sub(r"<(?:\w+:)?\w+>", "user-1", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, url))
    return routes


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_every_api_route_but_health_refuses_missing_malformed_wrong_and_revoked_keys(
    flask_app: Flask, client: FlaskClient, engine: Engine
) -> None:
    revoked = make_api_key(engine, "revoked", ["send", "read", "admin"], revoked=True).key
    attempts = {
        "missing": {},
        "malformed": {"Authorization": "Token abc"},
        "no key": {"Authorization": "Bearer "},
        "wrong": bearer("nsk_" + "x" * 43),
        "revoked": bearer(revoked),
    }
    routes = api_routes(flask_app)

    answers = {
        (method, url, name): client.open(url, method=method, headers=headers, json={})
        for method, url in routes
        for name, headers in attempts.items()
    }

    assert len(routes) >= 8  # the route table was really walked
    assert {k: r.status_code for k, r in answers.items() if r.status_code != 401} == {}
    assert all(r.get_json()["error"]["code"] == "unauthorized" for r in answers.values())


def test_scopes_limit_what_a_key_may_do(client: FlaskClient, engine: Engine) -> None:
    reader = bearer(create_api_key(engine, "reader", ["read"]).key)
    sender = bearer(create_api_key(engine, "sender", ["send"]).key)

    assert client.get("/api/v1/notifications", headers=reader).status_code == 200
    refused = client.post("/api/v1/notifications", json=SEED, headers=reader)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "insufficient_scope"
    assert "'send'" in refused.get_json()["error"]["message"]
    assert client.post("/api/v1/notifications", json=SEED, headers=sender).status_code == 202
    assert client.get("/api/v1/notifications", headers=sender).status_code == 403
    assert client.get("/api/v1/api-keys", headers=sender).status_code == 403
    assert client.get("/api/v1/api-keys", headers=reader).status_code == 403


# Every change to recipients, and a body it accepts; in this order a send key makes each.
RECIPIENT_CHANGES = [
    ("PUT", "/api/v1/users/ana", {"email": "ana@example.com"}, 201),
    ("PATCH", "/api/v1/users/ana", {"name": "Ana"}, 200),
    ("POST", "/api/v1/users/bulk", {"users": [{"userId": "bob"}]}, 207),
    ("PUT", "/api/v1/users/ana/preferences", {"channels": {"SMS": False}}, 200),
    ("PUT", "/api/v1/categories/news", {"required": False}, 201),
    ("PUT", "/api/v1/suppressions/EMAIL/ana@example.com", {"reason": "manual"}, 201),
    ("DELETE", "/api/v1/suppressions/EMAIL/ana@example.com", None, 204),
    ("DELETE", "/api/v1/users/ana", None, 200),
]
RECIPIENT_READS = [
    "/api/v1/users/ana",
    "/api/v1/users/ana/preferences",
    "/api/v1/categories",
    "/api/v1/categories/news",
    "/api/v1/suppressions",
    "/api/v1/suppressions/EMAIL/ana@example.com",
]


def test_a_read_key_cannot_change_recipients_and_a_send_key_can(
    client: FlaskClient, engine: Engine
) -> None:
    reader = bearer(create_api_key(engine, "reader", ["read"]).key)
    sender = bearer(create_api_key(engine, "sender", ["send"]).key)

    refused = [
        client.open(url, method=method, json=body, headers=reader)
        for method, url, body, _ in RECIPIENT_CHANGES
    ]
    with engine.connect() as conn:
        written = {
            table: conn.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("user_profile", "preference", "category", "suppression")
        }
    reads = [client.get(url, headers=reader).status_code for url in RECIPIENT_READS]
    sender_reads = [client.get(url, headers=sender).status_code for url in RECIPIENT_READS]
    made = [
        (method, url, client.open(url, method=method, json=body, headers=sender).status_code)
        for method, url, body, _ in RECIPIENT_CHANGES
    ]

    assert [r.status_code for r in refused] == [403] * len(RECIPIENT_CHANGES)
    assert all(r.get_json()["error"]["code"] == "insufficient_scope" for r in refused)
    assert all("'send'" in r.get_json()["error"]["message"] for r in refused)
    assert written == dict.fromkeys(written, 0)
    assert reads == [404, 200, 200, 404, 200, 404]  # read, found nothing yet
    assert sender_reads == [403] * len(RECIPIENT_READS)
    assert made == [(method, url, status) for method, url, _, status in RECIPIENT_CHANGES]
    assert client.get("/api/v1/users/bob", headers=reader).status_code == 200


def test_admin_issues_revokes_and_rotates_keys(client: FlaskClient, engine: Engine) -> None:
    admin = bearer(create_api_key(engine, "admin", ["admin"]).key)

    issued = client.post("/api/v1/api-keys", json={"name": "billing"}, headers=admin)
    new_key = issued.get_json()
    usable = client.get("/api/v1/notifications", headers=bearer(new_key["key"]))
    rotated = client.post(f"/api/v1/api-keys/{new_key['id']}/rotate", headers=admin).get_json()
    old_after = client.get("/api/v1/notifications", headers=bearer(new_key["key"]))
    new_after = client.get("/api/v1/notifications", headers=bearer(rotated["key"]))
    revoke = client.post(f"/api/v1/api-keys/{rotated['id']}/revoke", headers=admin)
    after_revoke = client.get("/api/v1/notifications", headers=bearer(rotated["key"]))
    again = client.post(f"/api/v1/api-keys/{rotated['id']}/revoke", headers=admin)
    listed = client.get("/api/v1/api-keys", headers=admin).get_json()

    assert issued.status_code == 201 and new_key["scopes"] == ["send", "read"]
    assert usable.status_code == 200
    assert old_after.status_code == 401
    assert new_after.status_code == 200
    assert "webhookSecret" not in rotated  # shown once, when the key was issued
    assert revoke.status_code == 204 and after_revoke.status_code == 401
    assert again.status_code == 404
    by_id = {k["id"]: k for k in listed}
    assert by_id[rotated["id"]]["rotatedFrom"] == new_key["id"]
    assert by_id[new_key["id"]]["revokedAt"] is not None
    assert all("key" not in k and "webhookSecret" not in k for k in listed)


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"name": ""}, "name", "string_too_short"),
        ({"name": "x", "scopes": ["root"]}, "scopes[0]", "literal_error"),
        ({"name": "x", "scopes": []}, "scopes", "too_short"),
        ({"name": "x", "admin": True}, "admin", "extra_forbidden"),
        ({"name": "ops\u0000"}, "name", "no_nul_character"),  # was a 500 (found by fuzzing)
    ],
)
def test_bad_key_requests_are_422_and_malformed_key_ids_too(
    client: FlaskClient, engine: Engine, body: dict, field: str, rule: str
) -> None:
    admin = bearer(create_api_key(engine, "admin", ["admin"]).key)

    response = client.post("/api/v1/api-keys", json=body, headers=admin)
    malformed = client.post("/api/v1/api-keys/not-a-uuid/revoke", headers=admin)

    assert response.status_code == 422
    assert (field, rule) in {
        (f["field"], f["rule"]) for f in response.get_json()["error"]["fields"]
    }
    assert malformed.status_code == 422
    assert malformed.get_json()["error"]["fields"][0]["field"] == "id"


def test_rate_limit_answers_429_with_retry_after_per_key(
    settings: Settings, engine: Engine
) -> None:
    limited = create_app(replace(settings, rate_limit_per_second=0.5, rate_limit_burst=2))
    client = limited.test_client()
    first, second = (bearer(create_api_key(engine, n).key) for n in ("first", "second"))

    answers = [client.get("/api/v1/notifications", headers=first) for _ in range(3)]
    other = client.get("/api/v1/notifications", headers=second)

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].get_json()["error"]["code"] == "rate_limited"
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert other.status_code == 200


def test_rate_limiter_outage_lets_requests_through(settings: Settings, engine: Engine) -> None:
    no_redis = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    key = bearer(create_api_key(engine, "k").key)

    response = no_redis.test_client().get("/api/v1/notifications", headers=key)

    assert response.status_code == 200


def test_create_api_key_refuses_unknown_scopes(settings: Settings) -> None:
    result = subprocess.run(
        [str(BIN / "notification-service"), "create-api-key", "--name", "x", "--scopes", "root"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "choose from send, read, admin" in result.stderr


def test_database_tls_mode_passes_through_database_url(settings: Settings) -> None:
    required = replace(settings, database_url=settings.database_url + "?sslmode=require")
    disabled = replace(settings, database_url=settings.database_url + "?sslmode=disable")

    def migrate(s: Settings) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "notification-service"), "migrate"],
            env=settings_env(s),
            capture_output=True,
            text=True,
            timeout=60,
        )

    # This machine's PostgreSQL has TLS off: libpq honouring sslmode=require must refuse it.
    refused, allowed = migrate(required), migrate(disabled)
    assert refused.returncode != 0
    assert "SSL" in refused.stderr
    assert allowed.returncode == 0


class SlowRedis:
    """A TCP proxy in front of the test Redis that holds every reply for ``delay`` seconds, as a
    Redis a few milliseconds away: requests arriving together are then sure to overlap at the
    lease fetch, however the threads are scheduled."""

    def __init__(self, target: str, delay: float) -> None:
        host, port = target.removeprefix("redis://").split("/")[0].split(":")
        self.upstream = (host, int(port))
        self.delay = delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/{target.rsplit('/', 1)[1]}"
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.delay), daemon=True
            ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def slow_redis(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    kwargs = redis_client.connection_pool.connection_kwargs
    proxy = SlowRedis(f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}", delay=0.05)
    client = redis.Redis.from_url(proxy.url, socket_timeout=5)
    yield client
    client.close()
    proxy.close()


def test_concurrent_requests_spend_no_more_of_the_bucket_than_they_use(
    slow_redis: redis.Redis, redis_client: redis.Redis
) -> None:
    # No refill within the test: what leaves the bucket is what was taken.
    limiter = RateLimiter(slow_redis, per_second=0.001, burst=1000)  # leases of 50
    key_id = uuid.uuid4()
    threads_count, per_thread = 16, 5  # 80 requests: two leases' worth
    start = threading.Barrier(threads_count)
    refused: list[ApiError] = []

    def requests() -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                limiter.check(key_id)
            except ApiError as exc:
                refused.append(exc)

    threads = [threading.Thread(target=requests) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    used = threads_count * per_thread
    tokens = float(redis_client.hget(f"ratelimit:{key_id}", "tokens") or 0)
    assert refused == []  # 80 requests against a burst of 1000
    # The bucket gave the 80 and at most the one lease still unspent, however many requests
    # found the process's lease empty at the same moment.
    assert 1000 - used - limiter.lease_size <= tokens < 1000 - used + 1


def test_requests_waiting_for_a_lease_fetch_share_its_refusal_or_its_outage(
    slow_redis: redis.Redis, redis_client: redis.Redis
) -> None:
    empty, unreachable = uuid.uuid4(), uuid.uuid4()
    now = redis_client.time()
    redis_client.hset(f"ratelimit:{empty}", mapping={"tokens": "0", "at": f"{now[0] + 60}"})
    limiters = {
        empty: RateLimiter(slow_redis, per_second=0.001, burst=1000),
        unreachable: RateLimiter(
            redis.Redis.from_url("redis://127.0.0.1:1/0"), per_second=0.001, burst=1000
        ),
    }
    answers: dict[uuid.UUID, list[str]] = {empty: [], unreachable: []}
    start = threading.Barrier(16)

    def request(key_id: uuid.UUID) -> None:
        start.wait()
        try:
            limiters[key_id].check(key_id)
            answers[key_id].append("through")
        except ApiError as exc:
            answers[key_id].append(exc.code)

    threads = [threading.Thread(target=request, args=(k,)) for k in (empty, unreachable) * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # An empty bucket refuses every request; a limiter without Redis refuses none.
    assert answers == {empty: ["rate_limited"] * 8, unreachable: ["through"] * 8}

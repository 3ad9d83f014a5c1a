"""Fixtures: a real PostgreSQL database built by the migrations, a real Redis, real processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.context import EXTENSION
from app.api.factory import create_app
from app.api.keys import create_api_key
from app.core.db import ensure_database, make_engine, migrate
from app.core.settings import Settings
from tests.helpers.factories import TABLES
from tests.helpers.processes import Processes
from tests.standins.apns import ApnsStandIn, AuthKey, make_tls
from tests.standins.fcm import FcmStandIn
from tests.standins.sms import SmsGatewayStandIn
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import WebhookReceiver

# pytest-xdist runs the suite in parallel processes (gw0, gw1, ...): each has a database and a
# Redis database of its own (Redis pub/sub channels are scoped to the database, app/core/pubsub.py).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_WORKER_INDEX = int(XDIST_WORKER[2:]) if XDIST_WORKER.startswith("gw") else 0
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/notifications_test"
) + (f"_{XDIST_WORKER}" if XDIST_WORKER else "")
SMS_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
SMS_AUTH_TOKEN = "sms-auth-token-for-tests"
_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15").rsplit("/", 1)
TEST_REDIS_URL = f"{_REDIS_URL[0]}/{int(_REDIS_URL[1]) - _WORKER_INDEX}"
WS_TOKEN_SECRET = "test-only-ws-token-secret-0123456789abcdef"
UNSUBSCRIBE_SECRET = "test-only-unsubscribe-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def database_url() -> str:
    """The test database, emptied and rebuilt from zero through the Alembic migrations."""
    ensure_database(TEST_DATABASE_URL)
    engine = make_engine(Settings(database_url=TEST_DATABASE_URL), pool_size=1)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    migrate(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def base_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        relay_poll_interval_ms=500,
        sweeper_interval_seconds=1.0,
        retry_backoff_base_seconds=0.2,
        retry_backoff_max_seconds=1.0,
        delivery_max_attempts=4,
        worker_concurrency=4,
        relay_metrics_port=0,
        worker_metrics_port=0,
        ws_token_secret=WS_TOKEN_SECRET,
        unsubscribe_secret=UNSUBSCRIBE_SECRET,
        public_base_url="https://notify.example.com",
    )


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpStandIn]:
    server = SmtpStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def settings(base_settings: Settings, smtp: SmtpStandIn) -> Settings:
    """Email goes over real SMTP to the stand-in (``EMAIL_PROVIDER=smtp``)."""
    from dataclasses import replace

    return replace(base_settings, email_provider="smtp", smtp_port=smtp.port)


@pytest.fixture(scope="session")
def fcm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FcmStandIn]:
    server = FcmStandIn.create(tmp_path_factory.mktemp("fcm")).start()
    yield server
    server.stop()


@pytest.fixture
def fcm(fcm_server: FcmStandIn) -> FcmStandIn:
    """The FCM stand-in with no plans and nothing received."""
    fcm_server.reset()
    return fcm_server


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[SmsGatewayStandIn]:
    server = SmsGatewayStandIn(SMS_ACCOUNT_SID, SMS_AUTH_TOKEN)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(gateway_server: SmsGatewayStandIn) -> SmsGatewayStandIn:
    """The SMS gateway stand-in with no plans and nothing received."""
    gateway_server.clear()
    return gateway_server


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver(receiver_server: WebhookReceiver) -> WebhookReceiver:
    """The webhook receiver with no plans and nothing received (tests run in any order)."""
    receiver_server.clear()
    return receiver_server


@pytest.fixture(scope="session")
def apns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApnsStandIn]:
    directory = tmp_path_factory.mktemp("apns")
    server = ApnsStandIn(make_tls(directory), AuthKey.create(directory)).start()
    yield server
    server.stop()


@pytest.fixture
def apns(apns_server: ApnsStandIn) -> ApnsStandIn:
    """The APNs stand-in with no plans and nothing received."""
    apns_server.reset()
    return apns_server


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    # The tests' own engine does administrative work (TRUNCATE between tests, DROP DATABASE)
    # on a shared, busy machine: no statement or lock deadline, unlike the service's engines.
    engine = make_engine(
        Settings(database_url=database_url, database_lock_timeout_ms=0), statement_timeout_ms=0
    )
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(TEST_REDIS_URL)


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest, smtp: SmtpStandIn) -> None:
    """Every test starts from empty tables, an empty Redis database and a fresh SMTP log."""
    if "engine" in request.fixturenames or "settings" in request.fixturenames:
        engine: Engine = request.getfixturevalue("engine")
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    smtp.received.clear()
    smtp.rcpt_attempts.clear()


@pytest.fixture
def flask_app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    app.extensions[EXTENSION].close()  # its connections, or each test would leave them open


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


@pytest.fixture
def api_key(engine: Engine) -> str:
    return create_api_key(engine, "tests").key


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def processes(settings: Settings, tmp_path: Path) -> Iterator[Processes]:
    running = Processes(settings, tmp_path)
    yield running
    running.stop_all()

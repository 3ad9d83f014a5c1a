"""The one settings object, built from the environment by each process's entry point and passed
down (``Settings.from_env()``).

Every variable has a default that works on a developer machine with local PostgreSQL and
Redis, except secrets, which have none. Nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and error messages."""
    return _URL_PASSWORD.sub(r"\1***@", url)


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


# The provider names each channel's setting accepts (tasks/channels/__init__.py maps each to a
# provider class).
PROVIDER_CHOICES: dict[str, tuple[str, ...]] = {
    "email_provider": ("log", "smtp", "noop"),
    "sms_provider": ("log", "twilio"),
    "webhook_provider": ("log", "http"),
    "push_provider": ("log", "live"),
}


def _setting(env: str, default: Any, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    database_url: str = _setting(
        "DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/notifications",
        "PostgreSQL URL (the source of truth). `?sslmode=require` etc. pass through to libpq."
        " Several hosts (`postgresql://u@db1:5432,db2:5432/notifications"
        "?target_session_attrs=read-write`) are tried in turn: connections go to the primary.",
    )
    database_connect_timeout_seconds: int = _setting(
        "DATABASE_CONNECT_TIMEOUT_SECONDS",
        2,
        "Seconds a new PostgreSQL connection may take, start-up answer included (libpq's"
        " `connect_timeout`, whose least value is 2).",
    )
    database_statement_timeout_ms: int = _setting(
        "DATABASE_STATEMENT_TIMEOUT_MS",
        2000,
        "Longest a statement of the API and the workers may run (`statement_timeout`); a"
        " PostgreSQL silent a second past it is taken for hung: the connection is dropped and"
        " the API answers 503. With the pool's wait (`DATABASE_CONNECT_TIMEOUT_SECONDS`) that"
        " is the 5 s within which a request is answered (see Deadlines).",
    )
    database_lock_timeout_ms: int = _setting(
        "DATABASE_LOCK_TIMEOUT_MS",
        1000,
        "Longest a statement waits for a lock (`lock_timeout`); 0 = no limit.",
    )
    database_idle_in_transaction_timeout_ms: int = _setting(
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        30000,
        "PostgreSQL ends a session idle inside a transaction this long, releasing its locks"
        " (`idle_in_transaction_session_timeout`); 0 = no limit.",
    )
    redis_url: str = _setting(
        "REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL: Celery broker and readiness check."
    )
    redis_sentinels: str = _setting(
        "REDIS_SENTINELS",
        "",
        "Comma-separated `host:port` of Redis Sentinels; set, every client (Celery's too) asks"
        " them for the master and follows a failover, and `REDIS_URL` gives only the database"
        " number and credentials. Empty = `REDIS_URL` is the server.",
    )
    redis_sentinel_master: str = _setting(
        "REDIS_SENTINEL_MASTER", "mymaster", "Name under which the Sentinels monitor the master."
    )
    api_host: str = _setting("API_HOST", "0.0.0.0", "Address `notification-service api` binds.")
    api_port: int = _setting("API_PORT", 8080, "Port `notification-service api` binds.")
    api_workers: int = _setting("API_WORKERS", 2, "gunicorn worker processes.")
    api_connections: int = _setting(
        "API_CONNECTIONS",
        1000,
        "HTTP connections one gunicorn worker (gevent) serves at once, kept-alive ones included.",
    )
    api_db_pool_size: int = _setting(
        "API_DB_POOL_SIZE",
        8,
        "PostgreSQL connections per API worker for reads (as many again at peaks); more wait.",
    )
    api_max_body_bytes: int = _setting(
        "API_MAX_BODY_BYTES", 65536, "Largest accepted request body; larger → 413."
    )
    api_key_cache_seconds: float = _setting(
        "API_KEY_CACHE_SECONDS",
        10.0,
        "API keys are cached this long; a revoked key lapses within it.",
    )
    rate_limit_per_second: float = _setting(
        "RATE_LIMIT_PER_SECOND", 1000.0, "Requests/s allowed per API key (token bucket); 0 = off."
    )
    rate_limit_burst: int = _setting(
        "RATE_LIMIT_BURST", 2000, "Requests a key may make at once before the rate applies."
    )
    rate_limit_timeout_ms: int = _setting(
        "RATE_LIMIT_TIMEOUT_MS",
        50,
        "Redis deadline of the rate limiter; after a timeout or error requests pass unchecked"
        " for a few seconds, then Redis is asked again.",
    )
    email_provider: str = _setting(
        "EMAIL_PROVIDER",
        "log",
        "`log` (writes deliveries to the worker log), `smtp`, or `noop` (benchmarks).",
    )
    smtp_host: str = _setting("SMTP_HOST", "127.0.0.1", "SMTP server host.")
    smtp_port: int = _setting("SMTP_PORT", 25, "SMTP server port.")
    smtp_username: str = _setting("SMTP_USERNAME", "", "SMTP AUTH user; empty = no AUTH.")
    smtp_password: str = _setting("SMTP_PASSWORD", "", "SMTP AUTH password.", secret=True)
    smtp_starttls: bool = _setting("SMTP_STARTTLS", False, "Upgrade with STARTTLS.")
    smtp_ssl: bool = _setting("SMTP_SSL", False, "Connect with implicit TLS (SMTPS).")
    smtp_from: str = _setting(
        "SMTP_FROM", "notifications@localhost", "From address of outgoing email."
    )
    smtp_timeout_seconds: float = _setting(
        "SMTP_TIMEOUT_SECONDS", 10.0, "Connect and per-command timeout for SMTP."
    )
    dkim_private_key_file: str = _setting(
        "DKIM_PRIVATE_KEY_FILE",
        "",
        "PEM file of the RSA key (a mounted secret) that DKIM-signs outgoing email; empty ="
        " unsigned. Needs `DKIM_SELECTOR` and `DKIM_DOMAIN`.",
    )
    dkim_selector: str = _setting(
        "DKIM_SELECTOR",
        "",
        "DKIM selector: the key is published at `<selector>._domainkey.<domain>`.",
    )
    dkim_domain: str = _setting(
        "DKIM_DOMAIN", "", "Signing domain (`d=`); usually the domain of `SMTP_FROM`."
    )
    sms_provider: str = _setting(
        "SMS_PROVIDER",
        "log",
        "`log` (writes deliveries to the worker log) or `twilio` (a Twilio-compatible HTTP API).",
    )
    sms_api_base_url: str = _setting(
        "SMS_API_BASE_URL", "https://api.twilio.com", "Base URL of the Twilio-compatible SMS API."
    )
    sms_account_sid: str = _setting(
        "SMS_ACCOUNT_SID", "", "Account SID: the basic auth user and part of the request path."
    )
    sms_auth_token: str = _setting(
        "SMS_AUTH_TOKEN", "", "Auth token: the basic auth password.", secret=True
    )
    sms_from: str = _setting("SMS_FROM", "", "Sender number (E.164) or alphanumeric sender id.")
    sms_timeout_seconds: float = _setting(
        "SMS_TIMEOUT_SECONDS", 10.0, "Connect and read timeout for the SMS API."
    )
    sms_max_segments: int = _setting(
        "SMS_MAX_SEGMENTS", 10, "Longest SMS body accepted, in segments; longer → 422."
    )
    webhook_provider: str = _setting(
        "WEBHOOK_PROVIDER",
        "log",
        "`log` (writes deliveries to the worker log) or `http` (signed POST to `webhookUrl`).",
    )
    webhook_connect_timeout_seconds: float = _setting(
        "WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5.0, "Connect timeout for webhook POSTs."
    )
    webhook_read_timeout_seconds: float = _setting(
        "WEBHOOK_READ_TIMEOUT_SECONDS", 10.0, "Read timeout for webhook POSTs."
    )
    webhook_allowed_networks: str = _setting(
        "WEBHOOK_ALLOWED_NETWORKS",
        "",
        "Comma-separated CIDRs webhooks may reach although private, loopback etc.; empty = none.",
    )
    push_provider: str = _setting(
        "PUSH_PROVIDER",
        "log",
        "`log` (writes each device's push to the worker log) or `live` (FCM devices through FCM,"
        " APNs devices through APNs, each as configured below).",
    )
    fcm_service_account_file: str = _setting(
        "FCM_SERVICE_ACCOUNT_FILE",
        "",
        "Path to the Firebase service-account JSON (a mounted secret); empty = FCM off. Its"
        " `token_uri` is where OAuth access tokens are obtained.",
    )
    fcm_project_id: str = _setting(
        "FCM_PROJECT_ID", "", "Firebase project id; empty = the service account's `project_id`."
    )
    fcm_base_url: str = _setting(
        "FCM_BASE_URL",
        "https://fcm.googleapis.com",
        "FCM HTTP v1 API; messages go to `{base}/v1/projects/{project}/messages:send`.",
    )
    fcm_timeout_seconds: float = _setting(
        "FCM_TIMEOUT_SECONDS", 10.0, "Connect and read timeout of each FCM and token request."
    )
    apns_key_file: str = _setting(
        "APNS_KEY_FILE",
        "",
        "Path to the APNs auth key (`AuthKey_<keyid>.p8`, a mounted secret); empty = APNs off.",
    )
    apns_key_id: str = _setting("APNS_KEY_ID", "", "Key ID of that key (the JWT's `kid`).")
    apns_team_id: str = _setting("APNS_TEAM_ID", "", "Apple developer team ID (the JWT's `iss`).")
    apns_base_url: str = _setting(
        "APNS_BASE_URL",
        "https://api.push.apple.com",
        "APNs over HTTP/2; `https://api.sandbox.push.apple.com` for development builds.",
    )
    apns_ca_file: str = _setting(
        "APNS_CA_FILE", "", "CA bundle to verify APNs with; empty = the system's CAs."
    )
    apns_timeout_seconds: float = _setting(
        "APNS_TIMEOUT_SECONDS", 10.0, "Connect, read, write and pool timeout of APNs requests."
    )
    apns_token_refresh_seconds: int = _setting(
        "APNS_TOKEN_REFRESH_SECONDS",
        2400,
        "Age at which the APNs provider token (JWT) is renewed; APNs wants 1200 to 3600.",
    )
    relay_batch_size: int = _setting(
        "RELAY_BATCH_SIZE", 100, "Outbox rows the relay claims per transaction."
    )
    relay_poll_interval_ms: int = _setting(
        "RELAY_POLL_INTERVAL_MS", 5000, "Relay poll interval when no wake-up signal arrives."
    )
    relay_statement_timeout_ms: int = _setting(
        "RELAY_STATEMENT_TIMEOUT_MS",
        60000,
        "Statement deadline of the relay, whose claims (under load), sweeps, retention batches"
        " and outbox VACUUM may run long; a hung PostgreSQL is noticed this long (and a second)"
        " into a statement. Migrations have none.",
    )
    relay_gather_ms: int = _setting(
        "RELAY_GATHER_MS",
        10,
        "A relay woken within this long of its last claim waits out the rest first, so a steady"
        " stream is claimed in batches (larger tasks) rather than one row per wake-up.",
    )
    relay_task_chunk: int = _setting(
        "RELAY_TASK_CHUNK",
        10,
        "Deliveries of one channel and priority per Celery task. Chunks form only from rows"
        " claimed together (under load); larger chunks cut per-task overhead, but a provider"
        " sends one chunk's messages in turn.",
    )
    sweeper_lease_seconds: int = _setting(
        "SWEEPER_LEASE_SECONDS",
        300,
        "A delivery QUEUED/SENDING/RETRYING this long past its last change is re-driven.",
    )
    sweeper_interval_seconds: float = _setting(
        "SWEEPER_INTERVAL_SECONDS", 30.0, "How often the relay runs the sweeper."
    )
    delivery_max_attempts: int = _setting(
        "DELIVERY_MAX_ATTEMPTS", 5, "Attempts per delivery before it is FAILED."
    )
    retry_backoff_base_seconds: float = _setting(
        "RETRY_BACKOFF_BASE_SECONDS",
        2.0,
        "Ceiling of the first retry delay; doubles each attempt (equal jitter: each delay is"
        " drawn uniformly between half its ceiling and the ceiling).",
    )
    retry_backoff_max_seconds: float = _setting(
        "RETRY_BACKOFF_MAX_SECONDS",
        600.0,
        "Cap on one retry delay; kept far below the broker visibility timeout.",
    )
    broker_visibility_timeout_seconds: int = _setting(
        "BROKER_VISIBILITY_TIMEOUT_SECONDS",
        3600,
        "Redis redelivers an unacknowledged task after this long.",
    )
    worker_pool: str = _setting("WORKER_POOL", "threads", "Celery pool: threads, prefork, solo.")
    worker_concurrency: int = _setting("WORKER_CONCURRENCY", 8, "Celery worker concurrency.")
    flower_port: int = _setting("FLOWER_PORT", 5555, "Port Flower listens on.")
    flower_basic_auth: str = _setting(
        "FLOWER_BASIC_AUTH",
        "",
        "`user:password` for Flower; empty = no auth (local only).",
        secret=True,
    )
    log_level: str = _setting("LOG_LEVEL", "INFO", "Log level of every process.")
    log_format: str = _setting(
        "LOG_FORMAT", "json", "`json` (one JSON object per line) or `text`; `dev` defaults to text."
    )
    relay_metrics_port: int = _setting(
        "RELAY_METRICS_PORT", 9101, "Port of the relay's Prometheus `/metrics`; 0 turns it off."
    )
    worker_metrics_port: int = _setting(
        "WORKER_METRICS_PORT", 9102, "Port of a worker's Prometheus `/metrics`; 0 turns it off."
    )
    outbox_retention_hours: float = _setting(
        "OUTBOX_RETENTION_HOURS", 72.0, "DISPATCHED outbox rows older than this are deleted."
    )
    audit_retention_days: float = _setting(
        "AUDIT_RETENTION_DAYS", 90.0, "audit_log rows older than this are deleted."
    )
    relay_vacuum_interval_seconds: float = _setting(
        "RELAY_VACUUM_INTERVAL_SECONDS",
        10.0,
        "How often the relay vacuums outbox_event (its dead index entries slow every claim);"
        " 0 leaves it to autovacuum.",
    )
    retention_interval_seconds: float = _setting(
        "RETENTION_INTERVAL_SECONDS", 3600.0, "How often the relay runs retention."
    )
    retention_batch_size: int = _setting(
        "RETENTION_BATCH_SIZE", 5000, "Rows deleted per retention statement."
    )
    ws_token_secret: str = _setting(
        "WS_TOKEN_SECRET",
        "",
        "HMAC key (32+ characters) signing WebSocket tokens; empty = no tokens are issued"
        " (503). `dev` makes one per run.",
        secret=True,
    )
    unsubscribe_secret: str = _setting(
        "UNSUBSCRIBE_SECRET",
        "",
        "HMAC key (32+ characters) signing one-click unsubscribe links; empty = emails carry no"
        " List-Unsubscribe and `/u/{token}` answers 503. `dev` makes one per run.",
        secret=True,
    )
    public_base_url: str = _setting(
        "PUBLIC_BASE_URL",
        "http://localhost:8080",
        "The origin of links put in messages: one-click unsubscribe is"
        " `{PUBLIC_BASE_URL}/u/{token}`.",
    )
    ws_token_ttl_seconds: int = _setting(
        "WS_TOKEN_TTL_SECONDS", 120, "Lifetime of a WebSocket token; it is checked at connect."
    )
    ws_max_connections: int = _setting(
        "WS_MAX_CONNECTIONS",
        1000,
        "WebSockets per API worker process, each holding a connection; past it → close 1013.",
    )
    ws_max_pending: int = _setting(
        "WS_MAX_PENDING",
        100,
        "WebSockets per API worker process that have not sent their `auth` message yet, each"
        " holding a connection until it does (or its 10 s deadline closes it, 4408); past it"
        " → close 1013 at once. Unauthenticated clients hold at most this many connections,"
        " never HTTP's `API_CONNECTIONS` nor the authenticated sockets' `WS_MAX_CONNECTIONS`.",
    )
    ws_max_connections_per_user: int = _setting(
        "WS_MAX_CONNECTIONS_PER_USER",
        10,
        "Sockets one user may hold on one API process (tabs); more are closed with 4409.",
    )
    ws_ping_interval_seconds: float = _setting(
        "WS_PING_INTERVAL_SECONDS",
        25.0,
        "The server pings every socket this often; one that missed the last pong is closed.",
    )
    template_max_output_bytes: int = _setting(
        "TEMPLATE_MAX_OUTPUT_BYTES",
        100_000,
        "Largest output of one template field (UTF-8 bytes); more fails the render"
        " (`template_limit`).",
    )
    template_render_timeout_ms: int = _setting(
        "TEMPLATE_RENDER_TIMEOUT_MS",
        200,
        "Longest one delivery's content may take to render; longer fails it (`template_limit`).",
    )
    template_loop_limit: int = _setting(
        "TEMPLATE_LOOP_LIMIT",
        10_000,
        "Most iterations of a template's loops, nested loops multiplied, checked as a loop starts.",
    )
    template_cache_size: int = _setting(
        "TEMPLATE_CACHE_SIZE",
        1000,
        "Compiled template versions each process keeps (least recently used dropped first).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None:
                continue
            kind: type[Any] = type(f.default)
            try:
                values[f.name] = _bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise SettingsError(f"{f.metadata['env']}: {exc}") from None
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings

    def __post_init__(self) -> None:
        if self.log_format not in {"json", "text"}:
            raise SettingsError("LOG_FORMAT: must be 'json' or 'text'")
        for name, choices in PROVIDER_CHOICES.items():
            if getattr(self, name) not in choices:
                raise SettingsError(f"{name.upper()}: must be one of {', '.join(choices)}")
        if self.sms_provider == "twilio" and not (
            self.sms_account_sid and self.sms_auth_token and self.sms_from
        ):
            raise SettingsError(
                "SMS_PROVIDER=twilio needs SMS_ACCOUNT_SID, SMS_AUTH_TOKEN and SMS_FROM"
            )
        try:
            self.allowed_webhook_networks()
        except ValueError as exc:
            raise SettingsError(f"WEBHOOK_ALLOWED_NETWORKS: {exc}") from None
        try:
            self.redis_sentinel_addresses()
        except ValueError as exc:
            raise SettingsError(f"REDIS_SENTINELS: {exc}") from None
        if self.redis_sentinels and self.redis_url.startswith("rediss://"):
            # kombu's Sentinel transport takes TLS from broker_use_ssl, which is not wired up.
            raise SettingsError("REDIS_SENTINELS: TLS to Redis (rediss://) is not supported")
        if self.sms_max_segments < 1:
            raise SettingsError("SMS_MAX_SEGMENTS: must be at least 1")
        if not 1200 <= self.apns_token_refresh_seconds < 3600:
            # APNs refuses tokens older than an hour and renewals more often than every 20 min.
            raise SettingsError("APNS_TOKEN_REFRESH_SECONDS: must be from 1200 to 3599")
        if self.push_provider == "live" and not (
            self.fcm_service_account_file or self.apns_key_file
        ):
            raise SettingsError(
                "PUSH_PROVIDER=live needs FCM_SERVICE_ACCOUNT_FILE or APNS_KEY_FILE (or both)"
            )
        if self.dkim_private_key_file and not (self.dkim_selector and self.dkim_domain):
            raise SettingsError("DKIM_PRIVATE_KEY_FILE needs DKIM_SELECTOR and DKIM_DOMAIN")
        if self.apns_key_file and not (self.apns_key_id and self.apns_team_id):
            raise SettingsError("APNS_KEY_FILE needs APNS_KEY_ID and APNS_TEAM_ID")
        if self.retry_backoff_max_seconds * 2 >= self.broker_visibility_timeout_seconds:
            raise SettingsError(
                "RETRY_BACKOFF_MAX_SECONDS must stay well under BROKER_VISIBILITY_TIMEOUT_SECONDS"
            )
        if self.ws_token_secret and len(self.ws_token_secret) < 32:
            raise SettingsError("WS_TOKEN_SECRET: must be at least 32 characters")
        if self.unsubscribe_secret and len(self.unsubscribe_secret) < 32:
            raise SettingsError("UNSUBSCRIBE_SECRET: must be at least 32 characters")
        for name in (
            "relay_batch_size",
            "relay_task_chunk",
            "delivery_max_attempts",
            "ws_token_ttl_seconds",
            "ws_max_connections",
            "ws_max_pending",
            "api_connections",
            "database_connect_timeout_seconds",
            "database_statement_timeout_ms",
            "relay_statement_timeout_ms",
            "rate_limit_timeout_ms",
            "template_max_output_bytes",
            "template_render_timeout_ms",
            "template_loop_limit",
            "template_cache_size",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()}: must be at least 1")
        for name in ("database_lock_timeout_ms", "database_idle_in_transaction_timeout_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name.upper()}: must not be negative")

    def allowed_webhook_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``WEBHOOK_ALLOWED_NETWORKS`` parsed; raises ValueError for a malformed CIDR."""
        return [
            ipaddress.ip_network(part.strip())
            for part in self.webhook_allowed_networks.split(",")
            if part.strip()
        ]

    def redis_sentinel_addresses(self) -> list[tuple[str, int]]:
        """``REDIS_SENTINELS`` parsed; raises ValueError for an entry that is not host:port."""
        addresses = []
        for part in self.redis_sentinels.split(","):
            if not part.strip():
                continue
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"not host:port: {part.strip()!r}")
            addresses.append((host.strip("[]"), int(port)))
        return addresses

    def __repr__(self) -> str:
        shown = (
            f"{f.name}={'***' if f.metadata['secret'] else mask_url(str(getattr(self, f.name)))!r}"
            for f in fields(self)
        )
        return f"Settings({', '.join(shown)})"

    def to_env(self) -> dict[str, str]:
        """The environment variables that make a child process build these same settings."""
        return {
            f.metadata["env"]: str(v).lower()
            if isinstance(v := getattr(self, f.name), bool)
            else str(v)
            for f in fields(self)
        }

    @staticmethod
    def documented() -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting: the README's configuration table."""
        return [
            (f.metadata["env"], "" if f.metadata["secret"] else str(f.default), f.metadata["doc"])
            for f in fields(Settings)
        ]

"""The one settings object, built from the environment once per process.

Every variable has a default that works on a developer machine with local PostgreSQL and
Redis, except secrets, which have none. Nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

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


def _setting(env: str, default: Any, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    database_url: str = _setting(
        "DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/notifications",
        "PostgreSQL URL (the source of truth). `?sslmode=require` etc. pass through to libpq.",
    )
    redis_url: str = _setting(
        "REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL: Celery broker and readiness check."
    )
    api_host: str = _setting("API_HOST", "0.0.0.0", "Address `notification-service api` binds.")
    api_port: int = _setting("API_PORT", 8080, "Port `notification-service api` binds.")
    api_workers: int = _setting("API_WORKERS", 2, "gunicorn worker processes.")
    api_threads: int = _setting(
        "API_THREADS", 8, "Threads per gunicorn worker (gthread) for HTTP requests."
    )
    api_max_body_bytes: int = _setting(
        "API_MAX_BODY_BYTES", 65536, "Largest accepted request body; larger → 413."
    )
    email_provider: str = _setting(
        "EMAIL_PROVIDER", "log", "`log` (writes deliveries to the worker log) or `smtp`."
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
    relay_batch_size: int = _setting(
        "RELAY_BATCH_SIZE", 100, "Outbox rows the relay claims per transaction."
    )
    relay_poll_interval_ms: int = _setting(
        "RELAY_POLL_INTERVAL_MS", 5000, "Relay poll interval when no NOTIFY wakes it."
    )
    relay_task_chunk: int = _setting(
        "RELAY_TASK_CHUNK", 1, "Deliveries of one channel and priority per Celery task."
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
        "RETRY_BACKOFF_BASE_SECONDS", 2.0, "First retry delay; doubles each attempt (full jitter)."
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
    ws_token_ttl_seconds: int = _setting(
        "WS_TOKEN_TTL_SECONDS", 120, "Lifetime of a WebSocket token; it is checked at connect."
    )
    ws_max_connections: int = _setting(
        "WS_MAX_CONNECTIONS",
        1000,
        "WebSockets per API worker process, each holding a gthread thread; past it → close 1013.",
    )
    ws_ping_interval_seconds: float = _setting(
        "WS_PING_INTERVAL_SECONDS",
        25.0,
        "The server pings every socket this often; one that missed the last pong is closed.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None:
                continue
            kind = type(f.default)
            try:
                values[f.name] = _bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise SettingsError(f"{f.metadata['env']}: {exc}") from None
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings

    def __post_init__(self) -> None:
        if self.log_format not in {"json", "text"}:
            raise SettingsError("LOG_FORMAT: must be 'json' or 'text'")
        if self.email_provider not in {"log", "smtp"}:
            raise SettingsError("EMAIL_PROVIDER: must be 'log' or 'smtp'")
        if self.retry_backoff_max_seconds * 2 >= self.broker_visibility_timeout_seconds:
            raise SettingsError(
                "RETRY_BACKOFF_MAX_SECONDS must stay well under BROKER_VISIBILITY_TIMEOUT_SECONDS"
            )
        if self.ws_token_secret and len(self.ws_token_secret) < 32:
            raise SettingsError("WS_TOKEN_SECRET: must be at least 32 characters")
        for name in (
            "relay_batch_size",
            "relay_task_chunk",
            "delivery_max_attempts",
            "ws_token_ttl_seconds",
            "ws_max_connections",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()}: must be at least 1")

    def __repr__(self) -> str:
        shown = (
            f"{f.name}={'***' if f.metadata['secret'] else mask_url(str(getattr(self, f.name)))!r}"
            for f in fields(self)
        )
        return f"Settings({', '.join(shown)})"

    @staticmethod
    def documented() -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting: the README's configuration table."""
        return [
            (f.metadata["env"], "" if f.metadata["secret"] else str(f.default), f.metadata["doc"])
            for f in fields(Settings)
        ]

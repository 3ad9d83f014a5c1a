"""An APNs provider API server: HTTP/2 only, over TLS with a test CA, on 127.0.0.1 (hypercorn).

``POST /3/device/{token}`` must carry a provider token (``authorization: bearer <JWT>``, ES256,
``kid`` = the key id, ``iss`` = the team id, ``iat`` within the last hour) and valid
``apns-topic``, ``apns-push-type`` and ``apns-priority`` headers. The answer is 200 with
``apns-id``, or APNs's error ``{"reason": ...}``, per a per-token plan.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

from app.core.settings import Settings
from tests.helpers.net import free_port

# Planned answers: (status, reason); "slow" answers 200 after SLOW_SECONDS.
ANSWERS: dict[str, tuple[int, str]] = {
    "bad_token": (400, "BadDeviceToken"),
    "unregistered": (410, "Unregistered"),
    "not_for_topic": (400, "DeviceTokenNotForTopic"),
    "too_many": (429, "TooManyRequests"),
    "unavailable": (503, "ServiceUnavailable"),
    "internal": (500, "InternalServerError"),
    "expired_provider_token": (403, "ExpiredProviderToken"),
}
SLOW_SECONDS = 0.5


@dataclass(frozen=True)
class ApnsRequest:
    at: float
    http_version: str
    token: str
    headers: dict[str, str]
    body: dict[str, Any]
    connection: tuple[str, int]
    jwt_header: dict[str, Any]
    jwt_claims: dict[str, Any]


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> Tls:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notification-service test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tls


@dataclass(frozen=True)
class AuthKey:
    """An APNs auth key as Apple issues it: a P-256 key in a ``.p8`` file, with its ids."""

    path: Path
    key_id: str
    team_id: str
    public_key: ec.EllipticCurvePublicKey

    @classmethod
    def create(cls, directory: Path) -> AuthKey:
        key = ec.generate_private_key(ec.SECP256R1())
        key_id = secrets.token_hex(5).upper()
        path = directory / f"AuthKey_{key_id}.p8"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cls(path, key_id, "TEAM123456", key.public_key())


@dataclass
class ApnsStandIn:
    """Answers 200 unless a token has a plan: ANSWERS keys (or "ok", "slow") used in turn."""

    tls: Tls
    key: AuthKey
    port: int = field(default_factory=free_port)
    received: list[ApnsRequest] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    retry_after: str | None = None

    def __post_init__(self) -> None:
        self._plans: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, int], int] = {}
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> ApnsStandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("APNs stand-in did not start")
        return self

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def reset(self) -> None:
        with self._lock:
            self._plans.clear()
            self.received.clear()
            self.rejected.clear()
            self.retry_after = None
            self.max_in_flight = 0

    def plan(self, token: str, *answers: str) -> None:
        with self._lock:
            self._plans[token] = deque(answers)

    def to(self, token: str) -> list[ApnsRequest]:
        with self._lock:
            return [r for r in self.received if r.token == token]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.certfile = str(self.tls.cert)
        config.keyfile = str(self.tls.key)
        config.alpn_protocols = ["h2"]  # APNs speaks HTTP/2 only
        config.accesslog = None
        config.errorlog = None
        config.keep_alive_timeout = 60

        async def main() -> None:
            self._stopping = asyncio.Event()
            self._loop.call_later(0.2, self._ready.set)
            await serve(self._app, config, shutdown_trigger=self._stopping.wait)  # type: ignore[arg-type]

        self._loop.run_until_complete(main())

    # -- protocol ---------------------------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        connection = tuple(scope["client"])
        with self._lock:
            self._in_flight[connection] = self._in_flight.get(connection, 0) + 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight[connection])
        try:
            status, headers, answer = await self._answer(scope, body, connection)
        finally:
            with self._lock:
                self._in_flight[connection] -= 1
        data = json.dumps(answer).encode() if answer else b""
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _answer(
        self, scope: dict[str, Any], raw: bytes, connection: Any
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        if scope["method"] != "POST":
            return 405, {}, {"reason": "MethodNotAllowed"}
        if not path.startswith("/3/device/"):
            return 404, {}, {"reason": "BadPath"}
        token = path.removeprefix("/3/device/")
        scheme, _, provider_token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not provider_token:
            return self._reject("MissingProviderToken", 403)
        try:
            jwt_header = jwt.get_unverified_header(provider_token)
            claims = jwt.decode(
                provider_token,
                self.key.public_key,
                algorithms=["ES256"],
                issuer=self.key.team_id,
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            return self._reject(f"InvalidProviderToken ({exc})", 403)
        if jwt_header.get("kid") != self.key.key_id:
            return self._reject("InvalidProviderToken (kid)", 403)
        if not time.time() - 3600 <= claims["iat"] <= time.time() + 60:
            return self._reject("ExpiredProviderToken", 403)
        if not headers.get("apns-topic"):
            return self._reject("MissingTopic", 400)
        if headers.get("apns-push-type") not in {"alert", "background", "voip", "location"}:
            return self._reject("InvalidPushType", 400)
        if headers.get("apns-priority") not in {None, "1", "5", "10"}:
            return self._reject("BadPriority", 400)
        try:
            uuid.UUID(headers.get("apns-id") or str(uuid.uuid4()))
        except ValueError:
            return self._reject("BadMessageId", 400)
        request = ApnsRequest(
            at=time.time(),
            http_version=scope["http_version"],
            token=token,
            headers=headers,
            body=json.loads(raw),
            connection=connection,
            jwt_header=jwt_header,
            jwt_claims=claims,
        )
        with self._lock:
            self.received.append(request)
            plan = self._plans.get(token)
            answer = plan.popleft() if plan else "ok"
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        if answer == "slow":
            await asyncio.sleep(SLOW_SECONDS)
            answer = "ok"
        if answer == "ok":
            return 200, {"apns-id": apns_id}, None
        status, reason = ANSWERS[answer]
        extra = {"apns-id": apns_id}
        if status == 429 and self.retry_after:
            extra["retry-after"] = self.retry_after
        body: dict[str, Any] = {"reason": reason}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        return status, extra, body

    def _reject(self, reason: str, status: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self.rejected.append(reason)
        return status, {}, {"reason": reason.split(" ")[0]}


def live_apns(settings: Settings, standin: ApnsStandIn) -> Settings:
    """Settings that send PUSH to APNs devices through the stand-in, trusting its test CA."""
    return replace(
        settings,
        push_provider="live",
        apns_key_file=str(standin.key.path),
        apns_key_id=standin.key.key_id,
        apns_team_id=standin.key.team_id,
        apns_base_url=standin.url,
        apns_ca_file=str(standin.tls.ca),
    )

"""An FCM HTTP v1 server with Google's OAuth token endpoint, over HTTP/1.1 on 127.0.0.1.

``POST /token`` is the JWT-bearer grant (RFC 7523) that google-auth performs with a service
account: the assertion must be an RS256 JWT signed by the service account's key, issued by its
email, for the firebase.messaging scope. ``POST /v1/projects/{id}/messages:send`` needs a
token issued here as ``Authorization: Bearer`` and answers as FCM does, per a per-token plan.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.settings import Settings
from tests.helpers.net import free_port

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def _error(status: int, rpc_status: str, message: str, fcm_code: str, *extra: dict) -> dict:
    details = [{"@type": FCM_ERROR, "errorCode": fcm_code}, *extra]
    return {"error": {"code": status, "message": message, "status": rpc_status, "details": details}}


# What a planned answer sends: (HTTP status, extra headers, body).
ANSWERS: dict[str, tuple[int, dict[str, str], dict[str, Any]]] = {
    "unregistered": (
        404,
        {},
        _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    ),
    "invalid_token": (
        400,
        {},
        _error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": "message.token", "description": "Invalid registration token"}
                ],
            },
        ),
    ),
    "invalid_payload": (
        400,
        {},
        _error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl'",
            "INVALID_ARGUMENT",
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.android.ttl", "description": "bad"}],
            },
        ),
    ),
    "sender_mismatch": (
        403,
        {},
        _error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
    ),
    "quota": (
        429,
        {"Retry-After": "2"},
        _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"),
    ),
    "internal": (500, {}, _error(500, "INTERNAL", "Internal error.", "INTERNAL")),
    # JSON may carry any character: this message decodes to text that holds a NUL byte.
    "internal_nul": (500, {}, _error(500, "INTERNAL", "Internal\u0000error.", "INTERNAL")),
    "unavailable": (
        503,
        {},
        _error(503, "UNAVAILABLE", "The service is unavailable.", "UNAVAILABLE"),
    ),
}


@dataclass(frozen=True)
class FcmRequest:
    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    connection: tuple[str, int]

    @property
    def token(self) -> str:
        return str(self.body["message"]["token"])


@dataclass
class ServiceAccount:
    """A service account as Google issues it: an RSA key and the JSON file that carries it."""

    project_id: str
    client_email: str
    key_id: str
    private_key: rsa.RSAPrivateKey
    path: Path

    @classmethod
    def create(
        cls, directory: Path, token_uri: str, project_id: str = "test-project"
    ) -> ServiceAccount:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        account = cls(
            project_id=project_id,
            client_email=f"notifier@{project_id}.iam.gserviceaccount.com",
            key_id=secrets.token_hex(20),
            private_key=key,
            path=directory / "service-account.json",
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        account.path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": project_id,
                    "private_key_id": account.key_id,
                    "private_key": pem,
                    "client_email": account.client_email,
                    "client_id": "1234567890",
                    "token_uri": token_uri,
                }
            )
        )
        return account


@dataclass
class FcmStandIn:
    """Answers 200 unless a token has a plan: a list of ANSWERS keys (or "ok") used in turn."""

    account: ServiceAccount
    port: int
    received: list[FcmRequest] = field(default_factory=list)
    token_grants: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    retry_after: str = "2"

    def __post_init__(self) -> None:
        self._plans: dict[str, deque[str]] = {}
        self._issued: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True

    @classmethod
    def create(cls, directory: Path) -> FcmStandIn:
        """A stand-in on a free port, with a service account whose token_uri is this server."""
        port = free_port()
        account = ServiceAccount.create(directory, f"http://127.0.0.1:{port}/token")
        return cls(account, port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FcmStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self._plans.clear()
            self.received.clear()
            self.token_grants.clear()
            self.rejected.clear()
            self.retry_after = "2"

    def plan(self, token: str, *answers: str) -> None:
        with self._lock:
            self._plans[token] = deque(answers)

    def to(self, token: str) -> list[FcmRequest]:
        with self._lock:
            return [r for r in self.received if r.token == token]

    # -- protocol ---------------------------------------------------------------------------

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != [GRANT_TYPE] or len(form.get("assertion", [])) != 1:
            return 400, {"error": "unsupported_grant_type"}
        assertion = form["assertion"][0]
        public_key = self.account.private_key.public_key()
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                issuer=self.account.client_email,
                options={"require": ["iat", "exp", "iss", "aud", "scope"]},
            )
        except jwt.PyJWTError as exc:
            self.rejected.append(f"token: {exc}")
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if header.get("kid") != self.account.key_id or SCOPE not in claims["scope"].split():
            self.rejected.append(f"token: kid {header.get('kid')} scope {claims['scope']}")
            return 400, {"error": "invalid_scope"}
        access_token = "ya29.stand-in-" + secrets.token_urlsafe(24)
        with self._lock:
            self._issued.add(access_token)
            self.token_grants.append({"header": header, "claims": claims, "at": time.time()})
        return 200, {"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}

    def send(
        self, path: str, headers: dict[str, str], raw: bytes, peer: tuple[str, int]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        scheme, _, access_token = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or access_token not in self._issued:
            self.rejected.append("send: bad Authorization")
            return 401, {}, {"error": {"code": 401, "status": "UNAUTHENTICATED", "details": []}}
        if path != f"/v1/projects/{self.account.project_id}/messages:send":
            return 404, {}, {"error": {"code": 404, "status": "NOT_FOUND", "details": []}}
        body = json.loads(raw)
        request = FcmRequest(time.time(), path, headers, body, peer)
        with self._lock:
            self.received.append(request)
            plan = self._plans.get(request.token)
            answer = plan.popleft() if plan else "ok"
        if answer == "ok":
            message_id = f"projects/{self.account.project_id}/messages/{secrets.token_hex(8)}"
            return 200, {}, {"name": message_id}
        status, extra, error = ANSWERS[answer]
        if "Retry-After" in extra:
            extra = {"Retry-After": self.retry_after}
        return status, extra, error


def _handler(standin: FcmStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Google's front ends

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/token":
                status, body = standin.grant(urllib.parse.parse_qs(raw.decode()))
                extra: dict[str, str] = {}
            else:
                peer = (self.client_address[0], self.client_address[1])
                status, extra, body = standin.send(self.path, headers, raw, peer)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def live_fcm(settings: Settings, standin: FcmStandIn) -> Settings:
    """Settings that send PUSH to FCM devices through the stand-in, with its service account."""
    return replace(
        settings,
        push_provider="live",
        fcm_service_account_file=str(standin.account.path),
        fcm_base_url=standin.url,
    )

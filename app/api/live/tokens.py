"""Short-lived tokens that let a browser open one user's WebSocket without an API key.

A token is ``v1.<base64url payload>.<base64url HMAC-SHA256(secret, payload)>``; the payload is
``{"p": project id, "u": user id, "exp": unix seconds}``. Tokens are checked when a socket connects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

VERSION = "v1"
MAX_TOKEN_LENGTH = 1024


class TokenError(ValueError):
    """The token is malformed, forged or expired; ``reason`` is safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Token:
    value: str
    project_id: str
    user_id: str
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def issue(
    secret: str, project_id: str, user_id: str, ttl_seconds: int, now: float | None = None
) -> Token:
    expires_at = int((time.time() if now is None else now) + ttl_seconds)
    payload = _b64(orjson.dumps({"p": project_id, "u": user_id, "exp": expires_at}))
    signed = f"{VERSION}.{payload}.{_signature(secret, payload)}"
    return Token(signed, project_id, user_id, expires_at)


def verify(secret: str, token: object, now: float | None = None) -> tuple[str, str]:
    """The project and user the token was issued for; TokenError if it is not a valid, live
    token."""
    if not secret:
        raise TokenError("tokens are not enabled on this server")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("invalid token")
    version, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    if version != VERSION or not payload or not signature:
        raise TokenError("invalid token")
    # Compared in constant time: the response must not tell how much of a forgery was right.
    if not hmac.compare_digest(signature.encode(), _signature(secret, payload).encode()):
        raise TokenError("invalid token")
    try:
        claims = orjson.loads(_unb64(payload))
        project_id, user_id, expires_at = claims["p"], claims["u"], claims["exp"]
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise TokenError("invalid token") from None
    if not (
        isinstance(project_id, str) and isinstance(user_id, str) and isinstance(expires_at, int)
    ):
        raise TokenError("invalid token")
    if expires_at <= (time.time() if now is None else now):
        raise TokenError("token expired")
    return project_id, user_id

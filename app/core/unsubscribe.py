"""One-click unsubscribe tokens (RFC 8058): signed, so verifying one needs no database.

A token is ``<base64url payload>.<base64url HMAC-SHA256(secret, payload)>``; the payload is
``{"p": project, "u": user, "c": category or null, "ch": channel}``. It does not expire: a
link in an old email must still unsubscribe. The worker signs (tasks/channels/email.py), the
API verifies (app/api/unsubscribe.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import orjson

PATH = "/u/"
MAX_TOKEN_LENGTH = 1024


class TokenError(ValueError):
    """Malformed, forged or altered."""


@dataclass(frozen=True)
class Scope:
    """What one token unsubscribes: a user of a project from a category (or, without one, from
    the channel) on one channel."""

    project_id: str
    user_id: str
    category: str | None
    channel: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(secret: str, scope: Scope) -> str:
    payload = _b64(
        orjson.dumps(
            {"p": scope.project_id, "u": scope.user_id, "c": scope.category, "ch": scope.channel}
        )
    )
    return f"{payload}.{_signature(secret, payload)}"


def url(base_url: str, secret: str, scope: Scope) -> str:
    return f"{base_url.rstrip('/')}{PATH}{sign(secret, scope)}"


def verify(secret: str, token: str) -> Scope:
    """The scope the token was signed for; TokenError for anything else."""
    if not secret or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("invalid token")
    payload, _, signature = token.partition(".")
    # Compared in constant time: the answer must not tell how much of a forgery was right.
    if not payload or not hmac.compare_digest(
        signature.encode(), _signature(secret, payload).encode()
    ):
        raise TokenError("invalid token")
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        scope = Scope(claims["p"], claims["u"], claims["c"], claims["ch"])
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise TokenError("invalid token") from None
    if not all(isinstance(v, str) for v in (scope.project_id, scope.user_id, scope.channel)) or (
        scope.category is not None and not isinstance(scope.category, str)
    ):
        raise TokenError("invalid token")
    return scope

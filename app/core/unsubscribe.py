"""One-click unsubscribe tokens (RFC 8058): signed, so verifying one needs no database.

A token is ``<base64url payload>.<base64url HMAC-SHA256(secret, payload)>``; the payload is
``{"p": project, "u": user, "c": category or null, "ch": channel}`` for an email sent to a
user, and ``{"p": project, "ch": channel, "a": address key, "d": delivery}`` for one sent to
an address alone (the address's suppression-list key, so the link does not carry the
address). It does not expire: a link in an old email must still unsubscribe. The worker signs
(tasks/channels/email.py), the API verifies (app/api/unsubscribe.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

import orjson

PATH = "/u/"
# Where a body wants the one-click unsubscribe link: the email provider puts the recipient's
# link there at send; a template's {{ unsubscribeUrl }} renders to it.
UNSUBSCRIBE_PLACEHOLDER = "{{unsubscribeUrl}}"
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


@dataclass(frozen=True)
class AddressScope:
    """What a token of an email sent to an address alone unsubscribes: that address, by its
    suppression-list key (``address_key`` of migration 0010), from whatever of the project it
    may opt out of on one channel. ``delivery_id`` is the delivery that carried the link: the
    list entry takes the address from it while it is kept."""

    project_id: str
    channel: str
    address_key: bytes
    delivery_id: str


_ADDRESS_KEY_BYTES = 32  # SHA-256


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, scope: Scope | AddressScope) -> str:
    if isinstance(scope, AddressScope):
        claims: dict[str, object] = {
            "p": scope.project_id,
            "ch": scope.channel,
            "a": _b64(scope.address_key),
            "d": scope.delivery_id,
        }
    else:
        claims = {
            "p": scope.project_id,
            "u": scope.user_id,
            "c": scope.category,
            "ch": scope.channel,
        }
    payload = _b64(orjson.dumps(claims))
    return f"{payload}.{_signature(secret, payload)}"


def url(base_url: str, secret: str, scope: Scope | AddressScope) -> str:
    return f"{base_url.rstrip('/')}{PATH}{sign(secret, scope)}"


def verify(secret: str, token: str) -> Scope | AddressScope:
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
        claims = orjson.loads(_unb64(payload))
        if "a" in claims:
            return _address_scope(claims)
        scope = Scope(claims["p"], claims["u"], claims["c"], claims["ch"])
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise TokenError("invalid token") from None
    if not all(isinstance(v, str) for v in (scope.project_id, scope.user_id, scope.channel)) or (
        scope.category is not None and not isinstance(scope.category, str)
    ):
        raise TokenError("invalid token")
    return scope


def _address_scope(claims: dict[str, object]) -> AddressScope:
    """Raises ValueError, TypeError or KeyError for claims this module did not sign."""
    project_id, channel, key, delivery_id = (claims[k] for k in ("p", "ch", "a", "d"))
    if not all(isinstance(v, str) for v in (project_id, channel, key, delivery_id)):
        raise TypeError("claims of the wrong type")
    address_key = _unb64(str(key))
    if len(address_key) != _ADDRESS_KEY_BYTES:
        raise ValueError("not an address key")
    return AddressScope(
        str(project_id), str(channel), address_key, str(uuid.UUID(str(delivery_id)))
    )

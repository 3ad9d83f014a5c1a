"""Opaque, URL-safe pagination cursors: a position as text, wrapped so callers never parse it."""

from __future__ import annotations

import base64
import binascii


def wrap(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def unwrap(raw: str) -> str:
    """The position inside a cursor; ValueError for anything that is not one."""
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a cursor") from exc

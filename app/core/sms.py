"""SMS encoding: which alphabet a body needs and how many segments it costs.

A body made only of GSM 03.38 characters is sent in GSM-7: 160 septets in one message, 153 per
part once it is split (the rest carries the concatenation header). Characters of the extension
table (``^{}\\[~]|€`` and form feed) take two septets, an escape and the character, and that pair
is never split across parts. Any other character makes the whole body UCS-2: 70 UTF-16 code units
in one message, 67 per part, and a surrogate pair (an emoji, say) is never split either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class Segments:
    encoding: Literal["GSM-7", "UCS-2"]
    count: int


def _units(body: str) -> tuple[Literal["GSM-7", "UCS-2"], list[int]]:
    """The encoding and the indivisible size of each character in it."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body):
        return "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in body]
    return "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in body]


def _parts(units: list[int], capacity: int) -> int:
    parts, used = 1, 0
    for size in units:
        if used + size > capacity:
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_segments(body: str) -> Segments:
    """How ``body`` is encoded and how many SMS segments it is sent as (at least one)."""
    encoding, units = _units(body)
    single, part = (GSM7_SINGLE, GSM7_PART) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_PART)
    if sum(units) <= single:
        return Segments(encoding, 1)
    return Segments(encoding, _parts(units, part))

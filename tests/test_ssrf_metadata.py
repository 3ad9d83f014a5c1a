"""Cloud metadata addresses stay blocked whatever WEBHOOK_ALLOWED_NETWORKS opens."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from tasks.channels.ssrf import BlockedAddress, GuardedTransport, is_permitted

WIDE_OPEN = [
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "100.64.0.0/10", "fd00::/8", "0.0.0.0/0", "::/0")
]
METADATA = [
    "169.254.169.254",
    "169.254.170.2",
    "169.254.169.253",
    "100.100.100.200",
    "168.63.129.16",
    "fd00:ec2::254",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_refused_even_inside_an_allowed_network(address: str) -> None:
    assert not is_permitted(ipaddress.ip_address(address), WIDE_OPEN)


@pytest.mark.parametrize("address", ["169.254.10.1", "100.64.0.7", "fd00::1", "10.0.0.1"])
def test_an_allowed_network_still_opens_its_other_addresses(address: str) -> None:
    assert is_permitted(ipaddress.ip_address(address), WIDE_OPEN)


def test_a_webhook_host_resolving_to_the_metadata_service_is_blocked_at_connect() -> None:
    def metadata_dns(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    with (
        httpx.Client(transport=GuardedTransport(WIDE_OPEN, resolve=metadata_dns)) as http,
        pytest.raises(BlockedAddress),
    ):
        http.get("http://metadata.example/latest/meta-data/", timeout=2)

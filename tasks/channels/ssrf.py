"""The SSRF guard: which addresses a webhook may connect to, enforced at connect time.

A caller chooses the webhook URL, so without a guard any API key could make our workers POST to
the cloud metadata service, the database or anything else on the private network. The check runs
inside the HTTP client's network backend: the host is resolved once, every resolved address is
checked, and the socket is opened to a checked address itself. There is no second lookup for a
DNS-rebinding server to answer differently. TLS still verifies the certificate against the URL's
host name (httpcore passes the origin host as SNI and for verification, not the address).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata and host services reachable from inside cloud VMs and containers. Most are
# link-local or private and refused anyway; they are refused before WEBHOOK_ALLOWED_NETWORKS is
# consulted, so an allow-list of, say, 169.254.0.0/16 or 100.64.0.0/10 can never open them.
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.0/24",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle (.254), AWS DNS, NTP
        "169.254.170.0/24",  # AWS ECS task metadata (.2) and EKS pod identity (.23)
        "fd00:ec2::/64",  # AWS IMDS, DNS and NTP over IPv6
        "100.100.100.200/32",  # Alibaba Cloud
        "168.63.129.16/32",  # Azure WireServer (a public address, only meaningful inside Azure)
    )
)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """The webhook host resolves only to addresses webhooks may not reach."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches through mapping, 6to4, Teredo or NAT64."""
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def is_metadata(address: IPAddress) -> bool:
    """A cloud metadata address, directly or wrapped in IPv6 (mapping, 6to4, Teredo, NAT64)."""
    if any(address in network for network in METADATA_NETWORKS):
        return True
    return isinstance(address, ipaddress.IPv6Address) and any(
        is_metadata(v4) for v4 in _embedded_ipv4(address)
    )


def is_forbidden(address: IPAddress) -> bool:
    """Loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT) and
    metadata addresses, including IPv4 ones wrapped in IPv6."""
    if is_metadata(address):
        return True
    if isinstance(address, ipaddress.IPv6Address) and any(
        is_forbidden(v4) for v4 in _embedded_ipv4(address)
    ):
        return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def is_permitted(address: IPAddress, allowed: Iterable[IPNetwork]) -> bool:
    """Whether a webhook may connect to ``address``: public, or inside an allowed network; never
    a metadata address, whatever is allowed."""
    if is_metadata(address):
        return False
    if any(address in network for network in allowed):
        return True
    return not is_forbidden(address)


Resolver = Callable[..., list[tuple[Any, ...]]]


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses that pass :func:`is_permitted`."""

    def __init__(
        self, allowed: Sequence[IPNetwork], resolve: Resolver = socket.getaddrinfo
    ) -> None:
        self._allowed = list(allowed)
        self._resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the webhook host: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        permitted = [a for a in addresses if is_permitted(ipaddress.ip_address(a), self._allowed)]
        if not permitted:
            raise BlockedAddress(
                "the webhook host resolves only to loopback, private, link-local, multicast,"
                " reserved or metadata addresses, which webhooks may not reach"
            )
        failure: Exception | None = None
        for address in permitted:
            try:
                # The checked address itself, not the name: nothing is resolved again.
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a :class:`GuardedBackend`.

    httpx offers no public way to hand its connection pool a network backend, so the pool that
    ``HTTPTransport`` builds is replaced by an identical one that has the guard (httpx is pinned
    below 0.29 in setup.cfg; the webhook SSRF tests fail if the guard is ever bypassed).
    Proxies are not supported: through a proxy the guard would check the proxy, not the target.
    ``verify`` replaces the default (certifi's CAs) with another TLS client context.
    """

    def __init__(
        self,
        allowed: Sequence[IPNetwork],
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolve: Resolver = socket.getaddrinfo,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=verify or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allowed, resolve),
        )

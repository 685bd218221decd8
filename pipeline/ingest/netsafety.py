"""Network safety: a feed must not make the crawler probe the network it runs in.

Every host is resolved and *every* address it resolves to is checked before a
connection is opened; the connection then goes to the checked address (no
second lookup, so DNS rebinding cannot swap it). Refused: loopback (unless
allowed), private and unique-local networks (unless allowed), link-local
(which includes cloud metadata at 169.254.169.254), multicast, reserved,
unspecified and shared (CGNAT) space; IPv4-mapped IPv6 is checked as IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Cloud metadata endpoints, refused even when private networks are allowed.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


class RefusedAddress(ConnectionError):
    """A host that resolves to an address finsentry will not connect to."""

    def __init__(self, host: str, address: str, why: str) -> None:
        super().__init__(f"netsafety: refused {host!r} -> {address} ({why})")
        self.host = host
        self.address = address
        self.why = why


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def _why_refused(address: IPAddress, allow_loopback: bool, allow_private: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _PRIVATE_NETWORKS if net.version == address.version):
        return None if allow_private else "private"
    if not address.is_global:
        return "reserved"
    return None


@dataclass
class AddressGuard:
    """Resolves hosts and refuses unsafe addresses; caches good answers briefly."""

    allow_loopback: bool = False
    allow_private: bool = False
    resolver: Resolver = system_resolver
    _cache: dict[tuple[str, int], list[str]] = field(default_factory=dict, repr=False)

    async def resolve(self, host: str, port: int) -> list[str]:
        """All addresses of ``host``, or :class:`RefusedAddress` if any of them is unsafe."""
        host = host.strip("[]")
        key = (host, port)
        if key in self._cache:
            return self._cache[key]
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError as exc:
                raise RefusedAddress(host, "?", f"does not resolve: {exc}") from exc
        if not addresses:
            raise RefusedAddress(host, "?", "no addresses")
        for text in addresses:
            why = _why_refused(
                ipaddress.ip_address(text.split("%")[0]), self.allow_loopback, self.allow_private
            )
            if why:
                raise RefusedAddress(host, text, why)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = addresses
        return addresses

    def forget(self) -> None:
        """Drop cached answers (call once per poll so DNS changes are seen)."""
        self._cache.clear()


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that connects only to addresses the guard accepted."""

    def __init__(self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend | None = None):
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.resolve(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or RefusedAddress(host, "?", "no addresses")

    async def connect_unix_socket(self, *args, **kwargs):  # pragma: no cover - never used
        raise RefusedAddress("unix socket", "-", "unix sockets are not crawled")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

"""The SSRF guard: webhook URLs come from users, so where they lead is checked on every connect.

A user who may register an endpoint URL could otherwise make the outbox call the cloud
metadata service (169.254.169.254), the database on 10.0.0.5 or an admin port on loopback, and
read the answer in the attempt log. The check runs on the addresses DNS returned, inside the
connector, and only vetted addresses are handed on to be connected to: a name that resolves to
a private address is refused however innocent it looks, and a record that changes between a
check and the connect (DNS rebinding) cannot slip through, because there is no second lookup.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tether._errors import ConfigError

__all__ = ["EgressPolicy", "EgressRefused", "GuardedResolver", "guarded_session"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services outside the ranges `is_global` already excludes are listed explicitly, so
# an allowlist entry for a broad public range cannot let them in by accident.
_METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("169.254.170.2/32"),
    ipaddress.ip_network("100.100.100.200/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)


class EgressRefused(OSError):
    """A webhook URL leads to an address the egress policy refuses; nothing was sent."""


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:10.0.0.1 reaches 10.0.0.1: judge the IPv4 address inside.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressPolicy:
    """Which addresses webhook deliveries may connect to.

    Public addresses are allowed; private, loopback, link-local, shared (CGNAT), multicast,
    reserved and cloud-metadata addresses are refused unless a network in `allow` holds them.

    Args:
        allow: networks to let through anyway, e.g. ("127.0.0.1/32",) for a receiver on
            loopback in tests, or ("10.20.0.0/16",) for receivers on a private network.
        allow_metadata: also let the cloud metadata addresses through when `allow` covers them;
            almost never what you want.
    """

    allow: tuple[str, ...] = ()
    allow_metadata: bool = False
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given: object = self.allow
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise ConfigError(
                "EgressPolicy.allow must be a tuple of networks, e.g. ('127.0.0.1/32',)"
            )
        networks: list[IPNetwork] = []
        for item in given:
            try:
                networks.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ConfigError(f"EgressPolicy.allow: {item!r} is not an IP network") from None
        object.__setattr__(self, "allow", tuple(str(n) for n in networks))
        object.__setattr__(self, "_networks", tuple(networks))

    def permits(self, address: str | IPAddress) -> bool:
        """Whether a connection to `address` is allowed."""
        try:
            ip = _unmapped(ipaddress.ip_address(address))
        except ValueError:
            return False
        metadata = any(ip in net for net in _METADATA if net.version == ip.version)
        if metadata and not self.allow_metadata:
            return False
        if any(ip in net for net in self._networks if net.version == ip.version):
            return True
        return ip.is_global and not ip.is_multicast and not metadata

    def check_url(self, url: str) -> None:
        """Refuse a URL that names a refused address literally (DNS names are checked later).

        Raises:
            EgressRefused: the URL's host is an IP address the policy refuses.
        """
        host = (urlsplit(url).hostname or "").strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not self.permits(host):
            raise EgressRefused(f"refused by the egress policy: {host} is not a public address")


def check_endpoint_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL without credentials or fragment.

    Raises:
        ConfigError: anything else.
    """
    given: object = url
    if not isinstance(given, str) or not given.strip():
        raise ConfigError("an endpoint URL is required")
    try:
        parts = urlsplit(given)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("the endpoint URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("an endpoint URL must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("an endpoint URL must not carry user:password; use headers instead")
    if parts.fragment:
        raise ConfigError("an endpoint URL must not have a #fragment")
    if any(c in given for c in " \r\n\t"):
        raise ConfigError("an endpoint URL must not contain whitespace")
    return given


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then hands on only the addresses the policy permits."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        found = await self._inner.resolve(host, port, family)
        allowed = [entry for entry in found if self._policy.permits(entry["host"])]
        if not allowed:
            refused = ", ".join(sorted({entry["host"] for entry in found}))
            raise EgressRefused(
                f"refused by the egress policy: {host} resolves to {refused or 'nothing'}, "
                "not a public address"
            )
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_session(policy: EgressPolicy, *, max_connections: int = 256) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection passes the egress policy."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        resolver=GuardedResolver(policy),
        # Cached answers were vetted when they were resolved; a short TTL bounds how long a
        # changed record takes to be seen.
        ttl_dns_cache=10,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        # No proxy from the environment: a proxy would connect on our behalf, unchecked.
        trust_env=False,
    )
    if hasattr(session, "_retry_connection"):
        # The outbox schedule decides about repeats; aiohttp's hidden resend would not be logged.
        session._retry_connection = False
    return session

"""Finding devices on the local network: mDNS/DNS-SD (zeroconf) and SSDP, bounded in time.

Every search ends by its `timeout`, whatever the network does: collection stops at the
deadline, and slow resolutions are abandoned rather than waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tether._errors import ConfigError

__all__ = [
    "SSDP_ADDRESS",
    "Device",
    "build_msearch",
    "discover",
    "mdns_browse",
    "parse_ssdp_response",
    "ssdp_search",
]

#: The SSDP multicast group and port (UPnP Device Architecture 2.0, §1.1.2).
SSDP_ADDRESS = ("239.255.255.250", 1900)
DEFAULT_SERVICE_TYPE = "_http._tcp.local."
#: Bytes kept of one SSDP answer; the headers that matter fit in far less.
_MAX_DATAGRAM = 8192


@dataclass(frozen=True, slots=True)
class Device:
    """A device or service that answered."""

    source: Literal["mdns", "ssdp"]
    #: The mDNS instance name, or the SSDP unique service name (USN).
    name: str
    #: The DNS-SD service type, or the SSDP search target (ST).
    type: str
    addresses: tuple[str, ...] = ()
    port: int | None = None
    #: SSDP: the URL of the device description.
    location: str | None = None
    #: mDNS: the host name; SSDP: the SERVER header.
    server: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "type": self.type,
            "addresses": list(self.addresses),
            "port": self.port,
            "location": self.location,
            "server": self.server,
            "properties": dict(self.properties),
        }


# -- SSDP -------------------------------------------------------------------------------------


def build_msearch(
    search_target: str = "ssdp:all", *, mx: int = 2, host: tuple[str, int] = SSDP_ADDRESS
) -> bytes:
    """An M-SEARCH request (UPnP Device Architecture 2.0, §1.3.2)."""
    if not 1 <= mx <= 5:
        raise ConfigError("MX must be 1 to 5 seconds (UPnP DA 2.0 §1.3.2)")
    lines = [
        "M-SEARCH * HTTP/1.1",
        f"HOST: {host[0]}:{host[1]}",
        'MAN: "ssdp:discover"',
        f"MX: {mx}",
        f"ST: {search_target}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def parse_ssdp_response(data: bytes, sender: tuple[str, int] | None = None) -> Device | None:
    """A `Device` from an M-SEARCH answer (`HTTP/1.1 200 OK` + headers), or None for anything
    else: NOTIFY announcements, other M-SEARCHes, error statuses, garbage."""
    try:
        text = data[:_MAX_DATAGRAM].decode("utf-8", errors="replace")
    except (AttributeError, TypeError):
        return None
    head, _, _ = text.partition("\r\n\r\n")
    lines = head.replace("\r\n", "\n").split("\n")
    status = lines[0].split(None, 2) if lines else []
    if len(status) < 2 or not status[0].upper().startswith("HTTP/") or status[1] != "200":
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.setdefault(name.strip().upper(), value.strip())
    search_target = headers.get("ST")
    usn = headers.get("USN")
    if not search_target and not usn:
        return None
    extra = {
        k.lower(): v
        for k, v in headers.items()
        if k not in ("ST", "USN", "LOCATION", "SERVER", "EXT", "DATE", "CONTENT-LENGTH")
    }
    return Device(
        source="ssdp",
        name=usn or search_target or "",
        type=search_target or "",
        addresses=(sender[0],) if sender else (),
        port=None,
        location=headers.get("LOCATION"),
        server=headers.get("SERVER"),
        properties=extra,
    )


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        device = parse_ssdp_response(data, (str(addr[0]), int(addr[1])))
        if device is not None:
            # One entry per USN and target: devices repeat their answer (and we ask twice).
            self.devices.setdefault(f"{device.name}|{device.type}|{device.location}", device)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the search goes on until its deadline.
        return


async def ssdp_search(
    *,
    timeout: float = 5.0,
    search_target: str = "ssdp:all",
    target: tuple[str, int] = SSDP_ADDRESS,
    ttl: int = 2,
) -> list[Device]:
    """Send an M-SEARCH and collect the answers that arrive within `timeout` seconds.

    `target` is the multicast group by default; tests send to a loopback responder instead.
    """
    if not timeout > 0:
        raise ConfigError("timeout must be a positive number of seconds")
    loop = asyncio.get_running_loop()
    try:
        address = ipaddress.ip_address(target[0])
    except ValueError:
        raise ConfigError(f"the SSDP target must be an IPv4 address, got {target[0]!r}") from None
    multicast = address.is_multicast
    # Answers come from any host on the network, or only from loopback when searching there.
    local = "127.0.0.1" if address.is_loopback else "0.0.0.0"  # noqa: S104
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        if multicast:
            # A small TTL keeps the search on the local network (UPnP DA 2.0 recommends 2).
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.bind((local, 0))
    except OSError:
        sock.close()
        raise
    transport, protocol = await loop.create_datagram_endpoint(_Collector, sock=sock)
    try:
        # MX tells devices to spread their answers over that many seconds: keep it within
        # the time we will listen.
        mx = max(1, min(5, int(timeout)))
        message = build_msearch(search_target, mx=mx, host=SSDP_ADDRESS)
        # UDP may drop one copy; UPnP suggests sending the search more than once.
        for _ in range(2):
            transport.sendto(message, target)
        await asyncio.sleep(timeout)
    finally:
        transport.close()
    return list(protocol.devices.values())


# -- mDNS -------------------------------------------------------------------------------------


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _device_from_info(info: Any) -> Device:
    properties = {_text(k): _text(v) for k, v in (info.properties or {}).items()}
    return Device(
        source="mdns",
        name=str(info.name),
        type=str(info.type),
        addresses=tuple(info.parsed_addresses()),
        port=info.port,
        server=info.server,
        properties=properties,
    )


async def mdns_browse(
    service_types: Sequence[str] = (DEFAULT_SERVICE_TYPE,),
    *,
    timeout: float = 5.0,
    interfaces: Iterable[str] | None = None,
) -> list[Device]:
    """Browse DNS-SD service types over mDNS for `timeout` seconds and resolve what answers.

    `interfaces` limits the search to those interface addresses (tests use `["127.0.0.1"]`);
    by default every interface is used. Needs the `zeroconf` package.
    """
    if not timeout > 0:
        raise ConfigError("timeout must be a positive number of seconds")
    try:
        # An optional dependency: without it, the ignores keep mypy quiet about the import.
        from zeroconf import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
            InterfaceChoice,
            ServiceStateChange,
        )
        from zeroconf.asyncio import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
            AsyncServiceBrowser,
            AsyncServiceInfo,
            AsyncZeroconf,
        )
    except ImportError:
        raise ConfigError(
            "mDNS discovery needs the zeroconf package: pip install zeroconf"
        ) from None
    types = [t if t.endswith(".") else t + "." for t in service_types]
    for service_type in types:
        if not service_type.endswith(".local.") or not service_type.startswith("_"):
            raise ConfigError(
                f"{service_type!r} is not a DNS-SD service type like '_http._tcp.local.'"
            )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    chosen = list(interfaces) if interfaces is not None else InterfaceChoice.All
    zc = AsyncZeroconf(interfaces=chosen)
    resolving: dict[str, asyncio.Task[Device | None]] = {}

    async def resolve(service_type: str, name: str) -> Device | None:
        info = AsyncServiceInfo(service_type, name)
        remaining_ms = int(max(0.0, deadline - loop.time()) * 1000)
        if remaining_ms <= 0 or not await info.async_request(zc.zeroconf, remaining_ms):
            return None
        return _device_from_info(info)

    def on_change(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        del zeroconf
        if state_change is not ServiceStateChange.Removed and name not in resolving:
            resolving[name] = loop.create_task(resolve(service_type, name))

    browser = AsyncServiceBrowser(zc.zeroconf, types, handlers=[on_change])
    try:
        await asyncio.sleep(max(0.0, deadline - loop.time()))
    finally:
        await browser.async_cancel()
        # Resolutions were bounded by the same deadline; anything still running is late.
        for task in resolving.values():
            if not task.done():
                task.cancel()
        results = await asyncio.gather(*resolving.values(), return_exceptions=True)
        await zc.async_close()
    return [r for r in results if isinstance(r, Device)]


async def discover(
    *,
    mdns: bool = True,
    ssdp: bool = False,
    service_types: Sequence[str] = (DEFAULT_SERVICE_TYPE,),
    timeout: float = 5.0,
    interfaces: Iterable[str] | None = None,
    ssdp_target: tuple[str, int] = SSDP_ADDRESS,
    search_target: str = "ssdp:all",
) -> list[Device]:
    """mDNS and/or SSDP at the same time; both end within `timeout` seconds."""
    searches: list[asyncio.Task[list[Device]]] = []
    async with asyncio.TaskGroup() as group:
        if mdns:
            searches.append(
                group.create_task(
                    mdns_browse(service_types, timeout=timeout, interfaces=interfaces)
                )
            )
        if ssdp:
            searches.append(
                group.create_task(
                    ssdp_search(timeout=timeout, target=ssdp_target, search_target=search_target)
                )
            )
    found: list[Device] = []
    for search in searches:
        with contextlib.suppress(asyncio.CancelledError):
            found.extend(search.result())
    return found

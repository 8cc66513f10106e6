"""Local discovery: the SSDP parser, a search against a loopback responder, mDNS on loopback.

Nothing here sends multicast off the machine: SSDP searches go to a responder on 127.0.0.1,
and mDNS runs on the loopback interface only.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tether._discover import build_msearch, mdns_browse, parse_ssdp_response, ssdp_search

from .conftest import RunCLI

ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=1800\r\n"
    b"EXT:\r\n"
    b"LOCATION: http://127.0.0.1:49152/description.xml\r\n"
    b"SERVER: Linux/5.10 UPnP/1.0 Hue/1.0\r\n"
    b"ST: urn:schemas-upnp-org:device:basic:1\r\n"
    b"USN: uuid:2f402f80-da50-11e1-9b23-001788255acc::urn:schemas-upnp-org:device:basic:1\r\n"
    b"hue-bridgeid: 001788FFFE255ACC\r\n"
    b"\r\n"
)


def test_msearch_follows_upnp() -> None:
    """The M-SEARCH names the multicast host, MAN, MX and ST, ending in a blank line."""
    message = build_msearch("ssdp:all", mx=2).decode()
    assert message.startswith("M-SEARCH * HTTP/1.1\r\n")
    assert "HOST: 239.255.255.250:1900\r\n" in message
    assert 'MAN: "ssdp:discover"\r\n' in message
    assert "MX: 2\r\n" in message
    assert message.endswith("ST: ssdp:all\r\n\r\n")


def test_ssdp_answer_is_parsed() -> None:
    """A 200 answer gives the USN, ST, LOCATION, SERVER and the other headers."""
    device = parse_ssdp_response(ANSWER, ("127.0.0.1", 1900))
    assert device is not None
    assert device.name.startswith("uuid:2f402f80")
    assert device.type == "urn:schemas-upnp-org:device:basic:1"
    assert device.location == "http://127.0.0.1:49152/description.xml"
    assert device.server == "Linux/5.10 UPnP/1.0 Hue/1.0"
    assert device.addresses == ("127.0.0.1",)
    assert device.properties["hue-bridgeid"] == "001788FFFE255ACC"


@pytest.mark.parametrize(
    "data",
    [
        b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nUSN: uuid:x\r\n\r\n",
        b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nST: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nSERVER: nothing useful\r\n\r\n",
        b"\xff\xfe garbage",
        b"",
    ],
)
def test_other_datagrams_are_ignored(data: bytes) -> None:
    """Announcements, searches, error statuses, answers without ST/USN and garbage give None."""
    assert parse_ssdp_response(data) is None


class _Responder(asyncio.DatagramProtocol):
    """Answers each M-SEARCH with ANSWER twice (devices repeat themselves) plus garbage."""

    def __init__(self) -> None:
        self.searches: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.searches.append(data)
        assert self.transport is not None
        for reply in (ANSWER, ANSWER, b"not http at all"):
            self.transport.sendto(reply, addr)


@pytest.fixture
async def responder() -> AsyncIterator[tuple[_Responder, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _Responder, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    yield protocol, port
    transport.close()


async def test_ssdp_search_collects_answers_within_the_timeout(
    responder: tuple[_Responder, int],
) -> None:
    """Against a loopback responder: the M-SEARCH arrives, duplicate answers are merged,
    garbage is ignored, and the search ends at its timeout."""
    protocol, port = responder
    started = time.monotonic()
    devices = await ssdp_search(timeout=0.3, target=("127.0.0.1", port))
    elapsed = time.monotonic() - started
    assert protocol.searches
    assert protocol.searches[0].startswith(b"M-SEARCH * HTTP/1.1")
    assert len(devices) == 1
    assert devices[0].location == "http://127.0.0.1:49152/description.xml"
    assert 0.3 <= elapsed < 2.0


async def test_ssdp_search_ends_on_time_when_nothing_answers() -> None:
    """A silent target (a bound socket that never replies) still ends at the timeout."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        devices = await ssdp_search(timeout=0.2, target=("127.0.0.1", silent.getsockname()[1]))
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert devices == []
    assert 0.2 <= elapsed < 2.0


async def test_discover_command_with_ssdp_on_loopback(
    responder: tuple[_Responder, int], run_cli: RunCLI
) -> None:
    """`tether discover --no-mdns --ssdp --json` prints one JSON line per device."""
    _, port = responder
    result = await run_cli(
        ["discover", "--no-mdns", "--ssdp", "--timeout", "0.3", "--json",
         "--ssdp-target", f"127.0.0.1:{port}"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["source"] == "ssdp"


async def test_discover_needs_something_to_do(run_cli: RunCLI) -> None:
    """--no-mdns without --ssdp is a usage error."""
    result = await run_cli(["discover", "--no-mdns"])
    assert result.exit_code == 2


async def test_mdns_finds_a_service_registered_on_loopback() -> None:
    """zeroconf registers a service on 127.0.0.1; browsing loopback finds and resolves it
    within the timeout."""
    pytest.importorskip("zeroconf")
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    service_type = "_tethertest._tcp.local."
    info = AsyncServiceInfo(
        service_type,
        f"Bridge-{os.getpid()}.{service_type}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=8123,
        properties={"path": "/api"},
        server="bridge.local.",
    )
    registrar = AsyncZeroconf(interfaces=["127.0.0.1"])
    await registrar.async_register_service(info)
    try:
        started = time.monotonic()
        devices = await mdns_browse([service_type], timeout=1.5, interfaces=["127.0.0.1"])
        elapsed = time.monotonic() - started
    finally:
        await registrar.async_unregister_service(info)
        await registrar.async_close()
    (device,) = [d for d in devices if d.name == info.name]
    assert device.port == 8123
    assert device.addresses == ("127.0.0.1",)
    assert device.properties == {"path": "/api"}
    assert elapsed < 4.0


async def test_mdns_rejects_a_malformed_service_type() -> None:
    """A service type that is not `_name._proto.local.` is a ConfigError before any I/O."""
    pytest.importorskip("zeroconf")
    import tether

    with pytest.raises(tether.ConfigError, match="service type"):
        await mdns_browse(["http.local."], timeout=0.1)

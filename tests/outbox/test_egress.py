"""The SSRF guard: private, loopback, link-local and metadata addresses are refused on the
address actually connected to, unless an allowlist opts in."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tether import FakeClock, webhooks
from tether._errors import ConfigError
from tether.stores._outbox_sqlite import SQLiteOutboxStore
from tether.webhooks import DeliveryStatus, EgressPolicy, EgressRefused
from tether.webhooks._outbox_egress import GuardedResolver

from ..conftest import LoopbackServer


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - an address under test, not a bind
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    """Every private, loopback, link-local, shared, multicast or metadata address is refused."""
    assert not EgressPolicy().permits(address)


def test_public_addresses_pass_and_an_allowlist_opts_in() -> None:
    """Public addresses pass; allowed networks pass too, but metadata needs its own opt-in."""
    assert EgressPolicy().permits("93.184.215.14")
    assert EgressPolicy().permits("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    loopback = EgressPolicy(allow=("127.0.0.0/8", "::1/128"))
    assert loopback.permits("127.0.0.2")
    assert loopback.permits("::1")
    assert not loopback.permits("10.0.0.1")
    link_local = EgressPolicy(allow=("169.254.0.0/16",))
    assert link_local.permits("169.254.1.1")
    assert not link_local.permits("169.254.169.254")
    assert EgressPolicy(allow=("169.254.0.0/16",), allow_metadata=True).permits("169.254.169.254")
    with pytest.raises(ConfigError):
        EgressPolicy(allow=("not-a-network",))
    with pytest.raises(ConfigError):
        EgressPolicy(allow="127.0.0.1/32")  # type: ignore[arg-type]


class StaticResolver(AbstractResolver):
    """Answers every name with fixed addresses, as a hostile DNS record would."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=family,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_metadata_or_private_space_is_refused() -> None:
    """The resolver refuses names whose every address is refused, and drops refused ones."""
    metadata = GuardedResolver(EgressPolicy(), StaticResolver("169.254.169.254"))
    with pytest.raises(EgressRefused, match=r"169\.254\.169\.254"):
        await metadata.resolve("innocent.example.com", 80)
    private = GuardedResolver(EgressPolicy(), StaticResolver("10.0.0.7"))
    with pytest.raises(EgressRefused):
        await private.resolve("innocent.example.com", 80)
    mixed = GuardedResolver(EgressPolicy(), StaticResolver("10.0.0.7", "93.184.215.14"))
    assert [r["host"] for r in await mixed.resolve("mixed.example.com", 443)] == ["93.184.215.14"]


async def test_adding_an_endpoint_on_a_refused_ip_literal_fails_early(tmp_path: Path) -> None:
    """An endpoint URL naming a refused address is refused when it is added."""
    box = webhooks.Outbox(SQLiteOutboxStore(tmp_path / "o.db"))
    async with box:
        for url in ("http://169.254.169.254/latest", "http://10.0.0.1/", "http://[::1]:8080/"):
            with pytest.raises(ConfigError, match="egress policy"):
                await box.add_endpoint(url)
        for url in ("ftp://example.com/", "http://user:pw@example.com/", "/relative"):
            with pytest.raises(ConfigError):
                await box.add_endpoint(url)


async def test_a_name_that_resolves_to_loopback_is_never_connected_to(
    tmp_path: Path, server: LoopbackServer
) -> None:
    """localhost passes the URL check but the connect is refused; the receiver sees nothing."""
    port = server.url.rsplit(":", 1)[1]
    clock = FakeClock()
    box = webhooks.Outbox(SQLiteOutboxStore(tmp_path / "o.db"), clock=clock)
    async with box:
        await box.add_endpoint(f"http://localhost:{port}/hook")
        await box.enqueue("a", {"n": 1})
        w = box.worker(rand=lambda: 0.5)
        assert await w.run_once() == 1
        await w.aclose()
        (attempt,) = await box.attempts()
        assert (await _status(box)) is DeliveryStatus.PENDING
    assert server.seen == []
    assert attempt.status_code is None
    assert attempt.error is not None
    assert "egress policy" in attempt.error


async def test_a_refused_ip_literal_that_got_stored_is_still_refused_by_the_worker(
    tmp_path: Path, server: LoopbackServer
) -> None:
    """A worker with a stricter policy than whoever added the endpoint refuses to send."""
    clock = FakeClock()
    store = SQLiteOutboxStore(tmp_path / "o.db")
    loose = webhooks.Outbox(store, egress=EgressPolicy(allow=("127.0.0.1/32",)), clock=clock)
    async with loose:
        await loose.add_endpoint(f"{server.url}/hook")
        await loose.enqueue("a", {"n": 1})
        strict = webhooks.Outbox(store, clock=clock).worker(rand=lambda: 0.5)
        assert await strict.run_once() == 1
        await strict.aclose()
        (attempt,) = await loose.attempts()
    assert server.seen == []
    assert attempt.error is not None
    assert "egress policy" in attempt.error


async def _status(box: webhooks.Outbox) -> DeliveryStatus:
    (delivery,) = await box.deliveries()
    return delivery.status

"""What a credential costs per request, and how many token requests a herd at expiry causes.

    python bench/bench_auth.py            # 50 000 requests per credential, in-memory transport
    python bench/bench_auth.py --quick    # smaller counts for a smoke run

The transport is in memory so only the pipeline is measured: no credential, a fixed Bearer,
OAuth2 with a cached token (the steady state), and SignedJWT. The herd part sends N concurrent
requests at token expiry and counts token requests (single-flight says: one).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import tether  # noqa: E402
from tether.auth import MemoryTokenStore, OAuth2  # noqa: E402
from tether.testing import FakeClock, MockTransport  # noqa: E402


def answer(token_requests: list[int]) -> MockTransport:
    def handle(request: tether.Request) -> tether.Response:
        if request.url.endswith("/token"):
            token_requests.append(1)
            return tether.Response(
                200, json={"access_token": f"at-{len(token_requests)}", "expires_in": 3600}
            )
        return tether.Response(200, json={"ok": True})

    return MockTransport(handle)


async def per_request(name: str, auth: tether.auth.Credential | None, total: int) -> float:
    transport = answer([])
    async with tether.Client(
        "https://api.example.com", auth=auth, transport=transport, retry=None
    ) as client:
        for _ in range(200):
            await client.get("/x")
        start = time.perf_counter()
        for _ in range(total):
            await client.get("/x")
        elapsed = time.perf_counter() - start
    micros = elapsed / total * 1e6
    print(f"  {name:<28} {micros:7.1f} µs/request")
    return micros


async def herd(size: int) -> None:
    token_requests: list[int] = []
    transport = answer(token_requests)
    clock = FakeClock()
    auth = OAuth2.client_credentials(
        "https://auth.example.com/token", "id", "secret", transport=transport, clock=clock,
        store=MemoryTokenStore(),
    )  # fmt: skip
    async with tether.Client(
        "https://api.example.com", auth=auth, transport=transport, clock=clock
    ) as client:
        await client.get("/x")
        clock.advance(3600)
        start = time.perf_counter()
        await asyncio.gather(*(client.get("/x") for _ in range(size)))
        elapsed = time.perf_counter() - start
    print(
        f"  {size} concurrent requests at expiry: {len(token_requests) - 1} token request(s), "
        f"{elapsed * 1000:.1f} ms"
    )


async def main(quick: bool) -> None:
    total = 5_000 if quick else 50_000
    print(f"per-request cost, {total} sequential requests, in-memory transport")
    base = await per_request("no credential", None, total)
    for name, auth in [
        ("Bearer (fixed)", tether.auth.Bearer("token")),
        (
            "OAuth2 (cached token)",
            OAuth2.client_credentials(
                "https://auth.example.com/token", "id", "secret",
                transport=answer([]), store=MemoryTokenStore(),
            ),
        ),
        ("SignedJWT HS256 (cached)", tether.auth.SignedJWT("k" * 32, "HS256", {"iss": "x"})),
    ]:  # fmt: skip
        cost = await per_request(name, auth, total)
        print(f"  {'':<28} +{cost - base:6.1f} µs over no credential")
    print("single-flight")
    await herd(1_000 if quick else 10_000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))

"""Single-flight refresh: many tasks, threads, credential objects and processes, one request."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

import tether
from tests.auth._fake_as import CLIENT_ID, CLIENT_SECRET, FakeAS
from tether.auth import FileTokenStore, MemoryTokenStore, OAuth2, TokenSet
from tether.auth._manager import flight_waiters

PEER = Path(__file__).with_name("_peer_process.py")


async def wait_for(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` until it holds; bounded, so a broken build fails instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def refreshing(fake_as: FakeAS, seed: str, store: MemoryTokenStore) -> OAuth2:
    return OAuth2.refresh_token(
        fake_as.token_url, CLIENT_ID, seed, CLIENT_SECRET, store=store, clock=fake_as.clock
    )


async def test_200_tasks_and_8_threads_one_token_request(fake_as: FakeAS) -> None:
    """200 tasks and 8 SyncClient threads at expiry cause one refresh and no invalid_grant."""
    seed = fake_as.issue_refresh_token()
    store = MemoryTokenStore()
    shared = refreshing(fake_as, seed, store)
    fake_as.gate = asyncio.Event()
    start_threads = threading.Barrier(8)

    def thread_main(index: int) -> int:
        # Half the threads share the task's credential object, half build their own: the
        # flight is keyed by store and key, not by object.
        auth = shared if index % 2 else refreshing(fake_as, seed, store)
        with tether.SyncClient(fake_as.url, auth=auth, clock=fake_as.clock) as sync:
            start_threads.wait()
            return sync.get("/api").status

    loop = asyncio.get_running_loop()
    async with tether.Client(fake_as.url, auth=shared, clock=fake_as.clock) as c:
        tasks = [asyncio.create_task(c.get("/api")) for _ in range(200)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            threads = [loop.run_in_executor(pool, thread_main, i) for i in range(8)]
            await wait_for(lambda: fake_as.token_requests == 1, "the first token request")
            await wait_for(
                lambda: flight_waiters(shared._manager.flight_key) == 207, "all the callers"
            )
            fake_as.gate.set()
            statuses = [r.status for r in await asyncio.gather(*tasks)]
            statuses += await asyncio.gather(*threads)
    assert statuses == [200] * 208
    assert fake_as.token_requests == 1
    assert fake_as.invalid_grants == 0


async def test_many_clients_rebuilt_per_call_share_one_refresh(fake_as: FakeAS) -> None:
    """Credentials rebuilt for every call (Authlib #673) still refresh once between them."""
    seed = fake_as.issue_refresh_token()
    store = MemoryTokenStore()
    fake_as.gate = asyncio.Event()

    async def call() -> int:
        async with tether.Client(
            fake_as.url, auth=refreshing(fake_as, seed, store), clock=fake_as.clock
        ) as c:
            return (await c.get("/api")).status

    tasks = [asyncio.create_task(call()) for _ in range(50)]
    await wait_for(lambda: fake_as.token_requests == 1, "the first token request")
    fake_as.gate.set()
    assert await asyncio.gather(*tasks) == [200] * 50
    assert fake_as.token_requests == 1


async def test_cancelled_caller_does_not_lose_the_rotation(fake_as: FakeAS) -> None:
    """Cancelling the call that started a refresh lets the refresh finish and be stored."""
    seed = fake_as.issue_refresh_token()
    store = MemoryTokenStore()
    auth = refreshing(fake_as, seed, store)
    fake_as.gate = asyncio.Event()
    async with tether.Client(fake_as.url, auth=auth, clock=fake_as.clock) as c:
        first = asyncio.create_task(c.get("/api"))
        await wait_for(lambda: fake_as.token_requests == 1, "the token request")
        first.cancel()
        fake_as.gate.set()
        await asyncio.gather(first, return_exceptions=True)
        assert (await c.get("/api")).status == 200
    stored = await store.load(auth.store_key)
    assert stored is not None
    assert stored.refresh_token is not None
    assert stored.refresh_token.get_secret_value() in fake_as.refresh
    assert fake_as.token_requests == 1
    assert fake_as.invalid_grants == 0


async def test_peer_rotation_is_adopted_instead_of_burning_the_grant(fake_as: FakeAS) -> None:
    """A process whose refresh token was rotated by a peer adopts the stored token."""
    seed = fake_as.issue_refresh_token()
    store = MemoryTokenStore()
    ours = refreshing(fake_as, seed, store)
    await ours.current_token()
    # A peer (another credential object with its own seed, standing for another process)
    # rotates and stores a newer token set.
    assert await store.load(ours.store_key) is not None
    fake_as.clock.advance(3600)
    peer = refreshing(fake_as, "another-seed", store)
    peer._manager.key = ours.store_key  # same identity, different object and seed
    await peer.current_token()
    assert fake_as.token_requests == 2
    # Our in-memory copy is stale; we must not spend the old refresh token.
    token = await ours.current_token()
    assert token.version == 2
    assert fake_as.token_requests == 2
    assert fake_as.invalid_grants == 0


async def run_two_processes(
    token_url: str,
    api_url: str,
    path: Path,
    *,
    client_id: str,
    secret: str,
    token_requests: Callable[[], Awaitable[int]],
    release: Callable[[], None] | None = None,
) -> list[list[int]]:
    """Start two peer processes on one file store, let them go at once, return their statuses."""
    peers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER),
            token_url,
            api_url,
            str(path),
            client_id,
            secret,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for peer in peers:
            assert peer.stdout is not None
            assert (await asyncio.wait_for(peer.stdout.readline(), 30)).strip() == b"ready"
        before = await token_requests()
        for peer in peers:
            assert peer.stdin is not None
            peer.stdin.write(b"go\n")
            await peer.stdin.drain()
        if release is not None:
            deadline = time.monotonic() + 30
            while await token_requests() == before and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            # Give the other process the chance to misbehave: without the store's lock it would
            # send its own refresh now, with the same refresh token.
            await asyncio.sleep(0.5)
            release()
        outputs = [await asyncio.wait_for(peer.communicate(), 60) for peer in peers]
    finally:
        for peer in peers:
            if peer.returncode is None:
                peer.kill()
                await peer.wait()
    return [json.loads(stdout) for stdout, _ in outputs]


def expired_token_set(refresh_token: str) -> TokenSet:
    now = time.time()
    return TokenSet(
        access_token=SecretStr("expired-access"),
        refresh_token=SecretStr(refresh_token),
        issued_at=now - 3610,
        expires_at=now - 10,
        version=1,
    )


async def test_two_processes_sharing_a_file_store(fake_as: FakeAS, tmp_path: Path) -> None:
    """Two processes at expiry, sharing a file store, cause one refresh and no invalid_grant."""
    path = tmp_path / "tokens.json"
    seed = fake_as.issue_refresh_token()
    assert await FileTokenStore(path).save("shared", expired_token_set(seed), expected_version=None)
    fake_as.gate = asyncio.Event()

    async def count() -> int:
        return fake_as.token_requests

    results = await run_two_processes(
        fake_as.token_url, f"{fake_as.url}/api", path, client_id=CLIENT_ID, secret=CLIENT_SECRET,
        token_requests=count, release=fake_as.gate.set,
    )  # fmt: skip
    assert results == [[200] * 20, [200] * 20]
    assert fake_as.token_requests == 1
    assert fake_as.invalid_grants == 0
    stored = await FileTokenStore(path).load("shared")
    assert stored is not None
    assert stored.version == 2


async def test_a_stuck_flight_is_abandoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter gives up on a flight that never ends, and the next caller starts a new one."""
    from tether.auth import _manager

    monkeypatch.setattr(_manager, "FLIGHT_WAIT_LIMIT", 0.05)
    never = asyncio.Event()

    async def stuck() -> str:
        await never.wait()
        return "never"

    async def quick() -> str:
        return "fresh"

    owner = asyncio.create_task(_manager.single_flight("stuck-key", stuck))
    await asyncio.sleep(0)
    with pytest.raises(tether.AuthError, match="waited"):
        await _manager.single_flight("stuck-key", quick)
    assert await _manager.single_flight("stuck-key", quick) == "fresh"
    never.set()
    assert await owner == "never"

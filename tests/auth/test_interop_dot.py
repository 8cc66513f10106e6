"""Interop with django-oauth-toolkit, an independent server with refresh token reuse protection."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

import tether
from tests.auth._peers import DotPeer, HeadlessBrowser
from tether.auth import MemoryTokenStore, OAuth2, login
from tether.testing import FakeClock

SECRET = "dot-secret-canary-3e9a"


def token_posts(peer: DotPeer) -> int:
    """Token endpoint requests the server has logged so far."""
    return Path(peer.log).read_text().count('"POST /o/token/')


async def password_grant(peer: DotPeer) -> str:
    """A refresh token for alice, obtained the way a first sign-in would."""
    async with aiohttp.ClientSession() as session:
        form = {
            "grant_type": "password",
            "username": "alice",
            "password": "alice-password",
            "client_id": "pw-app",
            "client_secret": SECRET,
            "scope": "read",
        }
        async with session.post(peer.token_url, data=form) as r:
            body = await r.json()
    refresh: str = body["refresh_token"]
    return refresh


async def wait_for_log(peer: DotPeer, count: int) -> None:
    # runserver writes its access log line just after answering: poll for it, bounded.
    deadline = time.monotonic() + 10
    while token_posts(peer) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def test_client_credentials(dot_peer: DotPeer) -> None:
    """client_credentials against the toolkit, used on its protected API."""
    auth = OAuth2.client_credentials(
        dot_peer.token_url, "cc-app", SECRET, scope="read", store=MemoryTokenStore()
    )
    async with tether.Client(dot_peer.url, auth=auth) as c:
        assert (await c.get("/api/me")).json() == {"user": None}


async def test_rotation_and_reuse_protection(dot_peer: DotPeer) -> None:
    """Refreshes rotate the refresh token; the server revokes the family on a replay."""
    seed = await password_grant(dot_peer)
    clock = FakeClock(wall=time.time())
    auth = OAuth2.refresh_token(
        dot_peer.token_url, "pw-app", seed, SECRET, store=MemoryTokenStore(), clock=clock
    )
    async with tether.Client(dot_peer.url, auth=auth, clock=clock) as c:
        assert (await c.get("/api/me")).json() == {"user": "alice"}
        first = await auth.current_token()
        clock.advance(3600)
        assert (await c.get("/api/me")).json() == {"user": "alice"}
    second = await auth.current_token()
    assert first.refresh_token is not None
    assert second.refresh_token is not None
    assert second.refresh_token != first.refresh_token
    async with aiohttp.ClientSession() as session:
        replay = {
            "grant_type": "refresh_token",
            "refresh_token": first.refresh_token.get_secret_value(),
            "client_id": "pw-app",
            "client_secret": SECRET,
        }
        async with session.post(dot_peer.token_url, data=replay) as r:
            assert (await r.json())["error"] == "invalid_grant"
    # Reuse protection revoked the whole family: our credential now asks for a sign-in.
    clock.advance(3600)
    with pytest.raises(tether.ReauthRequired):
        await auth.current_token()


async def test_tasks_and_threads_at_expiry(dot_peer: DotPeer) -> None:
    """At expiry, 100 tasks and 4 threads cause one refresh; the grant survives."""
    seed = await password_grant(dot_peer)
    clock = FakeClock(wall=time.time())
    auth = OAuth2.refresh_token(
        dot_peer.token_url, "pw-app", seed, SECRET, store=MemoryTokenStore(), clock=clock
    )
    await auth.current_token()
    clock.advance(3600)
    await wait_for_log(dot_peer, token_posts(dot_peer))
    before = token_posts(dot_peer)
    loop = asyncio.get_running_loop()

    def thread_main() -> int:
        with tether.SyncClient(dot_peer.url, auth=auth, clock=clock) as sync:
            return sync.get("/api/me").status

    async with tether.Client(dot_peer.url, auth=auth, clock=clock) as c:
        with ThreadPoolExecutor(max_workers=4) as pool:
            threads = [loop.run_in_executor(pool, thread_main) for _ in range(4)]
            tasks = [asyncio.ensure_future(c.get("/api/me")) for _ in range(100)]
            statuses = [r.status for r in await asyncio.gather(*tasks)]
            statuses += await asyncio.gather(*threads)
    assert statuses == [200] * 104
    await wait_for_log(dot_peer, before + 1)
    assert token_posts(dot_peer) == before + 1
    # Had a second refresh spent the same token, reuse protection would have killed this one.
    clock.advance(3600)
    assert (await auth.current_token()).version == 3


async def test_authorization_code_with_pkce(dot_peer: DotPeer) -> None:
    """Headless sign-in through the toolkit's login page, with PKCE required by the server."""
    auth = OAuth2.authorization_code(
        f"{dot_peer.url}/o/authorize/", dot_peer.token_url, "code-app", scope="read",
        store=MemoryTokenStore(),
    )  # fmt: skip
    browser = HeadlessBrowser(fill={"username": "alice", "password": "alice-password"})
    token = await login(auth, open_browser=browser.visit)
    assert token.refresh_token is not None
    async with tether.Client(dot_peer.url, auth=auth) as c:
        assert (await c.get("/api/me")).json() == {"user": "alice"}

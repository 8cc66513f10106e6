"""Interop with panva's oidc-provider, a strict certified OpenID provider, on loopback."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import tether
from tests.auth._peers import HeadlessBrowser, OidcPeer
from tests.auth.test_concurrency import expired_token_set, run_two_processes
from tests.conftest import LoopbackServer
from tether.auth import DPoPKey, FileTokenStore, MemoryTokenStore, OAuth2, login
from tether.testing import FakeClock


def real_time_clock() -> FakeClock:
    """Virtual time that starts at the real wall time, so the provider accepts our iat claims."""
    return FakeClock(wall=time.time())


@pytest.fixture
async def introspecting_api(server: LoopbackServer, oidc_peer: OidcPeer) -> LoopbackServer:
    """An API that accepts a bearer token only if the provider's introspection says active."""

    async def resource(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{oidc_peer.url}/token/introspection",
                data={"token": token},
                headers={"Authorization": f"Basic {base64.b64encode(b'rs:rs-secret').decode()}"},
            ) as r,
        ):
            answer = await r.json()
        if not answer.get("active"):
            return web.json_response({}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return web.json_response({"client_id": answer["client_id"], "scope": answer.get("scope")})

    server.route("GET", "/resource", resource)
    return server


class TestClientCredentials:
    @pytest.mark.parametrize(
        ("client_id", "secret", "method"),
        [
            ("app", "app-secret-canary-5b7e", "client_secret_basic"),
            ("post-app", "post-secret-canary-2c4d", "client_secret_post"),
        ],
    )
    async def test_secret_methods(
        self,
        *,
        oidc_peer: OidcPeer,
        introspecting_api: LoopbackServer,
        client_id: str,
        secret: str,
        method: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """client_credentials with client_secret_basic and client_secret_post; no secret logged."""
        caplog.set_level(logging.DEBUG)
        auth = OAuth2.client_credentials(
            oidc_peer.token_url, client_id, secret, scope="api", client_auth=method,  # type: ignore[arg-type]
            store=MemoryTokenStore(),
        )  # fmt: skip
        async with tether.Client(introspecting_api.url, auth=auth) as c:
            answer = (await c.get("/resource")).json()
            token = (await auth.access_token()).get_secret_value()
        assert answer == {"client_id": client_id, "scope": "api"}
        assert "tether" in caplog.text  # the token request and the API call were logged
        assert secret not in caplog.text
        assert token not in caplog.text

    async def test_private_key_jwt(
        self, oidc_peer: OidcPeer, introspecting_api: LoopbackServer
    ) -> None:
        """private_key_jwt (RFC 7523): every re-fetch signs a new assertion the provider accepts."""
        clock = real_time_clock()
        auth = OAuth2.client_credentials(
            oidc_peer.token_url, "pkjwt", private_key=oidc_peer.private_key,
            private_key_id="pkjwt-1", scope="api", clock=clock, store=MemoryTokenStore(),
        )  # fmt: skip
        before = await oidc_peer.stats()
        async with tether.Client(introspecting_api.url, auth=auth, clock=clock) as c:
            assert (await c.get("/resource")).json()["client_id"] == "pkjwt"
            clock.advance(3600)
            assert (await c.get("/resource")).json()["client_id"] == "pkjwt"
        after = await oidc_peer.stats()
        assert after["token_requests"] - before["token_requests"] == 2
        assert after["token_errors"] == before["token_errors"]

    async def test_wrong_secret(self, oidc_peer: OidcPeer) -> None:
        """The provider's invalid_client becomes InvalidClient."""
        auth = OAuth2.client_credentials(
            oidc_peer.token_url, "app", "wrong", scope="api", store=MemoryTokenStore()
        )
        with pytest.raises(tether.InvalidClient):
            await auth.current_token()


def code_credential(peer: OidcPeer, **options: object) -> OAuth2:
    options.setdefault("store", MemoryTokenStore())
    return OAuth2.authorization_code(
        f"{peer.url}/auth", peer.token_url, "cli", scope="openid", **options,  # type: ignore[arg-type]
    )  # fmt: skip


class TestAuthorizationCode:
    async def test_pkce_login_refresh_rotation_and_reuse_detection(
        self, oidc_peer: OidcPeer
    ) -> None:
        """Headless PKCE sign-in, then refresh with rotation; the provider rejects a replay."""
        clock = real_time_clock()
        auth = code_credential(oidc_peer, clock=clock)
        first = await login(auth, open_browser=HeadlessBrowser().visit)
        assert first.refresh_token is not None
        async with tether.Client(oidc_peer.url, auth=auth, clock=clock) as c:
            assert (await c.get("/me")).json()["sub"] == "alice"
            clock.advance(3600)
            assert (await c.get("/me")).json()["sub"] == "alice"
        second = await auth.current_token()
        assert second.refresh_token is not None
        assert second.refresh_token != first.refresh_token
        # The provider is strict: replaying the rotated refresh token revokes the grant.
        before = await oidc_peer.stats()
        async with aiohttp.ClientSession() as session:
            form = {
                "grant_type": "refresh_token",
                "client_id": "cli",
                "refresh_token": first.refresh_token.get_secret_value(),
            }
            async with session.post(oidc_peer.token_url, data=form) as r:
                assert (await r.json())["error"] == "invalid_grant"
        assert (await oidc_peer.stats())["invalid_grant"] == before["invalid_grant"] + 1

    async def test_revoked_grant_raises_reauth(self, oidc_peer: OidcPeer) -> None:
        """After the provider revokes the grant, the next refresh raises ReauthRequired."""
        clock = real_time_clock()
        told: list[tether.ReauthRequired] = []
        auth = code_credential(oidc_peer, clock=clock, on_reauth_required=told.append)
        token = await login(auth, open_browser=HeadlessBrowser().visit)
        assert token.refresh_token is not None
        async with aiohttp.ClientSession() as session:
            form = {"token": token.refresh_token.get_secret_value(), "client_id": "cli"}
            async with session.post(f"{oidc_peer.url}/token/revocation", data=form) as r:
                assert r.status == 200
        clock.advance(3600)
        with pytest.raises(tether.ReauthRequired):
            await auth.current_token()
        assert len(told) == 1


class TestDeviceFlow:
    async def test_device_login(self, oidc_peer: OidcPeer) -> None:
        """RFC 8628 against the provider: authorization_pending until a person approves."""
        clock = real_time_clock()
        auth = OAuth2.device_code(
            f"{oidc_peer.url}/device/auth", oidc_peer.token_url, "cli", scope="openid",
            clock=clock, store=MemoryTokenStore(),
        )  # fmt: skip
        pending: list[asyncio.Task[str]] = []

        def show(device: tether.auth.DeviceCode) -> None:
            assert device.verification_uri_complete is not None
            browser = HeadlessBrowser()
            pending.append(asyncio.ensure_future(browser.visit(device.verification_uri_complete)))

        before = await oidc_peer.stats()
        token = await login(auth, show_device_code=show)
        assert await pending[0] == "device approved"
        assert token.access_token.get_secret_value()
        async with tether.Client(oidc_peer.url, auth=auth, clock=clock) as c:
            assert (await c.get("/me")).json()["sub"] == "alice"
        assert (await oidc_peer.stats())["token_requests"] > before["token_requests"]


class TestDPoP:
    async def test_dpop_bound_tokens_with_nonces(self, oidc_peer: OidcPeer) -> None:
        """DPoP (RFC 9449) with the provider's required nonces, at the token and userinfo."""
        clock = real_time_clock()
        auth = code_credential(oidc_peer, clock=clock, dpop=DPoPKey.generate())
        token = await login(auth, open_browser=HeadlessBrowser().visit)
        assert token.token_type == "DPoP"
        async with tether.Client(oidc_peer.url, auth=auth, clock=clock) as c:
            assert (await c.get("/me")).json()["sub"] == "alice"
            clock.advance(3600)  # refresh: the DPoP-bound refresh token needs the same key
            assert (await c.get("/me")).json()["sub"] == "alice"
        refreshed = await auth.current_token()
        assert refreshed.version > token.version
        assert refreshed.token_type == "DPoP"


@pytest.fixture
async def signed_in(oidc_peer: OidcPeer) -> tuple[OAuth2, FakeClock]:
    clock = real_time_clock()
    auth = code_credential(oidc_peer, clock=clock)
    await login(auth, open_browser=HeadlessBrowser().visit)
    return auth, clock


async def test_200_tasks_and_8_threads_at_expiry(
    oidc_peer: OidcPeer, signed_in: tuple[OAuth2, FakeClock]
) -> None:
    """At expiry, 200 tasks and 8 threads cause one refresh and no invalid_grant."""
    auth, clock = signed_in
    clock.advance(3600)
    before = await oidc_peer.stats()
    loop = asyncio.get_running_loop()

    def thread_main() -> int:
        with tether.SyncClient(oidc_peer.url, auth=auth, clock=clock) as sync:
            return sync.get("/me").status

    async with tether.Client(oidc_peer.url, auth=auth, clock=clock) as c:
        with ThreadPoolExecutor(max_workers=8) as pool:
            threads = [loop.run_in_executor(pool, thread_main) for _ in range(8)]
            tasks = [asyncio.ensure_future(c.get("/me")) for _ in range(200)]
            statuses = [r.status for r in await asyncio.gather(*tasks)]
            statuses += await asyncio.gather(*threads)
    after = await oidc_peer.stats()
    assert statuses == [200] * 208
    assert after["token_requests"] - before["token_requests"] == 1
    assert after["invalid_grant"] == before["invalid_grant"]


async def test_two_processes_sharing_a_file_store(oidc_peer: OidcPeer, tmp_path: Path) -> None:
    """Two processes at expiry, sharing a file store, refresh once; no invalid_grant."""
    auth = code_credential(oidc_peer)
    token = await login(auth, open_browser=HeadlessBrowser().visit)
    assert token.refresh_token is not None
    path = tmp_path / "tokens.json"
    seeded = expired_token_set(token.refresh_token.get_secret_value())
    assert await FileTokenStore(path).save("shared", seeded, expected_version=None)
    before = await oidc_peer.stats()

    async def count() -> int:
        return (await oidc_peer.stats())["token_requests"]

    results = await run_two_processes(
        oidc_peer.token_url, f"{oidc_peer.url}/me", path, client_id="cli", secret="",
        token_requests=count,
    )  # fmt: skip
    after = await oidc_peer.stats()
    assert results == [[200] * 20, [200] * 20]
    assert after["token_requests"] - before["token_requests"] == 1
    assert after["invalid_grant"] == before["invalid_grant"]

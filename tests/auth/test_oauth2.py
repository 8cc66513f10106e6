"""OAuth2 against a strict loopback authorization server: grants, client auth, lifecycle."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import tether
from tests.auth._fake_as import CLIENT_ID, CLIENT_SECRET, FakeAS
from tether.auth import MemoryTokenStore, OAuth2
from tether.testing import MockTransport


def cc(fake_as: FakeAS, **options: object) -> OAuth2:
    options.setdefault("clock", fake_as.clock)
    options.setdefault("store", MemoryTokenStore())
    return OAuth2.client_credentials(
        fake_as.token_url,
        CLIENT_ID,
        CLIENT_SECRET,
        **options,  # type: ignore[arg-type]
    )


def refreshing(fake_as: FakeAS, refresh_token: str, **options: object) -> OAuth2:
    options.setdefault("clock", fake_as.clock)
    options.setdefault("store", MemoryTokenStore())
    return OAuth2.refresh_token(
        fake_as.token_url, CLIENT_ID, refresh_token, CLIENT_SECRET, **options
    )


def client(fake_as: FakeAS, auth: tether.auth.Credential) -> tether.Client:
    return tether.Client(fake_as.url, auth=auth, clock=fake_as.clock)


class TestClientCredentials:
    async def test_token_fetched_once_and_reused(self, fake_as: FakeAS) -> None:
        """The first call fetches a token; later calls within its lifetime reuse it."""
        async with client(fake_as, cc(fake_as, scope="read write")) as c:
            for _ in range(5):
                assert (await c.get("/api")).json() == {"ok": True, "token_type": "Bearer"}
        assert fake_as.token_requests == 1
        assert fake_as.token_forms[0]["grant_type"] == "client_credentials"
        assert fake_as.token_forms[0]["scope"] == "read write"

    async def test_extra_params_kept_on_every_refetch(self, fake_as: FakeAS) -> None:
        """audience and resource are sent again when the token is re-fetched (Authlib #783)."""
        auth = cc(fake_as, scope="api", audience="https://api.example.com", resource="urn:r")
        async with client(fake_as, auth) as c:
            await c.get("/api")
            fake_as.clock.advance(3600)
            await c.get("/api")
        assert fake_as.token_requests == 2
        for form in fake_as.token_forms:
            assert (form["scope"], form["audience"], form["resource"]) == (
                "api",
                "https://api.example.com",
                "urn:r",
            )

    async def test_client_secret_basic_is_form_encoded(self, fake_as: FakeAS) -> None:
        """client_secret_basic form-encodes id and secret before base64 (RFC 6749 §2.3.1)."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
        header = fake_as.token_headers[0]["Authorization"]
        assert base64.b64decode(header[6:]).decode() == f"{CLIENT_ID}:{CLIENT_SECRET}"
        assert "client_secret" not in fake_as.token_forms[0]

    async def test_client_secret_post(self, fake_as: FakeAS) -> None:
        """client_secret_post puts id and secret in the body and sends no Authorization."""
        async with client(fake_as, cc(fake_as, client_auth="client_secret_post")) as c:
            await c.get("/api")
        assert fake_as.token_forms[0]["client_secret"] == CLIENT_SECRET
        assert "Authorization" not in fake_as.token_headers[0]

    async def test_private_key_jwt_unique_jti(self, fake_as: FakeAS) -> None:
        """private_key_jwt signs an RFC 7523 assertion with a fresh jti for every request."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fake_as.public_keys[CLIENT_ID] = key.public_key()
        auth = OAuth2.client_credentials(
            fake_as.token_url, CLIENT_ID, private_key=key, clock=fake_as.clock,
            store=MemoryTokenStore(),
        )  # fmt: skip
        async with client(fake_as, auth) as c:
            await c.get("/api")
            fake_as.clock.advance(3600)
            await c.get("/api")
        assertions = [form["client_assertion"] for form in fake_as.token_forms]
        claims = [jwt.decode(a, options={"verify_signature": False}) for a in assertions]
        assert len(assertions) == 2
        assert claims[0]["jti"] != claims[1]["jti"]
        assert claims[0]["aud"] == fake_as.token_url
        assert fake_as.token_forms[0]["client_assertion_type"].endswith("jwt-bearer")

    async def test_short_tokens_do_not_refresh_on_every_call(self, fake_as: FakeAS) -> None:
        """With 60 s tokens, calls over 40 s share one token (no refresh storm)."""
        fake_as.expires_in = 60
        async with client(fake_as, cc(fake_as)) as c:
            for _ in range(10):
                await c.get("/api")
                fake_as.clock.advance(4)
        assert fake_as.token_requests == 1

    async def test_refreshes_early_before_expiry(self, fake_as: FakeAS) -> None:
        """Within the last minute of a one-hour token, the next call fetches a new one."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.clock.advance(3600 - 59)
            await c.get("/api")
        assert fake_as.token_requests == 2

    def test_plain_http_token_url_refused(self) -> None:
        """A remote plain-http token URL is refused: it would carry the client secret."""
        with pytest.raises(tether.ConfigError, match="plain http"):
            OAuth2.client_credentials("http://auth.example.com/token", "id", "secret")

    def test_reserved_extra_refused(self) -> None:
        """Passing grant_type as an extra parameter is a ConfigError."""
        with pytest.raises(tether.ConfigError, match="grant_type"):
            OAuth2.client_credentials("https://a.example/t", "id", "s", grant_type="password")


class TestTokenEndpointTransport:
    async def test_borrowed_session_is_used_and_left_open(self, fake_as: FakeAS) -> None:
        """session= (Home Assistant's rule) carries token requests and is never closed."""
        async with aiohttp.ClientSession() as session:
            auth = cc(fake_as, session=session)
            await auth.current_token()
            fake_as.clock.advance(3600)
            await auth.current_token()
            assert not session.closed
        assert fake_as.token_requests == 2

    async def test_borrowed_transport_is_not_closed(self) -> None:
        """transport= answers token requests in memory and is not closed after them."""
        closed: list[bool] = []

        class Recording(MockTransport):
            async def aclose(self) -> None:
                closed.append(True)

        transport = Recording(
            lambda r: tether.Response(200, json={"access_token": "mem", "expires_in": 60})
        )
        auth = OAuth2.client_credentials(
            "https://auth.example.com/token", "id", "secret", transport=transport,
            store=MemoryTokenStore(),
        )  # fmt: skip
        assert (await auth.access_token()).get_secret_value() == "mem"
        assert closed == []
        assert transport.requests[0].url == "https://auth.example.com/token"


class TestRefreshToken:
    async def test_rotation_is_persisted_before_use(self, fake_as: FakeAS) -> None:
        """The rotated token set is in the store before the API sees the new access token."""
        seed = fake_as.issue_refresh_token()
        order: list[str] = []

        class Recording(MemoryTokenStore):
            async def save(self, key, token, *, expected_version):  # type: ignore[no-untyped-def]
                order.append(f"save:{fake_as.api_calls}")
                return await super().save(key, token, expected_version=expected_version)

        store = Recording()
        auth = refreshing(fake_as, seed, store=store)
        async with client(fake_as, auth) as c:
            await c.get("/api")
        assert order == ["save:0"]
        stored = await store.load(auth.store_key)
        assert stored is not None
        assert stored.refresh_token is not None
        assert stored.refresh_token.get_secret_value() != seed
        assert stored.refresh_token.get_secret_value() in fake_as.refresh
        assert stored.version == 1

    async def test_failed_save_means_the_token_is_not_used(self, fake_as: FakeAS) -> None:
        """If the new token set cannot be stored, the call fails instead of using it."""
        seed = fake_as.issue_refresh_token()

        class Broken(MemoryTokenStore):
            async def save(self, key, token, *, expected_version):  # type: ignore[no-untyped-def]
                raise OSError("disk full")

        async with client(fake_as, refreshing(fake_as, seed, store=Broken())) as c:
            with pytest.raises(OSError, match="disk full"):
                await c.get("/api")
        assert fake_as.api_calls == 0

    async def test_omitted_refresh_token_keeps_the_old_one(self, fake_as: FakeAS) -> None:
        """When the server does not rotate, the original refresh token is used again."""
        fake_as.omit_refresh_token = True
        seed = fake_as.issue_refresh_token()
        async with client(fake_as, refreshing(fake_as, seed)) as c:
            await c.get("/api")
            fake_as.clock.advance(3600)
            await c.get("/api")
        assert [f["refresh_token"] for f in fake_as.token_forms] == [seed, seed]

    async def test_stored_token_beats_the_seed(self, fake_as: FakeAS) -> None:
        """A credential rebuilt from a stale seed adopts the rotated token from the store."""
        seed = fake_as.issue_refresh_token()
        store = MemoryTokenStore()
        async with client(fake_as, refreshing(fake_as, seed, store=store)) as c:
            await c.get("/api")
        fake_as.clock.advance(3600)
        async with client(fake_as, refreshing(fake_as, seed, store=store)) as c:
            await c.get("/api")
        assert fake_as.invalid_grants == 0
        assert fake_as.token_forms[1]["refresh_token"] != seed

    async def test_invalid_grant_raises_reauth_and_calls_the_hook(self, fake_as: FakeAS) -> None:
        """invalid_grant raises ReauthRequired and calls on_reauth_required once."""
        told: list[tether.ReauthRequired] = []
        auth = refreshing(fake_as, "rt-unknown", on_reauth_required=told.append)
        async with client(fake_as, auth) as c:
            with pytest.raises(tether.ReauthRequired, match="sign in again"):
                await c.get("/api")
        assert len(told) == 1
        assert fake_as.api_calls == 0

    async def test_async_reauth_hook(self, fake_as: FakeAS) -> None:
        """An async on_reauth_required hook is awaited."""
        told = asyncio.Event()

        async def hook(error: tether.ReauthRequired) -> None:
            told.set()

        async with client(fake_as, refreshing(fake_as, "nope", on_reauth_required=hook)) as c:
            with pytest.raises(tether.ReauthRequired):
                await c.get("/api")
        assert told.is_set()


class TestEarlyReauth:
    async def test_invalid_grant_during_early_refresh_keeps_serving(self, fake_as: FakeAS) -> None:
        """invalid_grant on an early refresh tells the hook and keeps the valid token in use."""
        told: list[tether.ReauthRequired] = []
        seed = fake_as.issue_refresh_token()
        auth = refreshing(fake_as, seed, on_reauth_required=told.append)
        async with client(fake_as, auth) as c:
            await c.get("/api")
            fake_as.clock.advance(3600 - 50)
            fake_as.faults = [(400, {"error": "invalid_grant"}, {})]
            assert (await c.get("/api")).status == 200
            assert len(told) == 1
            await c.get("/api")
            assert fake_as.token_requests == 2
            fake_as.clock.advance(60)
            fake_as.faults = [(400, {"error": "invalid_grant"}, {})]
            with pytest.raises(tether.ReauthRequired):
                await c.get("/api")
        assert len(told) == 2


class TestErrors:
    async def test_invalid_client(self, fake_as: FakeAS) -> None:
        """invalid_client raises InvalidClient, without retrying."""
        auth = OAuth2.client_credentials(
            fake_as.token_url, CLIENT_ID, "wrong", clock=fake_as.clock, store=MemoryTokenStore()
        )
        async with client(fake_as, auth) as c:
            with pytest.raises(tether.InvalidClient):
                await c.get("/api")
        assert fake_as.token_requests == 1

    @pytest.mark.parametrize(
        "fault",
        [
            (503, {"error": "server_error"}, {}),
            (400, {"error": "temporarily_unavailable"}, {}),
            (429, {}, {"Retry-After": "7"}),
        ],
    )
    async def test_server_trouble_is_retried(
        self, fake_as: FakeAS, fault: tuple[int, object, dict[str, str]]
    ) -> None:
        """5xx, temporarily_unavailable and 429 are retried after a backoff."""
        fake_as.faults = [fault]  # type: ignore[list-item]
        async with client(fake_as, cc(fake_as)) as c:
            assert (await c.get("/api")).status == 200
        assert fake_as.token_requests == 2
        assert fake_as.clock.sleeps
        if fault[0] == 429:
            assert 7.0 in fake_as.clock.sleeps

    async def test_retries_are_bounded(self, fake_as: FakeAS) -> None:
        """After `attempts` tries the error surfaces as a TokenEndpointError."""
        fake_as.faults = [(503, {"error": "server_error"}, {})] * 5
        async with client(fake_as, cc(fake_as)) as c:
            with pytest.raises(tether.auth.TokenEndpointError, match="503") as info:
                await c.get("/api")
        assert info.value.error == "server_error"
        assert fake_as.token_requests == 3

    async def test_unreachable_token_endpoint(self, closed_port: int) -> None:
        """A token endpoint that refuses connections raises AuthError after the retries."""
        clock = tether.FakeClock()
        auth = OAuth2.client_credentials(
            f"http://127.0.0.1:{closed_port}/token", "id", "secret", clock=clock,
            store=MemoryTokenStore(),
        )  # fmt: skip
        async with tether.Client("http://127.0.0.1:1", auth=auth, clock=clock) as c:
            with pytest.raises(tether.AuthError, match="token request"):
                await c.get("/api")
        assert len(clock.sleeps) == 2

    async def test_failed_early_refresh_keeps_serving_and_backs_off(self, fake_as: FakeAS) -> None:
        """A failed early refresh keeps the valid token in use and waits before trying again."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.clock.advance(3600 - 50)
            fake_as.faults = [(503, {}, {})] * 3
            assert (await c.get("/api")).status == 200
            assert fake_as.token_requests == 4
            # Within the backoff nobody calls the token endpoint.
            await c.get("/api")
            assert fake_as.token_requests == 4
            fake_as.clock.advance(31)
            await c.get("/api")
            assert fake_as.token_requests == 5

    async def test_hard_expiry_waits_for_a_new_token(self, fake_as: FakeAS) -> None:
        """Once the token has expired, a failing token endpoint fails the call."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.clock.advance(3600)
            fake_as.faults = [(503, {}, {})] * 3
            with pytest.raises(tether.auth.TokenEndpointError):
                await c.get("/api")
        assert fake_as.api_calls == 1


class TestReactive401:
    async def test_one_refresh_and_one_retry(self, fake_as: FakeAS) -> None:
        """A 401 for the current token refreshes once and replays the request once."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.revoke_access()
            assert (await c.get("/api")).status == 200
        assert fake_as.token_requests == 2
        assert fake_as.api_calls == 3

    async def test_persistent_401_is_returned_after_one_retry(self, fake_as: FakeAS) -> None:
        """If the new token is rejected too, the 401 is raised; no loop."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.access = _Vanishing()
            with pytest.raises(tether.AuthenticationError):
                await c.get("/api")
        assert fake_as.token_requests == 2
        assert fake_as.api_calls == 3

    async def test_streamed_body_is_not_replayed(self, fake_as: FakeAS) -> None:
        """A 401 to a request with a one-shot streamed body is returned, not replayed."""

        async def body():  # type: ignore[no-untyped-def]
            yield b"chunk"

        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.revoke_access()
            with pytest.raises(tether.AuthenticationError):
                await c.request("GET", "/api", content=body())
        assert fake_as.token_requests == 1

    async def test_concurrent_401s_share_one_refresh(self, fake_as: FakeAS) -> None:
        """Twenty calls rejected with the same token cause one token request between them."""
        async with client(fake_as, cc(fake_as)) as c:
            await c.get("/api")
            fake_as.revoke_access()
            results = await asyncio.gather(*(c.get("/api") for _ in range(20)))
        assert {r.status for r in results} == {200}
        assert fake_as.token_requests == 2

    async def test_stale_rejection_does_not_refresh(self, fake_as: FakeAS) -> None:
        """A 401 for a token that was already replaced is replayed with the new one, no refresh."""
        auth = cc(fake_as)
        first = await auth.current_token()
        second = await auth.renew_token(first)
        assert fake_as.token_requests == 2
        again = await auth.renew_token(first)
        assert again.version == second.version
        assert fake_as.token_requests == 2

    async def test_insufficient_scope_is_not_a_reason_to_refresh(
        self, fake_as: FakeAS, server: object
    ) -> None:
        """RFC 6750 §3.1: a 401 naming insufficient_scope is returned without a refresh."""
        from aiohttp import web

        from tests.conftest import LoopbackServer

        assert isinstance(server, LoopbackServer)
        server.script(
            "GET",
            "/scoped",
            lambda: web.Response(
                status=401, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
            ),
        )
        async with tether.Client(server.url, auth=cc(fake_as), clock=fake_as.clock) as c:
            with pytest.raises(tether.AuthenticationError):
                await c.get("/scoped")
        assert fake_as.token_requests == 1
        assert server.count("/scoped") == 1


class _Vanishing(dict):  # type: ignore[type-arg]
    """An access-token table that forgets every token as soon as it is issued."""

    def __setitem__(self, key: object, value: object) -> None:
        return None


class TestSkew:
    async def test_assertions_use_the_servers_clock(self, fake_as: FakeAS) -> None:
        """After a response whose Date is 10 minutes ahead, assertions carry the server's time."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fake_as.public_keys[CLIENT_ID] = key.public_key()
        fake_as.date_offset = 600
        auth = OAuth2.client_credentials(
            fake_as.token_url, CLIENT_ID, private_key=key, clock=fake_as.clock,
            store=MemoryTokenStore(),
        )  # fmt: skip
        await auth.current_token()
        fake_as.clock.advance(3600)
        await auth.current_token()
        first, second = (
            jwt.decode(f["client_assertion"], options={"verify_signature": False})
            for f in fake_as.token_forms
        )
        assert first["iat"] == int(fake_as.clock.time() - 3600)
        assert second["iat"] == int(fake_as.clock.time() + 600)


class TestHeaderTemplate:
    async def test_zoho_scheme_carries_an_oauth2_token(self, fake_as: FakeAS) -> None:
        """HeaderTemplate with an OAuth2 source sends `Zoho-oauthtoken <access token>`."""
        seed = fake_as.issue_refresh_token()
        oauth = refreshing(fake_as, seed)
        auth = tether.auth.HeaderTemplate("Authorization", "Zoho-oauthtoken {token}", oauth)
        async with client(fake_as, auth) as c:
            await c.get("/api")
            fake_as.revoke_access()
            await c.get("/api")
        assert len(fake_as.api_auth) == 3
        assert all(value.startswith("Zoho-oauthtoken at-") for value in fake_as.api_auth)
        assert fake_as.token_requests == 2

    async def test_bearer_from_a_source(self, fake_as: FakeAS) -> None:
        """Bearer accepts a token source as well as a fixed token."""
        async with client(fake_as, tether.auth.Bearer(cc(fake_as))) as c:
            assert (await c.get("/api")).status == 200


class TestSync:
    async def test_sync_client(self, fake_as: FakeAS) -> None:
        """OAuth2 works unchanged on SyncClient (its own loop thread)."""
        auth = cc(fake_as)

        def run() -> list[int]:
            with tether.SyncClient(fake_as.url, auth=auth, clock=fake_as.clock) as c:
                return [c.get("/api").status for _ in range(3)]

        assert await asyncio.to_thread(run) == [200, 200, 200]
        assert fake_as.token_requests == 1


class TestRepr:
    def test_repr_hides_secrets(self) -> None:
        """The credential's repr names the client and grant but no secret."""
        auth = OAuth2.refresh_token(
            "https://auth.example.com/token", "my-client", "rt-canary", "cs-canary"
        )
        text = repr(auth)
        assert "my-client" in text
        assert "canary" not in text
        assert "rt-canary" in auth.redactor().secrets
        assert "cs-canary" in auth.redactor().secrets
        assert json.dumps(auth.store_key).count("canary") == 0

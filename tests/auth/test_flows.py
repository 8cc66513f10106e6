"""DPoP, interactive sign-in (authorization code + PKCE, device), LoginExchange, SignedJWT."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import tether
from tests.auth._fake_as import CLIENT_ID, CLIENT_SECRET, FakeAS
from tests.conftest import LoopbackServer
from tether.auth import DPoPKey, LoginExchange, MemoryTokenStore, OAuth2, SignedJWT, login
from tether.auth._dpop import jwk_thumbprint
from tether.testing import FakeClock


class TestDPoP:
    def dpop_client(self, fake_as: FakeAS, key: DPoPKey) -> OAuth2:
        return OAuth2.client_credentials(
            fake_as.token_url, CLIENT_ID, CLIENT_SECRET, dpop=key, clock=fake_as.clock,
            store=MemoryTokenStore(),
        )  # fmt: skip

    async def test_dpop_bound_token_with_proofs(self, fake_as: FakeAS) -> None:
        """With a DPoP key, the token request and each API call carry proofs (RFC 9449 §4)."""
        key = DPoPKey.generate()
        async with tether.Client(
            fake_as.url, auth=self.dpop_client(fake_as, key), clock=fake_as.clock
        ) as c:
            assert (await c.get("/api", params={"q": "1"})).json()["token_type"] == "DPoP"
        token_proof = fake_as.token_headers[0]["DPoP"]
        header = jwt.get_unverified_header(token_proof)
        assert header["typ"] == "dpop+jwt"
        assert header["jwk"] == key.jwk
        auth = fake_as.api_auth[0]
        assert auth.startswith("DPoP ")

    async def test_proof_binds_the_access_token(
        self, fake_as: FakeAS, server: LoopbackServer
    ) -> None:
        """The resource proof carries htm, htu without query, and ath of the token."""
        proofs: list[dict[str, str]] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            proofs.append(dict(request.headers))
            return web.json_response({})

        server.route("GET", "/thing", handler)
        key = DPoPKey.generate()
        async with tether.Client(
            server.url, auth=self.dpop_client(fake_as, key), clock=fake_as.clock
        ) as c:
            await c.get("/thing", params={"a": "b"})
        token = proofs[0]["Authorization"].removeprefix("DPoP ")
        claims = jwt.decode(proofs[0]["DPoP"], _public(key), algorithms=["ES256"])
        assert claims["htm"] == "GET"
        assert claims["htu"] == f"{server.url}/thing"
        digest = hashlib.sha256(token.encode()).digest()
        assert claims["ath"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def test_nonce_retries(self, fake_as: FakeAS) -> None:
        """use_dpop_nonce at the token endpoint and at the API each cost one extra try."""
        fake_as.require_dpop_nonce = "as-nonce"
        fake_as.resource_dpop_nonce = "rs-nonce"
        async with tether.Client(
            fake_as.url, auth=self.dpop_client(fake_as, DPoPKey.generate()), clock=fake_as.clock
        ) as c:
            assert (await c.get("/api")).status == 200
            assert (await c.get("/api")).status == 200
        assert fake_as.token_requests == 2  # the nonce challenge, then the token
        assert fake_as.api_calls == 3  # one nonce challenge, then both calls succeed

    def test_thumbprint_rfc7638(self) -> None:
        """The JWK thumbprint matches the worked example of RFC 7638 §3.1."""
        n = (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
            "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
            "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrd"
            "kt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKn"
            "qDKgw"
        )
        jwk = {"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
        assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _public(key: DPoPKey) -> object:
    return jwt.PyJWK(key.jwk).key


async def follow(url: str) -> None:
    """A headless browser: follows redirects from the authorize URL to the callback."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()


class TestAuthorizationCode:
    def credential(self, fake_as: FakeAS, **options: object) -> OAuth2:
        return OAuth2.authorization_code(
            f"{fake_as.url}/authorize", fake_as.token_url, "public-cli", scope="api offline",
            clock=fake_as.clock, store=MemoryTokenStore(), **options,
        )  # fmt: skip

    async def test_loopback_login_with_pkce(self, fake_as: FakeAS) -> None:
        """login() listens on 127.0.0.1, checks state, and exchanges the code with the verifier."""
        auth = self.credential(fake_as)
        opened: list[str] = []

        async def browser(url: str) -> None:
            opened.append(url)
            await follow(url)

        token = await login(auth, open_browser=browser)
        query = parse_qs(urlsplit(opened[0]).query)
        redirect = urlsplit(query["redirect_uri"][0])
        assert redirect.hostname == "127.0.0.1"
        assert redirect.port not in (None, 0, 5000)
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["state"][0]) >= 32
        assert fake_as.token_forms[0]["grant_type"] == "authorization_code"
        assert len(fake_as.token_forms[0]["code_verifier"]) >= 43
        assert token.refresh_token is not None
        async with tether.Client(fake_as.url, auth=auth, clock=fake_as.clock) as c:
            assert (await c.get("/api")).status == 200
            fake_as.clock.advance(3600)
            assert (await c.get("/api")).status == 200
        assert fake_as.token_forms[1]["grant_type"] == "refresh_token"

    async def test_wrong_state_is_refused(self, fake_as: FakeAS) -> None:
        """A redirect with another state gets 400 and does not complete the sign-in."""
        auth = self.credential(fake_as)
        statuses: list[int] = []

        async def browser(url: str) -> None:
            redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
            async with aiohttp.ClientSession() as session:
                async with session.get(redirect, params={"code": "x", "state": "forged"}) as r:
                    statuses.append(r.status)
                await follow(url)

        await login(auth, open_browser=browser)
        assert statuses == [400]
        assert fake_as.token_forms[0]["code"] != "x"

    async def test_refusal_and_timeout(self, fake_as: FakeAS) -> None:
        """error=access_denied in the redirect, or no redirect at all, raises AuthError."""

        async def deny(url: str) -> None:
            query = parse_qs(urlsplit(url).query)
            async with aiohttp.ClientSession() as session:
                params = {"error": "access_denied", "state": query["state"][0]}
                async with session.get(query["redirect_uri"][0], params=params):
                    pass

        with pytest.raises(tether.AuthError, match="access_denied"):
            await login(self.credential(fake_as), open_browser=deny)
        with pytest.raises(tether.AuthError, match="no sign-in"):
            await login(self.credential(fake_as), open_browser=lambda url: None, timeout=0.05)
        assert fake_as.token_requests == 0

    async def test_no_token_before_login_asks_for_reauth(self, fake_as: FakeAS) -> None:
        """Using the credential before anyone signed in raises ReauthRequired."""
        async with tether.Client(
            fake_as.url, auth=self.credential(fake_as), clock=fake_as.clock
        ) as c:
            with pytest.raises(tether.ReauthRequired, match="login"):
                await c.get("/api")


class TestDeviceCode:
    def credential(self, fake_as: FakeAS) -> OAuth2:
        return OAuth2.device_code(
            f"{fake_as.url}/device", fake_as.token_url, "public-cli", scope="api",
            clock=fake_as.clock, store=MemoryTokenStore(),
        )  # fmt: skip

    async def test_pending_then_approved(self, fake_as: FakeAS) -> None:
        """authorization_pending polls again after the interval; approval ends the flow."""
        fake_as.faults = [(400, {"error": "authorization_pending"}, {})] * 2
        shown: list[tether.auth.DeviceCode] = []

        def show(device: tether.auth.DeviceCode) -> None:
            shown.append(device)
            fake_as.approve_device(device.user_code)

        token = await login(self.credential(fake_as), show_device_code=show)
        assert token.access_token.get_secret_value() in fake_as.access
        assert fake_as.clock.sleeps == [5.0, 5.0, 5.0]
        assert "device_code" not in repr(shown[0]).lower().replace("devicecode(", "")

    async def test_slow_down_adds_five_seconds(self, fake_as: FakeAS) -> None:
        """slow_down raises the interval by 5 s for this and later polls (RFC 8628 §3.5)."""
        fake_as.faults = [(400, {"error": "slow_down"}, {})]
        fake_as.faults.append((400, {"error": "authorization_pending"}, {}))

        def show(device: tether.auth.DeviceCode) -> None:
            fake_as.approve_device(device.user_code)

        await login(self.credential(fake_as), show_device_code=show)
        assert fake_as.clock.sleeps == [5.0, 10.0, 10.0]

    async def test_denied(self, fake_as: FakeAS) -> None:
        """access_denied ends the flow with an AuthError."""
        fake_as.faults = [(400, {"error": "access_denied"}, {})]
        with pytest.raises(tether.AuthError, match="access_denied"):
            await login(self.credential(fake_as), show_device_code=lambda d: None)


class TestLoginExchange:
    @pytest.fixture
    def api(self, server: LoopbackServer) -> LoopbackServer:
        issued: list[str] = []

        async def login_route(request: web.Request) -> web.StreamResponse:
            expected = base64.b64encode(b"ada:pw-canary-9c1d").decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return web.Response(status=401)
            issued.append(f"wt-{len(issued) + 1}")
            return web.json_response({"token": issued[-1]})

        async def data(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bearer {issued[-1] if issued else ''}":
                return web.Response(status=401)
            return web.json_response({"ok": True})

        server.route("GET", "/login", login_route)
        server.route("GET", "/v3/data", data)
        server.issued = issued  # type: ignore[attr-defined]
        return server

    def credential(self, api: LoopbackServer, clock: FakeClock, **kw: object) -> LoginExchange:
        return LoginExchange(
            f"{api.url}/login", "ada", "pw-canary-9c1d", clock=clock, store=MemoryTokenStore(),
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    async def test_watttime_style_login(self, api: LoopbackServer) -> None:
        """Basic auth to /login gives a token used as Bearer until its TTL, then a new login."""
        clock = FakeClock()
        async with tether.Client(api.url, auth=self.credential(api, clock), clock=clock) as c:
            for _ in range(3):
                assert (await c.get("/v3/data")).status == 200
            clock.advance(1800)
            assert (await c.get("/v3/data")).status == 200
        assert api.count("/login") == 2

    async def test_single_flight_and_401(self, api: LoopbackServer) -> None:
        """Fifty concurrent first calls log in once; a 401 logs in again exactly once."""
        clock = FakeClock()
        auth = self.credential(api, clock)
        async with tether.Client(api.url, auth=auth, clock=clock) as c:
            results = await asyncio.gather(*(c.get("/v3/data") for _ in range(50)))
            assert {r.status for r in results} == {200}
            assert api.count("/login") == 1
            api.issued.append("wt-issued-elsewhere")  # type: ignore[attr-defined]
            assert (await c.get("/v3/data")).status == 200
        assert api.count("/login") == 2
        assert api.count("/v3/data") == 52

    async def test_wrong_password(self, api: LoopbackServer) -> None:
        """A refused login raises InvalidClient without retrying."""
        clock = FakeClock()
        auth = LoginExchange(
            f"{api.url}/login", "ada", "wrong", clock=clock, store=MemoryTokenStore()
        )
        async with tether.Client(api.url, auth=auth, clock=clock) as c:
            with pytest.raises(tether.InvalidClient):
                await c.get("/v3/data")
        assert api.count("/login") == 1


class TestSignedJWT:
    SECRET = "s" * 32

    def test_claims_and_resigning(self) -> None:
        """iat, exp and a fresh jti are added; the token is re-signed before it expires."""
        clock = FakeClock()
        auth = SignedJWT(
            self.SECRET, "HS256", {"iss": "me", "aud": "them"}, lifetime=600, clock=clock
        )
        first = auth.token()
        # FakeClock's wall time is 2026-01-01: check the signature and claims, not the expiry.
        claims = jwt.decode(
            first, self.SECRET, algorithms=["HS256"], audience="them",
            options={"verify_exp": False, "verify_iat": False},
        )  # fmt: skip
        assert claims["exp"] - claims["iat"] == 600
        assert claims["iss"] == "me"
        clock.advance(400)
        assert auth.token() == first
        clock.advance(150)  # inside the last 10-20 % of the lifetime
        second = auth.token()
        assert second != first
        again = jwt.decode(second, options={"verify_signature": False})
        assert again["jti"] != claims["jti"]
        assert again["iat"] == claims["iat"] + 550

    @pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
    async def test_asymmetric(self, algorithm: str, server: LoopbackServer) -> None:
        """RS256 and ES256 tokens verify with the public key and are sent as Bearer."""
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if algorithm == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        server.script("GET", "/app", lambda: web.json_response({}))
        auth = SignedJWT(key, algorithm, {"iss": "123"}, lifetime=540, key_id="k1")
        async with tether.Client(server.url, auth=auth) as c:
            await c.get("/app")
        token = server.seen[0].headers["Authorization"].removeprefix("Bearer ")
        assert jwt.get_unverified_header(token)["kid"] == "k1"
        assert jwt.decode(token, key.public_key(), algorithms=[algorithm])["iss"] == "123"

    def test_bad_configuration(self) -> None:
        """A short HS256 secret, a mismatched key or a reserved claim is a ConfigError."""
        with pytest.raises(tether.ConfigError, match="32 bytes"):
            SignedJWT("short", "HS256")
        with pytest.raises(tether.ConfigError, match="EC"):
            SignedJWT(rsa.generate_private_key(public_exponent=65537, key_size=2048), "ES256")
        with pytest.raises(tether.ConfigError, match="exp"):
            SignedJWT(self.SECRET, claims={"exp": 1})
        with pytest.raises(tether.ConfigError, match="unsupported"):
            SignedJWT(self.SECRET, "none")


def test_tether_imports_without_the_jwt_dependencies() -> None:
    """Without PyJWT, `import tether` works and only JWT features explain what is missing."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['jwt'] = None\n"
        "import tether\n"
        "tether.auth.Bearer('x')\n"
        "try:\n"
        "    tether.auth.SignedJWT('k' * 32)\n"
        "except tether.ConfigError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "needs PyJWT and cryptography" in result.stdout

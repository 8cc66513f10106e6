"""Secret canaries (access, refresh, client secret, private key) stay out of logs, reprs, errors."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import tether
from tests.auth._fake_as import CLIENT_ID, CLIENT_SECRET, FakeAS
from tests.conftest import LoopbackServer
from tether.auth import MemoryTokenStore, OAuth2


def pem_lines(key: rsa.RSAPrivateKey) -> list[str]:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return [line for line in pem.splitlines() if not line.startswith("-----")]


def assert_clean(text: str, canaries: list[str]) -> None:
    for canary in canaries:
        assert canary not in text, canary


async def test_rotating_tokens_never_leak(
    fake_as: FakeAS, server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every access and refresh token issued over a rotation is hidden in DEBUG logs and errors."""
    seed = fake_as.issue_refresh_token()

    async def echo(request: web.Request) -> web.StreamResponse:
        # A careless API that echoes the credential in its error body.
        return web.Response(status=500, text=f"bad auth {request.headers['Authorization']}")

    server.route("GET", "/echo", echo)
    auth = OAuth2.refresh_token(
        fake_as.token_url, CLIENT_ID, seed, CLIENT_SECRET, clock=fake_as.clock,
        store=MemoryTokenStore(),
    )  # fmt: skip
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with tether.Client(
            server.url, auth=auth, clock=fake_as.clock, retry=tether.Retry(attempts=2)
        ) as c:
            for _ in range(3):
                with pytest.raises(tether.ServerError) as info:
                    await c.get("/echo")
                errors += [str(info.value), repr(info.value), info.value.body]
                fake_as.clock.advance(3600)  # the next call rotates both tokens
            errors.append(repr(c))
    canaries = [seed, CLIENT_SECRET, *fake_as.access, *fake_as.refresh, *fake_as.used_refresh]
    assert len(fake_as.access) == 3
    assert "[REDACTED]" in errors[0]
    assert_clean(caplog.text, canaries)
    assert_clean("\n".join(errors), canaries)
    assert_clean(repr(auth), canaries)


async def test_token_endpoint_errors_are_clean(
    fake_as: FakeAS, caplog: pytest.LogCaptureFixture
) -> None:
    """invalid_grant and invalid_client messages and logs carry no secret."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with caplog.at_level(logging.DEBUG):
        rejected = OAuth2.refresh_token(
            fake_as.token_url, CLIENT_ID, "canary-refresh-41ab", CLIENT_SECRET,
            clock=fake_as.clock, store=MemoryTokenStore(),
        )  # fmt: skip
        with pytest.raises(tether.ReauthRequired) as reauth:
            await rejected.current_token()
        pkjwt = OAuth2.client_credentials(
            fake_as.token_url, CLIENT_ID, private_key=key, clock=fake_as.clock,
            store=MemoryTokenStore(),
        )  # fmt: skip
        with pytest.raises(tether.InvalidClient) as invalid:
            await pkjwt.current_token()
    canaries = ["canary-refresh-41ab", CLIENT_SECRET, *pem_lines(key)]
    for error in (reauth.value, invalid.value):
        assert_clean(str(error) + repr(error), canaries)
    assert_clean(caplog.text, canaries)
    assert_clean(repr(rejected) + repr(pkjwt), canaries)
    assert set(pem_lines(key)) <= pkjwt.redactor().secrets


def test_static_and_login_reprs_are_clean() -> None:
    """Reprs of every credential show names, never values."""
    canary = "canary-static-77aa"
    credentials = [
        tether.auth.ApiKey("appid", canary, location="query"),
        tether.auth.Bearer(canary),
        tether.auth.Basic("user", canary),
        tether.auth.HeaderTemplate("Authorization", "Zoho-oauthtoken {token}", canary),
        tether.auth.LoginExchange("https://api.example.com/login", "ada", canary),
        tether.auth.SignedJWT(canary * 2, "HS256", {"iss": "x"}),
    ]
    for credential in credentials:
        assert canary not in repr(credential)
        assert canary in credential.redactor().secrets or any(
            canary in s for s in credential.redactor().secrets
        )

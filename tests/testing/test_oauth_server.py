"""The mock OAuth2 server: grants, expiry on the shared clock, rotation, reuse and revocation."""

from __future__ import annotations

import base64
import hashlib

import pytest

import tether
from tests.testing.conftest import connect
from tether.testing import FakeClock, MockAPI, OAuth2Server, Reply


def make(clock: FakeClock | None = None, **options: object) -> tuple[MockAPI, OAuth2Server]:
    api = MockAPI(clock=clock or FakeClock(), seed=3)
    server = api.oauth2(clients={"app": "app-secret", "public": None}, **options)  # type: ignore[arg-type]
    server.protect("/api")
    api.stub("GET", "/api/me", Reply(json={"me": True}))
    return api, server


APP = {"client_id": "app", "client_secret": "app-secret"}


async def token(client: tether.Client, **form: str) -> tether.Response:
    return await client.post("/oauth/token", data=form, raise_for_status=False)


async def test_client_credentials_token_opens_protected_paths(mode: str) -> None:
    """A client_credentials token works as a bearer token; no token gets a 401 challenge."""
    api, _ = make()
    async with connect(api, mode, raise_for_status=False) as client:
        issued = await token(client, grant_type="client_credentials", **APP)
        body = issued.json()
        ok = await client.get(
            "/api/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        missing = await client.get("/api/me")
    assert issued.status == 200
    assert issued.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "refresh_token" not in body
    assert ok.json() == {"me": True}
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")


async def test_basic_client_authentication_is_accepted() -> None:
    """Client credentials in HTTP Basic (RFC 6749 section 2.3.1) work like form fields."""
    api, _ = make()
    basic = base64.b64encode(b"app:app-secret").decode()
    async with api.client(raise_for_status=False) as client:
        issued = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
    assert issued.status == 200


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", **APP, "client_secret": "x"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "nobody"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({"grant_type": "magic", "client_id": "public"}, 400, "unsupported_grant_type"),
        (
            {"grant_type": "refresh_token", "client_id": "public", "refresh_token": "rt_x"},
            400,
            "invalid_grant",
        ),
    ],
    ids=["wrong-secret", "unknown-client", "no-client", "unknown-grant", "unknown-refresh"],
)
async def test_token_errors_follow_rfc6749(form: dict[str, str], status: int, error: str) -> None:
    """Failures answer with the RFC 6749 section 5.2 status and error code."""
    api, _ = make()
    async with api.client() as client:
        response = await token(client, **form)
    assert response.status == status
    assert response.json()["error"] == error


async def test_access_token_expires_on_the_shared_clock() -> None:
    """After access_ttl seconds on the fake clock the token is refused as expired."""
    clock = FakeClock()
    api, _ = make(clock, access_ttl=600)
    async with api.client(raise_for_status=False) as client:
        access = (await token(client, grant_type="client_credentials", **APP)).json()[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {access}"}
        clock.advance(599)
        before = await client.get("/api/me", headers=headers)
        clock.advance(1)
        after = await client.get("/api/me", headers=headers)
    assert before.status == 200
    assert after.status == 401
    assert 'error="invalid_token"' in after.headers["WWW-Authenticate"]
    assert "expired" in after.json()["error_description"]


async def test_refresh_rotates_and_reuse_revokes_the_family() -> None:
    """Each refresh returns a new refresh token; replaying an old one fails and kills the
    tokens issued from it (RFC 9700 section 4.14)."""
    api, oauth = make()
    first = oauth.issue_refresh_token("public")
    async with api.client(raise_for_status=False) as client:
        rotated = (
            await token(client, grant_type="refresh_token", client_id="public", refresh_token=first)
        ).json()
        second = rotated["refresh_token"]
        assert second != first
        access = rotated["access_token"]
        reuse = await token(
            client, grant_type="refresh_token", client_id="public", refresh_token=first
        )
        after_reuse = await token(
            client, grant_type="refresh_token", client_id="public", refresh_token=second
        )
        protected = await client.get("/api/me", headers={"Authorization": f"Bearer {access}"})
    assert reuse.json()["error"] == "invalid_grant"
    assert after_reuse.json()["error"] == "invalid_grant"
    assert protected.status == 401


async def test_without_rotation_the_refresh_token_stays() -> None:
    """With rotation off the same refresh token is returned and keeps working."""
    api = MockAPI(clock=FakeClock())
    oauth = api.oauth2(clients={"public": None}, rotate_refresh_tokens=False)
    refresh = oauth.issue_refresh_token("public")
    async with api.client() as client:
        for _ in range(3):
            body = (
                await token(
                    client, grant_type="refresh_token", client_id="public", refresh_token=refresh
                )
            ).json()
            assert body["refresh_token"] == refresh


async def test_revocation_endpoint_revokes_a_refresh_tokens_grant() -> None:
    """RFC 7009: revoking a refresh token also invalidates access tokens of the same grant."""
    api, oauth = make()
    async with api.client(raise_for_status=False) as client:
        oauth_client = {"client_id": "public"}
        code = oauth.authorize("public")
        body = (
            await token(client, grant_type="authorization_code", code=code, **oauth_client)
        ).json()
        revoked = await client.post(
            "/oauth/revoke", data={"token": body["refresh_token"], **oauth_client}
        )
        unknown = await client.post("/oauth/revoke", data={"token": "never-issued", **oauth_client})
        protected = await client.get(
            "/api/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    assert revoked.status == 200
    assert unknown.status == 200
    assert protected.status == 401
    assert "revoked" in protected.json()["error_description"]


async def test_authorization_code_checks_pkce() -> None:
    """A code issued with an S256 challenge needs the matching verifier, and works once."""
    api = MockAPI(clock=FakeClock())
    oauth = api.oauth2(clients={"public": None})
    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    good = oauth.authorize("public", code_challenge=challenge, redirect_uri="http://localhost/cb")
    bad = oauth.authorize("public", code_challenge=challenge)
    async with api.client() as client:
        form = {"grant_type": "authorization_code", "client_id": "public"}
        wrong = await token(client, code=bad, code_verifier="nope", **form)
        ok = await token(
            client, code=good, code_verifier=verifier, redirect_uri="http://localhost/cb", **form
        )
        replay = await token(
            client, code=good, code_verifier=verifier, redirect_uri="http://localhost/cb", **form
        )
    assert wrong.json()["error"] == "invalid_grant"
    assert ok.status == 200
    assert replay.json()["error"] == "invalid_grant"


async def test_password_grant_and_reported_ttl_skew() -> None:
    """The password grant checks users; reported_ttl lets expires_in lie about the real TTL."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    oauth = api.oauth2(clients={"app": "s"}, access_ttl=60, reported_ttl=3600)
    oauth.add_user("ada", "lovelace")
    oauth.protect("/api")
    api.stub("GET", "/api/x")
    async with api.client(raise_for_status=False) as client:
        form = {
            "grant_type": "password",
            "client_id": "app",
            "client_secret": "s",
            "username": "ada",
        }
        denied = await token(client, password="babbage", **form)
        body = (await token(client, password="lovelace", **form)).json()
        clock.advance(61)
        stale = await client.get(
            "/api/x", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    assert denied.json()["error"] == "invalid_grant"
    assert body["expires_in"] == 3600
    assert stale.status == 401


async def test_tokens_are_seeded_and_remembered_as_secrets() -> None:
    """The same seed issues the same tokens; every issued value is listed by secrets()."""
    issued: list[str] = []
    for _ in range(2):
        api, _ = make()
        async with api.client() as client:
            body = (await token(client, grant_type="client_credentials", **APP)).json()
        issued.append(body["access_token"])
        assert body["access_token"] in api.secrets()
        assert "app-secret" in api.secrets()
    assert issued[0] == issued[1]

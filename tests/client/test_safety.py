"""Secrets never leave: not over plain http, not in logs, reprs or exception text."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

import tether
from tests.conftest import FaultServer, LoopbackServer
from tether.testing import FakeClock, no_wait

CANARY = "canary-5ecret-8f3a2b"


class TestPlainHttpGuard:
    @pytest.mark.parametrize(
        "auth",
        [
            tether.auth.Bearer("t0ken"),
            tether.auth.ApiKey("appid", "k3y", location="query"),
            tether.auth.Basic("user", "pw"),
        ],
    )
    def test_credentials_refused_over_plain_http(self, auth: tether.auth.Credential) -> None:
        """A client with credentials and an http:// base URL to a remote host fails to build."""
        with pytest.raises(tether.ConfigError, match="allow_insecure_http"):
            tether.Client("http://api.example.com/v1", auth=auth)

    def test_opt_in_by_name(self) -> None:
        """allow_insecure_http=True lets the user take the risk knowingly."""
        tether.Client(
            "http://api.example.com", auth=tether.auth.Bearer("x"), allow_insecure_http=True
        )

    @pytest.mark.parametrize(
        "host", ["127.0.0.1", "localhost", "[::1]", "127.8.9.10", "dev.localhost"]
    )
    def test_loopback_is_allowed(self, host: str) -> None:
        """Loopback never leaves the machine, so plain http is fine there."""
        tether.Client(f"http://{host}:8080", auth=tether.auth.Bearer("x"))

    async def test_absolute_url_is_checked_before_any_io(self) -> None:
        """An absolute http:// URL to a remote host is refused per request, before connecting."""
        async with tether.Client("https://api.example.com", auth=tether.auth.Bearer("x")) as c:
            with pytest.raises(tether.ConfigError):
                await c.get("http://files.example.com/download")

    async def test_no_credentials_no_guard(self, server: LoopbackServer) -> None:
        """Without credentials, plain http is an ordinary choice."""
        tether.Client("http://api.example.com")


class TestTls:
    def test_verify_off_is_logged_once(self, caplog: pytest.LogCaptureFixture) -> None:
        """Turning TLS verification off writes one warning naming the client."""
        with caplog.at_level(logging.WARNING, logger="tether"):
            tether.Client("https://device.local", verify=False)
        records = [r for r in caplog.records if r.name == "tether"]
        assert len(records) == 1
        assert "off" in records[0].getMessage()

    def test_bad_ca_bundle_is_a_config_error(self) -> None:
        """A CA bundle path that cannot be read fails at construction with a reason."""
        with pytest.raises(tether.ConfigError, match="CA bundle"):
            tether.Client("https://device.local", verify="/nonexistent/ca.pem")


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text, text


class TestCanary:
    async def test_query_key_never_logged_or_raised(
        self, server: LoopbackServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An API key in the query string is hidden in DEBUG logs, errors and reprs."""
        server.script(
            "GET",
            "/weather",
            lambda: web.json_response({"error": f"bad key {CANARY}"}, status=401),
        )
        auth = tether.auth.ApiKey("appid", CANARY, location="query")
        with caplog.at_level(logging.DEBUG):
            async with tether.Client(server.url, auth=auth, clock=FakeClock()) as c:
                with pytest.raises(tether.AuthenticationError) as info:
                    await c.get("/weather", params={"q": "Oslo"})
                client_repr = repr(c)
        assert server.seen[0].query["appid"] == CANARY  # it was sent...
        error = info.value
        assert_clean(  # ...and nowhere else
            str(error),
            repr(error),
            error.body,
            repr(error.request),
            repr(error.response),
            repr(auth),
            client_repr,
            caplog.text,
        )
        assert "appid=[REDACTED]" in str(error)
        assert "Oslo" in str(error)

    async def test_bearer_and_extra_secrets_hidden(
        self, server: LoopbackServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A token echoed in a body, and a value declared in secrets=, are hidden too."""
        other = "second-" + CANARY
        server.script(
            "GET",
            "/me",
            lambda: web.Response(text=f"token {CANARY} and {other} rejected", status=403),
        )
        with caplog.at_level(logging.DEBUG):
            async with tether.Client(
                server.url, auth=tether.auth.Bearer(CANARY), secrets=[other], clock=FakeClock()
            ) as c:
                with pytest.raises(tether.PermissionDeniedError) as info:
                    await c.get("/me")
        assert server.seen[0].headers["Authorization"] == f"Bearer {CANARY}"
        assert_clean(str(info.value), info.value.body, caplog.text)
        assert "second-" not in str(info.value)

    async def test_secret_in_path_is_hidden(
        self, server: LoopbackServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A token that lives in the URL path (bot-style APIs) is hidden in logs and errors."""
        server.script("GET", f"/bot{CANARY}/getMe", lambda: web.json_response({}, status=404))
        with caplog.at_level(logging.DEBUG):
            async with tether.Client(server.url, secrets=[CANARY], clock=FakeClock()) as c:
                with pytest.raises(tether.NotFoundError) as info:
                    await c.get(f"/bot{CANARY}/getMe")
        assert_clean(str(info.value), caplog.text, repr(info.value.request))

    async def test_transport_errors_are_scrubbed(
        self, fault_server: FaultServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Errors from lower layers, and their causes, carry no secret."""
        fault_server.mode = "drop"
        auth = tether.auth.ApiKey("api_key", CANARY, location="query")
        with caplog.at_level(logging.DEBUG), no_wait():
            async with tether.Client(fault_server.url, auth=auth) as c:
                with pytest.raises(tether.NetworkError) as info:
                    await c.get("/x")
        cause = info.value.__cause__
        assert cause is not None
        assert_clean(str(info.value), str(cause), repr(cause), caplog.text)

    def test_credential_reprs(self) -> None:
        """No credential shows its secret in its repr."""
        for credential in (
            tether.auth.ApiKey("k", CANARY),
            tether.auth.Bearer(CANARY),
            tether.auth.Basic("me", CANARY),
            tether.auth.HeaderTemplate("Authorization", "Zoho-oauthtoken {token}", CANARY),
        ):
            assert_clean(repr(credential), str(credential))

    async def test_header_template_sends_custom_scheme(self, server: LoopbackServer) -> None:
        """HeaderTemplate formats the token into the header the provider expects."""
        server.script("GET", "/x", lambda: web.json_response({}))
        auth = tether.auth.HeaderTemplate("Authorization", "Zoho-oauthtoken {token}", "abc")
        async with tether.Client(server.url, auth=auth) as c:
            await c.get("/x")
        assert server.seen[0].headers["Authorization"] == "Zoho-oauthtoken abc"

    def test_header_template_needs_the_token_field(self) -> None:
        """A template without {token} (or with other fields) is a ConfigError."""
        with pytest.raises(tether.ConfigError):
            tether.auth.HeaderTemplate("Authorization", "Bearer {tok}", "abc")

    def test_empty_secret_is_refused(self) -> None:
        """An empty key is a configuration mistake, caught at construction."""
        with pytest.raises(tether.ConfigError):
            tether.auth.Bearer("")

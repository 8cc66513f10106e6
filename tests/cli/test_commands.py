"""`tether check`, `spec`, `graphql`, `auth`, and the root command."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tether.cli import _app
from tether.cli._support import complete_integration
from tether.testing import MockAPI, MockRequest, Reply

from .conftest import RunCLI, write

CANARY = "canary-44d0-cli-secret"


@pytest.fixture
async def api() -> AsyncIterator[tuple[MockAPI, str]]:
    mock = MockAPI(seed=5)
    async with mock.serve() as server:
        yield mock, server.url


def github(tmp_path: Path, url: str) -> None:
    write(tmp_path / "tether.toml", f'[integrations.gh]\npreset = "github"\nbase_url = "{url}"\n')


# -- root ---------------------------------------------------------------------------------------


async def test_help_lists_every_command(run_cli: RunCLI) -> None:
    """`tether --help` names the commands of the issue and the mounted sub-apps."""
    result = await run_cli(["--help"])
    assert result.exit_code == 0
    for command in ("call", "check", "auth", "discover", "graphql", "spec", "mock", "webhooks"):
        assert command in result.stdout


async def test_version(run_cli: RunCLI) -> None:
    """`tether --version` prints the version and exits 0."""
    result = await run_cli(["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("tether ")


def test_a_missing_sub_app_is_left_out_quietly() -> None:
    """Mounting a module that does not exist neither raises nor adds a command."""
    before = len(_app.app.registered_groups)
    _app._mount("tether.cli._does_not_exist", "nothing")
    assert len(_app.app.registered_groups) == before


def test_completion_offers_spec_integrations_and_presets(tmp_path: Path) -> None:
    """INTEGRATION completes from the spec in the current folder and the presets."""
    write(tmp_path / "tether.toml", '[integrations.gadget]\nbase_url = "https://x"\n')

    class Ctx:
        params: Mapping[str, object] = {}

        def find_root(self) -> Ctx:
            return self

    assert complete_integration(Ctx(), "g") == ["gadget", "github", "google_calendar"]  # type: ignore[arg-type]


# -- check ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code", "word"),
    [
        (Reply(json={"login": "octocat"}), 0, "ok"),
        (Reply(401, json={"message": "Bad credentials"}), 4, "invalid_auth"),
        (Reply(403, json={"message": "Resource not accessible"}), 4, "invalid_auth"),
        (Reply(503, json={"message": "unavailable"}), 3, "cannot_connect"),
        (
            Reply(429, json={"message": "slow down"}, headers={"Retry-After": "60"}),
            3,
            "cannot_connect",
        ),
        (Reply(404, json={"message": "Not Found"}), 1, "unknown"),
    ],
)
async def test_check_exit_codes_follow_config_flow_semantics(
    api: tuple[MockAPI, str],
    tmp_path: Path,
    run_cli: RunCLI,
    *,
    reply: Reply,
    code: int,
    word: str,
) -> None:
    """ok exits 0, invalid_auth 4, cannot_connect 3 and anything else 1, each named."""
    mock, url = api
    mock.stub("GET", "/user", reply)
    github(tmp_path, url)
    result = await run_cli(["check", "gh"], {"GITHUB_TOKEN": CANARY})
    assert result.exit_code == code, result.output
    assert word in result.output
    assert CANARY not in result.output


async def test_check_of_an_unreachable_api(
    tmp_path: Path, closed_port: int, run_cli: RunCLI
) -> None:
    """A refused connection is cannot_connect (exit 3) with a hint."""
    github(tmp_path, f"http://127.0.0.1:{closed_port}")
    result = await run_cli(["check", "gh"], {"GITHUB_TOKEN": CANARY})
    assert result.exit_code == 3
    assert "hint:" in result.stderr


# -- spec -----------------------------------------------------------------------------------------


async def test_spec_check_shows_origins_and_redacts_secrets(
    tmp_path: Path, run_cli: RunCLI
) -> None:
    """Each value is printed with where it came from; the token's value never appears."""
    (tmp_path / "key").write_text(CANARY + "-file\n", encoding="utf-8")
    write(
        tmp_path / "tether.toml",
        '[integrations.gh]\npreset = "github"\ntimeout = 20\n'
        '[integrations.own]\nbase_url = "https://own.example"\n'
        'auth = { type = "api_key", name = "k", value = { file = "key" } }\n',
    )
    result = await run_cli(
        ["spec", "check"], {"GITHUB_TOKEN": CANARY, "GITHUB_WEBHOOK_SECRET": "w" + CANARY}
    )
    assert result.exit_code == 0, result.output
    assert "timeout = 20.0  # tether.toml:3" in result.stdout
    assert (
        "auth.token = [REDACTED]  # env GITHUB_TOKEN (named at presets/github.toml:"
        in result.stdout
    )
    assert "auth.value = [REDACTED]  # file key (named at tether.toml:6)" in result.stdout
    assert 'base_url = "https://api.github.com"  # preset github' in result.stdout
    assert CANARY not in result.output


async def test_spec_check_reports_missing_variables_with_exit_5(
    tmp_path: Path, run_cli: RunCLI
) -> None:
    """A missing variable is an error naming the line; a missing webhook secret a warning."""
    write(tmp_path / "tether.toml", '[integrations.gh]\npreset = "github"\n')
    result = await run_cli(["spec", "check"])
    assert result.exit_code == 5
    assert "presets/github.toml:" in result.stdout
    assert "GITHUB_TOKEN is not set" in result.stdout
    assert "warning:" in result.stdout
    assert "GITHUB_WEBHOOK_SECRET" in result.stdout


async def test_spec_check_of_an_invalid_file(tmp_path: Path, run_cli: RunCLI) -> None:
    """Validation errors name the file, line and key and exit 5."""
    write(tmp_path / "tether.toml", '[integrations.x]\nbase_url = "https://x"\nretries = 3\n')
    result = await run_cli(["spec", "check"])
    assert result.exit_code == 5
    assert "tether.toml:3: integrations.x.retries: unknown key" in result.stderr


async def test_spec_schema_presets_and_preset(run_cli: RunCLI) -> None:
    """`spec schema` prints JSON, `spec presets` lists them, `spec preset` shows the TOML."""
    schema = await run_cli(["spec", "schema"])
    assert json.loads(schema.stdout)["title"] == "tether.toml"
    listing = await run_cli(["spec", "presets"])
    assert "watttime" in listing.stdout
    shown = await run_cli(["spec", "preset", "zoho"])
    assert "Zoho-oauthtoken {token}" in shown.stdout
    missing = await run_cli(["spec", "preset", "nope"])
    assert missing.exit_code == 2


# -- graphql --------------------------------------------------------------------------------------


async def test_graphql_prints_data_and_passes_variables(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """--var k=v is a string and k:=JSON a typed value; `data` is printed."""
    mock, url = api
    mock.stub(
        "POST",
        "/graphql",
        Reply(json={"data": {"repository": {"stars": 42}}}),
        json_partial={"variables": {"owner": "octo", "first": 5}},
    )
    github(tmp_path, url)
    result = await run_cli(
        [
            "graphql",
            "gh",
            "query($owner: String!) { x }",
            "--var",
            "owner=octo",
            "--var",
            "first:=5",
        ],
        {"GITHUB_TOKEN": CANARY},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"repository": {"stars": 42}}


async def test_graphql_errors_exit_1_listing_them(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """An `errors` array exits 1 and lists each message, redacted."""
    mock, url = api
    mock.stub(
        "POST",
        "/graphql",
        Reply(json={"errors": [{"message": "Field 'x' doesn't exist", "path": ["query", "x"]},
                               {"message": f"token {CANARY} lacks scope"}]}),
    )  # fmt: skip
    github(tmp_path, url)
    query = tmp_path / "q.graphql"
    query.write_text("{ x }", encoding="utf-8")
    result = await run_cli(["graphql", "gh", f"@{query}"], {"GITHUB_TOKEN": CANARY})
    assert result.exit_code == 1
    assert "Field 'x' doesn't exist" in result.stderr
    assert "(path query.x)" in result.stderr
    assert CANARY not in result.output


# -- auth -----------------------------------------------------------------------------------------


def _oauth_spec(tmp_path: Path, url: str, extra: str = "") -> None:
    write(
        tmp_path / "tether.toml",
        f"""
[integrations.cal]
base_url = "{url}/api"
[integrations.cal.auth]
type = "oauth2"
grant = "authorization_code"
authorize_url = "{url}/oauth/authorize"
token_url = "{url}/oauth/token"
client_id = "cli-app"
token_store = "tokens.json"
{extra}
[integrations.cal.endpoints.me]
path = "/me"
""",
    )


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A stand-in for the person at the browser: it follows the authorize redirect."""
    opened: list[str] = []
    threads: list[threading.Thread] = []

    def open_url(url: str) -> bool:
        opened.append(url)

        def visit() -> None:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
                answer.read()

        thread = threading.Thread(target=visit, daemon=True)
        thread.start()
        threads.append(thread)
        return True

    monkeypatch.setattr("webbrowser.open", open_url)
    yield opened
    for thread in threads:
        thread.join(timeout=10)


async def test_auth_login_with_pkce_then_calls_with_the_stored_token(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI, browser: list[str]
) -> None:
    """`auth login` runs the code flow with PKCE through a loopback redirect; the token is
    stored, `auth status` reports it, and `call` uses it."""
    mock, url = api
    oauth = mock.oauth2(clients={"cli-app": None})
    oauth.protect("/api")

    def authorize(request: MockRequest, _: Mapping[str, str]) -> Reply:
        query = request.query
        code = oauth.authorize(
            "cli-app",
            redirect_uri=query["redirect_uri"],
            code_challenge=query["code_challenge"],
        )
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return Reply(302, headers={"Location": target})

    mock.stub("GET", "/oauth/authorize", handler=authorize)
    mock.stub("GET", "/api/me", Reply(json={"name": "Ada"}))
    _oauth_spec(tmp_path, url)
    login = await run_cli(["auth", "login", "cal"])
    assert login.exit_code == 0, login.output
    assert "signed in" in login.stdout
    sent = parse_qs(urlsplit(browser[0]).query)
    assert sent["code_challenge_method"] == ["S256"]
    assert sent["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert (tmp_path / "tokens.json").exists()
    status = await run_cli(["auth", "status"])
    assert status.exit_code == 0, status.output
    assert "signed in" in status.stdout
    assert "refresh token kept" in status.stdout
    call = await run_cli(["call", "cal", "me"])
    assert call.exit_code == 0, call.output
    assert json.loads(call.stdout) == {"name": "Ada"}
    # The tokens are on disk, never on the terminal.
    stored = (tmp_path / "tokens.json").read_text(encoding="utf-8")
    tokens = oauth.active_access_tokens
    assert tokens
    assert all(token in stored for token in tokens)
    assert all(token not in login.output + status.output + call.output for token in tokens)


async def test_auth_login_device_flow(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """--device shows the code and polls until the server approves (RFC 8628)."""
    mock, url = api
    mock.stub(
        "POST",
        "/oauth/device",
        Reply(json={"device_code": "dev-123", "user_code": "WDJB-MJHT",
                    "verification_uri": "https://example.com/device", "expires_in": 600,
                    "interval": 1}),
    )  # fmt: skip
    mock.stub(
        "POST",
        "/oauth/token",
        Reply(400, json={"error": "authorization_pending"}),
        Reply(json={"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
                    "refresh_token": "rt-1"}),
    )  # fmt: skip
    _oauth_spec(tmp_path, url, extra=f'device_authorization_url = "{url}/oauth/device"\n')
    result = await run_cli(["auth", "login", "cal", "--device"])
    assert result.exit_code == 0, result.output
    assert "WDJB-MJHT" in result.stderr
    assert "rt-1" not in result.output
    assert "at-1" not in result.output


async def test_auth_login_refuses_non_oauth_integrations(tmp_path: Path, run_cli: RunCLI) -> None:
    """An API-key integration has nothing to sign in to: exit 2 with a hint."""
    write(tmp_path / "tether.toml", '[integrations.w]\npreset = "openweathermap"\n')
    result = await run_cli(["auth", "login", "w"], {"OPENWEATHERMAP_API_KEY": "k"})
    assert result.exit_code == 2
    assert "does not use OAuth2" in result.stderr


async def test_auth_login_without_a_device_endpoint(tmp_path: Path, run_cli: RunCLI) -> None:
    """--device on a provider without device authorization says so (Google Calendar)."""
    result = await run_cli(
        ["auth", "login", "google_calendar", "--device"],
        {"GOOGLE_CLIENT_ID": "id", "GOOGLE_CLIENT_SECRET": "s"},
    )
    assert result.exit_code == 5
    assert "device_authorization_url" in result.stderr


async def test_auth_status_shows_sources_never_values(tmp_path: Path, run_cli: RunCLI) -> None:
    """Status names the variables secrets come from and exits 5 when one is missing."""
    write(
        tmp_path / "tether.toml",
        '[integrations.gh]\npreset = "github"\n[integrations.w]\npreset = "openweathermap"\n',
    )
    result = await run_cli(["auth", "status"], {"GITHUB_TOKEN": CANARY})
    assert result.exit_code == 5
    assert "GITHUB_TOKEN" in result.stdout
    assert "OPENWEATHERMAP_API_KEY" in result.stdout
    assert CANARY not in result.output

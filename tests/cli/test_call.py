"""`tether call`: output formats, exports, the summary line, exit codes and secrecy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether.testing import CursorPages, MockAPI, Reply

from .conftest import RunCLI, write

CANARY = "canary-91be-cli-token"


@pytest.fixture
async def api() -> AsyncIterator[tuple[MockAPI, str]]:
    mock = MockAPI(seed=3)
    async with mock.serve() as server:
        yield mock, server.url


def spec(tmp_path: Path, url: str, extra: str = "") -> Path:
    return write(
        tmp_path / "tether.toml",
        f"""
[integrations.shop]
base_url = "{url}"
auth = {{ type = "bearer", token = "${{SHOP_TOKEN}}" }}
paginator = {{ type = "cursor", cursor = "next_cursor", has_more = "has_more", page_size = 3 }}
{extra}

[integrations.shop.endpoints.items]
path = "/items"

[integrations.shop.endpoints.item]
path = "/items/{{id}}"
paginator = "none"
""",
    )


async def test_single_call_prints_json(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """Without --all, one request; the body is printed as JSON and a summary goes to stderr."""
    mock, url = api
    mock.stub("GET", "/items/7", Reply(json={"id": 7, "name": "lamp"}))
    spec(tmp_path, url)
    result = await run_cli(["call", "shop", "item", "id=7"], {"SHOP_TOKEN": CANARY})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": 7, "name": "lamp"}
    assert "shop item: 1 request, 0 retries, 0 rate-limit waits" in result.stderr


async def test_all_exports_every_item_as_jsonl_to_a_file(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """--all walks every page; -o writes the file only once the export is complete."""
    mock, url = api
    mock.collection(
        "/items", items=[{"id": i} for i in range(1, 8)], pagination=CursorPages(page_size=3)
    )
    spec(tmp_path, url)
    out = tmp_path / "items.jsonl"
    result = await run_cli(
        ["call", "shop", "items", "--all", "--format", "jsonl", "-o", str(out)],
        {"SHOP_TOKEN": CANARY},
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(1, 8))
    assert not (tmp_path / "items.jsonl.partial").exists()
    assert "3 pages, 7 items, 3 requests, 0 retries" in result.stderr


async def test_all_as_json_is_one_array(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """--format json with --all prints one JSON array of the items."""
    mock, url = api
    mock.collection(
        "/items", items=[{"id": i} for i in range(1, 5)], pagination=CursorPages(page_size=3)
    )
    spec(tmp_path, url)
    result = await run_cli(["call", "shop", "items", "--all", "-q"], {"SHOP_TOKEN": CANARY})
    assert result.exit_code == 0, result.output
    assert [x["id"] for x in json.loads(result.stdout)] == [1, 2, 3, 4]
    assert result.stderr == ""


async def test_table_format_shows_columns(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """--format table draws the items' fields as columns."""
    mock, url = api
    mock.collection(
        "/items",
        items=[{"id": 1, "name": "lamp"}, {"id": 2, "name": "desk"}],
        pagination=CursorPages(page_size=3),
    )
    spec(tmp_path, url)
    result = await run_cli(
        ["call", "shop", "items", "--all", "-f", "table"], {"SHOP_TOKEN": CANARY}
    )
    assert result.exit_code == 0, result.output
    assert "name" in result.stdout
    assert "lamp" in result.stdout
    assert "desk" in result.stdout


async def test_progress_bar_when_asked(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """--progress draws a bar with the page and item counts on stderr."""
    mock, url = api
    mock.collection(
        "/items", items=[{"id": i} for i in range(1, 8)], pagination=CursorPages(page_size=3)
    )
    spec(tmp_path, url)
    result = await run_cli(
        ["call", "shop", "items", "--all", "--progress", "-f", "jsonl"], {"SHOP_TOKEN": CANARY}
    )
    assert result.exit_code == 0, result.output
    assert "items" in result.stderr
    assert "pages" in result.stderr


async def test_summary_counts_retries_and_rate_limit_waits(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """A 503 retried once and the rate-limit holds are both counted: with waits switched
    off the clock stands still, so each of the three attempts after the first waits."""
    mock, url = api
    mock.stub(
        "GET",
        "/items",
        Reply(503, times=1),
        Reply(json={"data": [{"id": 1}], "has_more": True, "next_cursor": "c2"}),
        query={"limit": "3"},
        priority=-1,
    )
    mock.stub(
        "GET",
        "/items",
        Reply(json={"data": [{"id": 2}], "has_more": True, "next_cursor": "c3"}),
        query={"cursor": "c2"},
    )
    mock.stub(
        "GET",
        "/items",
        Reply(json={"data": [{"id": 3}], "has_more": False}),
        query={"cursor": "c3"},
    )
    spec(tmp_path, url, extra='rate_limit = "1/s"\nretry = { jitter = false }')
    result = await run_cli(
        ["call", "shop", "items", "--all", "-f", "jsonl"], {"SHOP_TOKEN": CANARY}
    )
    assert result.exit_code == 0, result.output
    assert "3 pages, 3 items, 4 requests, 1 retry, 3 rate-limit waits" in result.stderr


async def test_rejected_credentials_exit_4_without_the_secret(
    api: tuple[MockAPI, str], tmp_path: Path, run_cli: RunCLI
) -> None:
    """A 401 whose body echoes the token exits 4 with one line and a hint; the token is
    never printed."""
    mock, url = api
    mock.stub("GET", "/items/1", Reply(401, json={"error": f"token {CANARY} is revoked"}))
    spec(tmp_path, url)
    result = await run_cli(["call", "shop", "item", "id=1"], {"SHOP_TOKEN": CANARY})
    assert result.exit_code == 4
    assert result.stderr.startswith("error: 401")
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output
    assert CANARY not in result.output


async def test_unreachable_api_exits_3(tmp_path: Path, closed_port: int, run_cli: RunCLI) -> None:
    """Nothing listening exits 3 (cannot connect)."""
    spec(tmp_path, f"http://127.0.0.1:{closed_port}", extra="retry = false")
    result = await run_cli(["call", "shop", "item", "id=1"], {"SHOP_TOKEN": CANARY})
    assert result.exit_code == 3
    assert result.stderr.startswith("error: ")


async def test_debug_shows_the_traceback(tmp_path: Path, closed_port: int, run_cli: RunCLI) -> None:
    """--debug lets the exception through, traceback and all."""
    spec(tmp_path, f"http://127.0.0.1:{closed_port}", extra="retry = false")
    result = await run_cli(["--debug", "call", "shop", "item", "id=1"], {"SHOP_TOKEN": CANARY})
    assert result.exit_code == 1
    assert result.exception is not None
    assert type(result.exception).__name__ == "ConnectError"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "nowhere", "x"], "no integration named 'nowhere'"),
        (["call", "shop", "nope"], "has no endpoint 'nope'"),
        (["call", "shop", "item"], "needs id=..."),
        (["call", "shop", "item", "id"], "is not key=value"),
        (["call", "shop", "item", "id:={bad"], "is not valid JSON"),
        (["call", "shop", "item", "id=1", "--all"], "is not paginated"),
    ],
)
async def test_command_line_mistakes_exit_2(
    tmp_path: Path, run_cli: RunCLI, args: list[str], message: str
) -> None:
    """Unknown integrations and endpoints, missing placeholders and malformed arguments are
    usage errors (exit 2) with a message, before any request."""
    spec(tmp_path, "http://127.0.0.1:9")
    result = await run_cli(args, {"SHOP_TOKEN": CANARY})
    assert result.exit_code == 2
    assert message in result.stderr


async def test_missing_secret_exits_5_naming_the_variable(tmp_path: Path, run_cli: RunCLI) -> None:
    """An unset variable is a configuration error (exit 5) naming the variable and line."""
    spec(tmp_path, "http://127.0.0.1:9")
    result = await run_cli(["call", "shop", "item", "id=1"])
    assert result.exit_code == 5
    assert "SHOP_TOKEN is not set" in result.stderr
    assert "tether.toml:4" in result.stderr
    assert "tether spec check" in result.stderr


async def test_preset_works_without_a_spec_file(
    api: tuple[MockAPI, str], run_cli: RunCLI, tmp_path: Path
) -> None:
    """With no tether.toml, a preset is usable by name (here with its URL overridden)."""
    mock, url = api
    mock.stub("GET", "/user", Reply(json={"login": "octocat"}))
    write(tmp_path / "gh.toml", f'[integrations.github]\npreset = "github"\nbase_url = "{url}"\n')
    result = await run_cli(["-s", "gh.toml", "call", "github", "user"], {"GITHUB_TOKEN": CANARY})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"login": "octocat"}
    assert mock.requests[0].headers["Authorization"] == f"Bearer {CANARY}"

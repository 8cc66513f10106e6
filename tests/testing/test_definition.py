"""Mock definitions in files, and `tether mock serve|check` running them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tether
from tether.cli._mock import app
from tether.testing import FakeClock, MockAPI, build_mock_api, load_definition

DATA = Path(__file__).parent / "data"


async def test_toml_definition_builds_a_working_api() -> None:
    """The example TOML file defines stubs, sequences, matchers, faults, a collection and
    OAuth2, and each behaves as written."""
    clock = FakeClock()
    api = load_definition(DATA / "shop.toml", clock=clock)
    assert api.seed == 7
    retry = tether.Retry(attempts=3, jitter=False, budget=None)
    async with api.client(retry=retry, raise_for_status=False) as client:
        assert (await client.get("/health")).json() == {"ok": True}
        assert (await client.get("/slow")).text == "finally"
        assert clock.monotonic() >= 0.05
        charge = await client.post(
            "/charges", json={"amount": 1, "currency": "eur"}, headers={"Idempotency-Key": "k"}
        )
        assert charge.status == 201
        with pytest.raises(tether.NetworkError):
            await client.get("/broken", retry=None)
        first = (await client.get("/products")).json()
        assert [p["name"] for p in first["data"]] == ["kettle", "toaster"]
        empty = (await client.get("/products", params={"cursor": first["next_cursor"]})).json()
        assert empty["data"] == []
        assert empty["has_more"]
        assert (await client.get("/admin/orders")).status == 401


def test_json_definitions_can_hold_null() -> None:
    """JSON files can say what TOML cannot, such as a null in a reply body."""
    api = load_definition(DATA / "shop.json")
    assert api.stubs[0].replies[0].json == {"value": None}


def test_definition_extends_a_given_api() -> None:
    """Loading into an existing MockAPI keeps its clock and seed and adds the definitions."""
    clock = FakeClock()
    api = MockAPI(clock=clock, seed=1)
    load_definition(DATA / "shop.toml", api=api)
    assert api.clock is clock
    assert api.seed == 1
    assert len(api.stubs) == 4


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            {"stubs": [{"path": "/x", "replies": [{"stauts": 200}]}]},
            r"stubs\[0\]\.replies\[0\]: unknown key 'stauts'",
        ),
        ({"stubs": [{"path": "x"}]}, r"stubs\[0\]: a stub path must start with '/'"),
        ({"stubs": [{"path": "/x", "query": {"a": {"glob": "*"}}}]}, r"stubs\[0\]\.query\.a"),
        ({"faults": [{"fault": {"kind": "meteor"}}]}, r"faults\[0\]\.fault\.kind: expected one of"),
        ({"faults": [{"fault": {"kind": "latency", "seconds": -1}}]}, r"Latency\.seconds"),
        ({"faults": [{"fault": "hang", "schedule": {"every": 0}}]}, r"faults\[0\]\.schedule"),
        (
            {"collections": [{"path": "/p", "pagination": {"style": "scroll"}}]},
            r"pagination\.style",
        ),
        ({"collections": [{"path": "/p", "pagination": {"page_sise": 3}}]}, r"unexpected keyword"),
        ({"oauth2": {"clients": {}, "access_ttl": 0}}, r"oauth2: access_ttl"),
        ({"stub": []}, r"unknown key 'stub'"),
    ],
)
def test_mistakes_name_the_entry_and_key(definition: dict[str, object], message: str) -> None:
    """Every error in a definition is a ConfigError that says where it is."""
    with pytest.raises(tether.ConfigError, match=message):
        build_mock_api(definition)


def test_unreadable_and_unknown_files_are_clear_errors(tmp_path: Path) -> None:
    """A missing file, a wrong suffix or broken TOML are ConfigErrors, not tracebacks."""
    with pytest.raises(tether.ConfigError, match="cannot read"):
        load_definition(tmp_path / "missing.toml")
    (tmp_path / "api.ini").write_text("")
    with pytest.raises(tether.ConfigError, match=r"\.toml, \.json"):
        load_definition(tmp_path / "api.ini")
    (tmp_path / "bad.toml").write_text("stubs = [")
    with pytest.raises(tether.ConfigError, match="not valid TOML"):
        load_definition(tmp_path / "bad.toml")


def test_cli_check_summarises_a_definition() -> None:
    """`tether mock check FILE` lists what the file defines."""
    result = CliRunner().invoke(app, ["check", str(DATA / "shop.toml")])
    assert result.exit_code == 0, result.output
    assert "stub   flaky health (2 replies)" in result.output
    assert "fault  gateway burst" in result.output
    assert "route  collection /products" in result.output


def test_cli_check_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    """A bad definition exits with status 2 and a one-line reason."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"stubs": [{"path": "/x", "methd": "GET"}]}')
    result = CliRunner().invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    assert "unknown key 'methd'" in result.output
    assert "Traceback" not in result.output


async def test_cli_serve_runs_the_definition_on_a_real_port() -> None:
    """`tether mock serve FILE --port 0` prints its URL, answers over HTTP and stops on SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tether.cli._mock",
        "serve",
        str(DATA / "shop.toml"),
        "--port",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert "serving on http://127.0.0.1:" in line, line
        url = line.split("serving on ")[1].split()[0]
        retry = tether.Retry(attempts=3, jitter=False, budget=None)
        async with tether.Client(url, retry=retry, clock=FakeClock()) as client:
            assert (await client.get("/health")).json() == {"ok": True}
            with pytest.raises(tether.NetworkError):
                await client.get("/broken", retry=None)
    finally:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), timeout=30)
    assert code == 0

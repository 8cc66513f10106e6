"""Helpers for CLI tests: run `tether ...` in a worker thread, so loopback servers on the
test's event loop keep answering while the command runs its own loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tether.cli import app
from tether.testing import no_wait

RunCLI = Callable[..., Coroutine[Any, Any, Result]]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own folder, with its own token store and no real waits."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("TETHER_SPEC", raising=False)
    with no_wait():
        yield


@pytest.fixture
def run_cli() -> RunCLI:
    async def run(args: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, app, list(args), env=dict(env or {}), catch_exceptions=True
        )

    return run


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path

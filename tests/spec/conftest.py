"""Helpers for spec tests: write a tether.toml into a temporary folder and load it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

import tether.spec

WriteSpec = Callable[..., tether.spec.Spec]


@pytest.fixture
def write_spec(tmp_path: Path) -> WriteSpec:
    """Write `text` as tmp/tether.toml and load it with `environ` (no process environment)."""

    def write(text: str, environ: Mapping[str, str] | None = None) -> tether.spec.Spec:
        path = tmp_path / "tether.toml"
        path.write_text(text, encoding="utf-8")
        return tether.spec.load(path, environ=dict(environ or {}))

    return write


@pytest.fixture(autouse=True)
def _private_token_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign-ins stored by default go under the test's folder, never the user's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

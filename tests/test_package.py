"""Packaging and public surface."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import tether


def test_version_matches_metadata() -> None:
    """The version in code is the version installed."""
    assert tether.__version__ == importlib.metadata.version("tether")


def test_exported_members() -> None:
    """`__all__` is sorted (constants, classes, then modules), complete, and every name exists."""

    def group(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert tether.__all__ == sorted(tether.__all__, key=group)
    # A fresh interpreter: in this one, other tests' imports of submodules add attributes.
    names = subprocess.run(
        [sys.executable, "-c", "import tether; print(' '.join(dir(tether)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    public = {name for name in names if not name.startswith("_")}
    assert set(tether.__all__) - {"__version__"} == public
    for name in tether.__all__:
        assert hasattr(tether, name)


def test_typed_marker_shipped() -> None:
    """The package ships py.typed, so users' type checkers read its annotations."""
    assert (Path(tether.__file__).parent / "py.typed").exists()


def test_cli_help_lists_itself() -> None:
    """`tether --help` works and `--version` prints the version."""
    result = subprocess.run(
        [sys.executable, "-m", "tether", "--version"], capture_output=True, text=True, check=True
    )
    assert tether.__version__ in result.stdout


def test_quickstart_example_runs() -> None:
    """The quickstart example runs to its end and says so."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(  # noqa: S603 - our own example, with this interpreter
        [sys.executable, str(root / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all four behaved as described" in result.stdout
    assert "demo-key-1f2e3d4c" not in result.stdout + result.stderr

"""The `tether` command line (typer + rich)."""

from __future__ import annotations

import typer

from tether._version import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="tether",
    help="Resilient integrations with third-party HTTP APIs.",
    no_args_is_help=True,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Resilient integrations with third-party HTTP APIs."""


def main() -> None:
    app()

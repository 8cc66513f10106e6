"""The `tether` command line (typer + rich): the root command and its subcommands."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Annotated

import typer

from tether._version import __version__
from tether.cli import _auth, _call, _check, _discover, _graphql, _serve, _spec
from tether.cli._support import State

__all__ = ["app", "main"]

app = typer.Typer(
    name="tether",
    help="Resilient integrations with third-party HTTP APIs.",
    no_args_is_help=True,
    add_completion=True,
    # Tracebacks are for --debug; without it every command prints one line and a hint.
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            "-s",
            envvar="TETHER_SPEC",
            help="The spec file. Default: ./tether.toml if present, else the presets alone.",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs of tether.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Resilient integrations with third-party HTTP APIs."""
    del version
    ctx.obj = State(spec_path=spec, debug=debug)
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")


app.command("call")(_call.call)
app.command("check")(_check.check)
app.command("discover")(_discover.discover)
app.command("graphql")(_graphql.graphql)
app.command("serve")(_serve.serve)
app.add_typer(_auth.app, name="auth")
app.add_typer(_spec.app, name="spec")


def _mount(module: str, name: str) -> None:
    # Sub-apps owned elsewhere: a missing or broken one must not take the whole CLI down.
    try:
        sub = importlib.import_module(module).app
    except Exception:  # any import failure just leaves the command out
        logging.getLogger("tether").debug("tether %s is unavailable", name, exc_info=True)
        return
    app.add_typer(sub, name=name)


_mount("tether.cli._mock", "mock")
_mount("tether.cli._webhooks", "webhooks")
_mount("tether.cli._outbox", "outbox")


def main() -> None:
    app()

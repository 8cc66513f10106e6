"""`tether mock ...`: serve or check a mock API definition file from the command line.

The root CLI mounts this as `tether mock`; `python -m tether.cli._mock` runs it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from tether._errors import ConfigError
from tether.testing._definition import load_definition
from tether.testing._mockapi import MockAPI

__all__ = ["app"]

app = typer.Typer(
    name="mock",
    help="Run a mock API (stubs, faults, collections, OAuth2) from a TOML, JSON or YAML file.",
    no_args_is_help=True,
)


DefinitionFile = Annotated[
    Path, typer.Argument(help="The mock definition (.toml, .json, .yaml).", show_default=False)
]


def _load(file: Path, seed: str | None) -> MockAPI:
    options: dict[str, Any] = {}
    if seed is not None:
        options["seed"] = int(seed) if seed.lstrip("-").isdigit() else seed
    try:
        return load_definition(file, **options)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


async def _serve(api: MockAPI, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not every platform lets a loop own signals (Windows); Ctrl-C still ends asyncio.run.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with api.serve(host=host, port=port) as server:
        typer.echo(f"tether mock: serving on {server.url} (seed {api.seed})", color=False)
        await stop.wait()
        typer.echo("tether mock: stopping")


@app.command()
def serve(
    file: DefinitionFile,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8080,
    seed: Annotated[str | None, typer.Option(help="Seed for fault schedules and tokens.")] = None,
) -> None:
    """Serve FILE over HTTP until interrupted. Faults are real on the socket."""
    api = _load(file, seed)
    if host not in ("127.0.0.1", "::1", "localhost"):
        typer.secho(
            f"warning: listening on {host}; the mock has no authentication of its own",
            err=True,
            fg=typer.colors.YELLOW,
        )
    try:
        asyncio.run(_serve(api, host, port))
    except OSError as exc:
        typer.secho(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@app.command()
def check(file: DefinitionFile) -> None:
    """Validate FILE and summarise what it defines."""
    api = _load(file, None)
    typer.echo(f"{file}: ok")
    for stub in api.stubs:
        count = len(stub.replies)
        typer.echo(f"  stub   {stub.name} ({count} {'reply' if count == 1 else 'replies'})")
    for rule in api.rules:
        typer.echo(f"  fault  {rule.name}")
    for route in api.routes:
        typer.echo(f"  route  {route.name}")


if __name__ == "__main__":
    app()

"""What every `tether` command shares: the spec, readable errors, exit codes, argument parsing."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from tether._errors import ConfigError, HTTPStatusError, TetherError
from tether._redact import Redactor
from tether.spec import Integration, Spec, SpecError, classify, load

__all__ = [
    "ExitCode",
    "State",
    "UsageProblem",
    "complete_endpoint",
    "complete_integration",
    "fail",
    "guarded",
    "parse_assignments",
    "run_async",
    "state",
]

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """The exit statuses of `tether` commands (docs/cli.md)."""

    OK = 0
    #: The API answered with an error, or something unexpected failed.
    ERROR = 1
    #: The command line is wrong: an unknown option, integration, endpoint or argument.
    USAGE = 2
    #: The API could not be reached, timed out, or is failing (5xx, 429, open circuit).
    CANNOT_CONNECT = 3
    #: The credentials were rejected (401, 403, a refused token request).
    INVALID_AUTH = 4
    #: The spec is invalid, or a secret it names is missing.
    CONFIG = 5
    INTERRUPTED = 130


class UsageProblem(Exception):
    """A mistake on the command line; exits with status 2 and a hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class State:
    """Options of the root command, shared with every subcommand."""

    spec_path: Path | None = None
    debug: bool = False
    redactor: Redactor = field(default_factory=Redactor)
    _spec: Spec | None = None

    def spec(self) -> Spec:
        """The spec: --spec, else $TETHER_SPEC, else ./tether.toml, else the presets alone."""
        if self._spec is None:
            path = self.spec_path
            if path is None and Path("tether.toml").is_file():
                path = Path("tether.toml")
            self._spec = load(path)
        return self._spec

    def integration(self, name: str, *, region: str | None = None) -> Integration:
        spec = self.spec()
        if name not in spec:
            known = ", ".join(spec.names) or "none in the spec"
            raise UsageProblem(
                f"no integration named {name!r}",
                f"integrations: {known}; presets: see `tether spec presets`",
            )
        integration = spec.integration(name, region=region)
        self.protect(integration)
        return integration

    def protect(self, integration: Integration) -> None:
        """From now on, hide this integration's secrets in everything printed."""
        self.redactor = self.redactor.merge(integration.redactor())


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def stderr() -> Console:
    # Built per use: CliRunner and redirections swap sys.stderr after import.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def fail(
    message: str, *, hint: str | None = None, code: ExitCode, redactor: Redactor | None = None
) -> NoReturn:
    """Print `error: message` (and `hint: ...`) on stderr and exit with `code`."""
    clean = redactor or Redactor()
    console = stderr()
    lines = clean.text(message).splitlines() or [""]
    # Text objects, not markup: "[REDACTED]" and URLs with brackets must print as they are.
    console.print(Text("error: ", style="bold red") + Text(lines[0]))
    for line in lines[1:]:
        console.print(Text(line))
    if hint:
        console.print(Text("hint: ", style="yellow") + Text(clean.text(hint)))
    raise typer.Exit(int(code))


def _hint_for(exc: BaseException, code: ExitCode) -> str | None:
    if isinstance(exc, SpecError):
        return "`tether spec check` shows every problem and where each value comes from"
    if code == ExitCode.INVALID_AUTH:
        return "check the credentials with `tether auth status` (or sign in: `tether auth login`)"
    if code == ExitCode.CANNOT_CONNECT:
        return "check the network, the base URL and the region; --debug shows the traceback"
    if isinstance(exc, HTTPStatusError):
        return "the API refused the request; --debug shows the traceback"
    return None


def exit_code_for(exc: BaseException) -> ExitCode:
    if isinstance(exc, UsageProblem):
        return ExitCode.USAGE
    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG
    status = classify(exc)
    if status == "invalid_auth":
        return ExitCode.INVALID_AUTH
    if status == "cannot_connect":
        return ExitCode.CANNOT_CONNECT
    return ExitCode.ERROR


@contextlib.contextmanager
def guarded(ctx: typer.Context) -> Iterator[State]:
    """Run a command body: expected failures become one line, a hint and an exit status;
    with --debug they propagate with their traceback."""
    current = state(ctx)
    try:
        yield current
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        if current.debug:
            raise
        fail("interrupted", code=ExitCode.INTERRUPTED)
    except (TetherError, UsageProblem, OSError) as exc:
        if current.debug:
            raise
        code = exit_code_for(exc)
        hint = exc.hint if isinstance(exc, UsageProblem) else _hint_for(exc, code)
        if isinstance(exc, OSError) and not isinstance(exc, TetherError):
            message = f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": ")
        else:
            message = str(exc) or type(exc).__name__
        fail(message, hint=hint, code=code, redactor=current.redactor)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def parse_assignments(items: Sequence[str] | None, *, what: str = "argument") -> dict[str, Any]:
    """`key=value` (a string) and `key:=json` (any JSON value) pairs."""
    values: dict[str, Any] = {}
    for item in items or ():
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageProblem(
                f"{what} {item!r} is not key=value",
                "write key=value, or key:=JSON for numbers, lists",
            )
        if name.endswith(":"):
            name = name[:-1]
            try:
                values[name] = json.loads(raw)
            except ValueError:
                raise UsageProblem(f"{what} {name}:= is not valid JSON") from None
        else:
            values[name] = raw
    return values


def _quiet_spec(ctx: Any) -> Spec | None:
    # Completion must never print or fail: any problem simply offers nothing.
    try:
        root = ctx.find_root()
        given = root.params.get("spec") if root is not None else None
        path = Path(given) if given else None
        if path is None and os.environ.get("TETHER_SPEC"):
            path = Path(os.environ["TETHER_SPEC"])
        if path is None and Path("tether.toml").is_file():
            path = Path("tether.toml")
        return load(path)
    except Exception:  # see above
        return None


def complete_integration(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for INTEGRATION: the spec's integrations and the presets."""
    from tether.spec import preset_names  # noqa: PLC0415

    spec = _quiet_spec(ctx)
    names = list(spec.names) if spec is not None else []
    names += [p for p in preset_names() if p not in names]
    return [n for n in names if n.startswith(incomplete)]


def complete_endpoint(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for ENDPOINT: the endpoints of the integration already typed."""
    spec = _quiet_spec(ctx)
    name = ctx.params.get("integration")
    if spec is None or not isinstance(name, str) or name not in spec:
        return []
    try:
        endpoints = spec.integration(name).spec.endpoints
    except Exception:  # completion never fails
        return []
    return [e for e in endpoints if e.startswith(incomplete)]

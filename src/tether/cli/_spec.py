"""`tether spec check | schema | presets | preset NAME`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tether.cli._support import ExitCode, UsageProblem, complete_integration, fail, guarded, stdout
from tether.spec import Integration, Problem, SpecError, preset_names, preset_text
from tether.spec._load import _preset
from tether.spec._schema import schema_text

__all__ = ["app"]

app = typer.Typer(
    name="spec",
    help="Check a tether.toml, print its JSON Schema, list and show the presets.",
    no_args_is_help=True,
)

_PREFIX_PARTS = 2  # "integrations.NAME." is implied in the per-integration tables


def _short(key: str) -> str:
    return key.split(".", _PREFIX_PARTS)[-1] if key.startswith("integrations.") else key


def _show(target: Integration) -> tuple[int, int]:
    """Print one integration's resolved settings; (problems, warnings)."""
    console = stdout()
    title = Text(target.name, style="bold")
    if target.preset:
        title += Text(f" (preset {target.preset})")
    console.print(title)
    where = target.base_url or "(unresolved)"
    region = f", region {target.region}" if target.region else ""
    console.print(Text(f"  base URL {where}{region}"))
    warnings = list(target.warnings)
    # One line per value, TOML-like, never truncated: `key = value  # where it came from`.
    for setting in target.settings():
        style = "red" if setting.origin.kind == "missing" else ""
        console.print(
            Text(f"  {_short(setting.key)} = ")
            + Text(setting.value, style=style)
            + Text(f"  # {setting.origin}", style="dim")
        )
        if setting.origin.kind == "missing" and ".webhooks." in setting.key:
            # A webhook secret is needed only to receive webhooks: a warning, not an error.
            warnings.append(
                Problem(
                    f"environment variable {setting.origin.detail} is not set (webhook secret)",
                    key=setting.key,
                    origin=setting.origin,
                )
            )
    for problem in target.problems:
        console.print(Text("  error: ", style="bold red") + Text(str(problem)))
    for warning in _unique(warnings):
        console.print(Text("  warning: ", style="yellow") + Text(str(warning)))
    return len(target.problems), len(warnings)


def _unique(items: list[Problem]) -> list[Problem]:
    seen: list[str] = []
    kept = []
    for item in items:
        if str(item) not in seen:
            seen.append(str(item))
            kept.append(item)
    return kept


@app.command("check")
def check(
    ctx: typer.Context,
    *,
    integration: Annotated[
        str | None,
        typer.Argument(
            help="Check only this integration (or a preset).", autocompletion=complete_integration
        ),
    ] = None,
    region: Annotated[str | None, typer.Option(help="Resolve this region.")] = None,
) -> None:
    """Validate the spec and print each integration's resolved configuration: every value,
    where it came from (file and line, preset, environment variable, default), secrets shown
    as [REDACTED]. Exits 5 when something is wrong."""
    with guarded(ctx) as current:
        try:
            spec = current.spec()
        except SpecError as exc:
            fail(str(exc), code=ExitCode.CONFIG, hint="fix the lines named above")
        names = [integration] if integration else list(spec.names)
        if not names:
            stdout().print(
                Text(
                    f"{spec.file or 'no tether.toml'}: no integrations; "
                    f"presets usable by name: {', '.join(preset_names())}"
                )
            )
            return
        problems = warnings = 0
        for name in names:
            target = current.integration(name, region=region)
            found, warned = _show(target)
            problems += found
            warnings += warned
        label = spec.file or "presets"
        if problems:
            fail(
                f"{label}: {problems} problem{'s' if problems != 1 else ''}",
                code=ExitCode.CONFIG,
                hint="set the variables and fix the keys named above",
                redactor=current.redactor,
            )
        suffix = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
        stdout().print(Text("ok", style="bold green") + Text(f" {label}{suffix}"))


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of tether.toml (for editors: `#:schema` in Taplo, or VS Code)."""
    typer.echo(schema_text(), nl=False)


@app.command("presets")
def presets() -> None:
    """List the presets shipped with tether."""
    table = Table("preset", "description", box=None, padding=(0, 2))
    for name in preset_names():
        description = _preset(name).data.get("description", "")
        table.add_row(name, str(description))
    stdout().print(table)


@app.command("preset")
def preset(
    ctx: typer.Context,
    *,
    name: Annotated[
        str, typer.Argument(help="A preset name.", autocompletion=complete_integration)
    ],
) -> None:
    """Print a preset's TOML: what `preset = NAME` merges under your settings."""
    with guarded(ctx):
        if name not in preset_names():
            raise UsageProblem(f"no preset named {name!r}", f"presets: {', '.join(preset_names())}")
        typer.echo(preset_text(name), nl=False)

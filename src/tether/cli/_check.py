"""`tether check INTEGRATION`: can tether reach the API, and does it accept the credentials?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from tether._config import Timeout
from tether.cli._support import ExitCode, complete_integration, fail, guarded, run_async, stdout
from tether.spec import CheckResult, Integration

__all__ = ["check"]

_CODES = {
    "ok": ExitCode.OK,
    "cannot_connect": ExitCode.CANNOT_CONNECT,
    "invalid_auth": ExitCode.INVALID_AUTH,
    "unknown": ExitCode.ERROR,
}


async def _check(integration: Integration, timeout: float) -> CheckResult:
    # One attempt, bounded: a check answers quickly rather than retrying a broken setup.
    async with integration.client(retry=None, timeout=Timeout(total=timeout)) as client:
        return await integration.check(client)


def check(
    ctx: typer.Context,
    *,
    integration: Annotated[
        str,
        typer.Argument(
            help="An integration of the spec, or a preset.", autocompletion=complete_integration
        ),
    ],
    region: Annotated[str | None, typer.Option(help="Check this region.")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds the check may take.")] = 10.0,
) -> None:
    """Make one request and say `ok`, `cannot_connect` or `invalid_auth` (exit 0, 3, 4).

    The request is the integration's `check` endpoint. Anything else that goes wrong is
    `unknown` (exit 1); a problem with the spec or a missing secret exits 5.
    """
    with guarded(ctx) as current:
        target = current.integration(integration, region=region)
        result = run_async(_check(target, timeout))
    if result.ok:
        stdout().print(Text("ok", style="bold green") + Text(f" {result.message}"))
        return
    fail(
        f"{result.status}: {result.message}",
        hint=result.hint,
        code=_CODES[result.status],
        redactor=current.redactor,
    )

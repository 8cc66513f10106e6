"""`tether auth login INTEGRATION` and `tether auth status`."""

from __future__ import annotations

import time
import webbrowser
from collections.abc import Callable
from typing import Annotated

import typer
from rich.text import Text

from tether.auth import DeviceCode, login
from tether.auth._oauth2 import OAuth2
from tether.auth._stores import MemoryTokenStore
from tether.cli._support import (
    ExitCode,
    State,
    UsageProblem,
    complete_integration,
    fail,
    guarded,
    run_async,
    stderr,
    stdout,
)
from tether.spec import Integration

__all__ = ["app"]

app = typer.Typer(
    name="auth",
    help="Sign in to OAuth2 integrations and see where each credential comes from.",
    no_args_is_help=True,
)


def _open(browser: bool) -> Callable[[str], None]:
    def show(url: str) -> None:
        console = stderr()
        if browser and webbrowser.open(url):
            console.print(Text("Opened the browser to sign in. If nothing appeared, open:"))
        else:
            console.print(Text("Open this URL to sign in:"))
        console.print(Text(f"  {url}"))

    return show


def _show_device(device: DeviceCode) -> None:
    target = device.verification_uri_complete or device.verification_uri
    stderr().print(
        Text("To sign in, open ")
        + Text(target, style="bold")
        + Text(" and enter the code ")
        + Text(device.user_code, style="bold")
    )


@app.command("login")
def login_command(
    ctx: typer.Context,
    *,
    integration: Annotated[
        str, typer.Argument(help="An OAuth2 integration.", autocompletion=complete_integration)
    ],
    device: Annotated[
        bool, typer.Option("--device", help="Use the device flow (a code to enter elsewhere).")
    ] = False,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the system browser.")
    ] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the sign-in.")] = 300.0,
    region: Annotated[str | None, typer.Option(help="Sign in to this region.")] = None,
) -> None:
    """Sign in once: authorization code with PKCE through a loopback redirect (RFC 8252), or
    the device flow with --device. The tokens go to the integration's token store."""
    with guarded(ctx) as current:
        target = current.integration(integration, region=region)
        if target.oauth2 is None and not target.problems:
            raise UsageProblem(
                f"{integration} does not use OAuth2; there is nothing to sign in to",
                "`tether auth status` shows how it authenticates",
            )
        credential = target.oauth2_for("device_code" if device else "authorization_code")
        token = run_async(
            login(
                credential,
                open_browser=_open(browser),
                show_device_code=_show_device,
                timeout=timeout,
            )
        )
        expires = ""
        if token.expires_at is not None:
            expires = (
                f"; the access token expires in {max(0, token.expires_at - time.time()):.0f} s"
            )
        kept = "a refresh token" if token.refresh_token is not None else "no refresh token"
        stdout().print(
            Text("signed in", style="bold green")
            + Text(f" to {integration}: kept {kept} in {credential.store!r}{expires}")
        )


async def _token_line(credential: OAuth2) -> str:
    if isinstance(credential.store, MemoryTokenStore) or credential.grant == "client_credentials":
        return "fetched on first use"
    stored = await credential.store.load(credential.store_key)
    if stored is None:
        return "not signed in"
    parts = ["signed in"]
    if stored.refresh_token is not None:
        parts.append("refresh token kept")
    if stored.expires_at is not None:
        left = stored.expires_at - time.time()
        parts.append(f"access token {'expired' if left <= 0 else f'valid {left:.0f} s'}")
    return ", ".join(parts)


def _row(current: State, name: str, region: str | None) -> tuple[tuple[str, ...], bool]:
    target: Integration = current.integration(name, region=region)
    auth = target.spec.auth
    kind: str = "none" if auth is None else auth.type
    if auth is not None and auth.type == "oauth2":
        kind += f" ({auth.grant})"
    sources = []
    for setting in target.settings():
        if setting.secret and ".auth." in setting.key:
            field = setting.key.rsplit(".", 1)[-1]
            sources.append(f"{field} from {setting.origin}")
    problems = [str(p.message) for p in target.problems]
    state = "; ".join(problems) if problems else "ok"
    oauth2 = target.oauth2
    if oauth2 is not None:
        state = run_async(_token_line(oauth2)) if not problems else state
    return (name, kind, "\n".join(sources) or "-", state), bool(problems)


@app.command("status")
def status(
    ctx: typer.Context,
    *,
    integration: Annotated[
        str | None,
        typer.Argument(
            help="One integration; default: all of the spec.", autocompletion=complete_integration
        ),
    ] = None,
    region: Annotated[str | None, typer.Option(help="For this region.")] = None,
) -> None:
    """Show each integration's auth scheme, where its secrets come from (never their
    values), and whether an OAuth2 sign-in is stored. Exits 5 if a secret is missing."""
    with guarded(ctx) as current:
        spec = current.spec()
        names = [integration] if integration else list(spec.names)
        if not names:
            raise UsageProblem(
                "the spec defines no integrations", "name one: `tether auth status github`"
            )
        missing = False
        console = stdout()
        # Plain lines rather than a table: nothing is cut or wrapped on a narrow terminal.
        for name in names:
            (label, kind, sources, line), problems = _row(current, name, region)
            missing = missing or problems
            console.print(Text(label, style="bold") + Text(f": {kind}"))
            for source in sources.splitlines():
                console.print(Text(f"  {current.redactor.text(source)}"))
            style = "red" if problems else "green"
            console.print(Text("  status: ") + Text(current.redactor.text(line), style=style))
    if missing:
        fail(
            "some credentials cannot be resolved",
            code=ExitCode.CONFIG,
            hint="set the variables named above, or run `tether spec check`",
        )

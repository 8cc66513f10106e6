"""Signing in once, as a person: the authorization code flow through a loopback redirect, and
the device flow. `tether auth login` is built on `login()`.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import socket
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from tether._core._oauth import TokenSet, code_challenge_s256
from tether._errors import AuthError, ConfigError
from tether.auth._oauth2 import DeviceCode, OAuth2

__all__ = ["AuthorizationRequest", "login"]

OpenBrowser = Callable[[str], Awaitable[object] | object]
ShowDeviceCode = Callable[[DeviceCode], Awaitable[object] | object]

_DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Signed in</title>"
    "<p>You are signed in. You can close this window.</p>"
)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """One authorization request: the URL to open and what the callback must match."""

    url: str
    redirect_uri: str
    state: str
    code_verifier: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r})"


def build_authorization_request(credential: OAuth2, redirect_uri: str) -> AuthorizationRequest:
    """The authorize URL with PKCE S256 (RFC 7636 §4.1-4.3) and a random `state`."""
    if credential.authorize_url is None:
        raise ConfigError("this credential has no authorize_url")
    # RFC 7636 §4.1: 43-128 characters of high entropy; 64 random bytes give 86.
    verifier = secrets.token_urlsafe(64)
    state = secrets.token_urlsafe(32)
    query = {
        "response_type": "code",
        "client_id": credential.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge_s256(verifier),
        "code_challenge_method": "S256",
    }
    if credential.scope:
        query["scope"] = credential.scope
    query.update(credential._authorize_params)
    joiner = "&" if urlsplit(credential.authorize_url).query else "?"
    return AuthorizationRequest(
        url=credential.authorize_url + joiner + urlencode(query),
        redirect_uri=redirect_uri,
        state=state,
        code_verifier=verifier,
    )


def _bind(redirect_uri: str | None) -> tuple[socket.socket, str]:
    """A listening socket, bound before the authorize URL exists (no bind-then-release race)."""
    if redirect_uri is None:
        host, port, path = "127.0.0.1", 0, "/callback"
    else:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                "login() listens for the redirect itself, so redirect_uri must be "
                "http://127.0.0.1:<port>/<path> (RFC 8252 §7.3)"
            )
        host = "::1" if parts.hostname == "::1" else "127.0.0.1"
        port, path = parts.port or 0, parts.path or "/"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(8)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return sock, f"http://{shown}:{actual}{path}"


async def _call(function: Callable[..., object], *args: object) -> None:
    result = function(*args)
    if inspect.isawaitable(result):
        await result


def _open_in_browser(url: str) -> None:
    if not webbrowser.open(url):
        print(f"Open this URL to sign in:\n  {url}")


def _show_device_code(device: DeviceCode) -> None:
    target = device.verification_uri_complete or device.verification_uri
    print(f"To sign in, open {target} and enter the code {device.user_code}")


async def login(
    credential: OAuth2,
    *,
    open_browser: OpenBrowser | None = None,
    show_device_code: ShowDeviceCode | None = None,
    timeout: float = 300.0,
) -> TokenSet:
    """Sign in once with `credential`'s interactive grant and store the token set.

    For the authorization code grant, a server listening on 127.0.0.1 (an ephemeral port
    unless `redirect_uri` names one) receives the redirect; `open_browser(url)` is called with
    the authorize URL (default: the system browser, or the URL printed). The callback must carry
    the `state` sent, and the code is exchanged with the PKCE verifier. For the device grant,
    `show_device_code(device)` tells the person where to go (default: printed), then the token
    endpoint is polled as RFC 8628 §3.5 says.

    Returns the stored token set (its repr shows no secrets). Raises `AuthError` when the
    person refuses, the state does not match, or `timeout` seconds pass.
    """
    if credential.grant == "device_code":
        device = await credential.start_device_authorization()
        await _call(show_device_code or _show_device_code, device)
        return await credential.poll_device(device)
    if credential.grant != "authorization_code":
        raise ConfigError(f"login() is for interactive grants; {credential.grant} needs none")
    sock, redirect_uri = _bind(credential.redirect_uri)
    request = build_authorization_request(credential, redirect_uri)
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()
    callback_path = urlsplit(redirect_uri).path

    async def callback(http: web.Request) -> web.StreamResponse:
        query = http.query
        if query.get("state") != request.state:
            # A redirect without our state was not started by us (RFC 6749 §10.12): refuse it
            # and keep waiting for the real one.
            return web.Response(status=400, text="state does not match this sign-in")
        issuer = query.get("iss")
        if credential.issuer is not None and issuer is not None and issuer != credential.issuer:
            # RFC 9207 §2.4: a response from another issuer is a mix-up attack.
            if not outcome.done():
                outcome.set_exception(
                    AuthError("the authorization response came from another issuer")
                )
            return web.Response(status=400, text="unexpected issuer")
        if "error" in query:
            if not outcome.done():
                reason = query.get("error", "")
                outcome.set_exception(AuthError(f"authorization was refused: {reason[:100]}"))
            return web.Response(text="Sign-in was refused. You can close this window.")
        code = query.get("code")
        if not code:
            return web.Response(status=400, text="no code in the redirect")
        if not outcome.done():
            outcome.set_result(code)
        return web.Response(text=_DONE_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get(callback_path, callback)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        await _call(open_browser or _open_in_browser, request.url)
        try:
            code = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            raise AuthError(f"no sign-in within {timeout:g} s") from None
    finally:
        await runner.cleanup()
        sock.close()
    return await credential.exchange_code(
        code, redirect_uri=redirect_uri, code_verifier=request.code_verifier
    )

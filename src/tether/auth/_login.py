"""`LoginExchange`: log in at an endpoint for a token, keep it for its TTL, log in again."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote_plus, urlsplit

import aiohttp

from tether._client import Client, _is_loopback
from tether._clock import Clock, SystemClock
from tether._core._backoff import full_jitter
from tether._core._oauth import Lifecycle, TokenResponseError, TokenSet, merge_token_response
from tether._errors import AuthError, ConfigError, InvalidClient, RequestError
from tether._redact import Redactor
from tether._types import SecretLike, Send
from tether.auth._base import Credential, TokenSource, secret_value
from tether.auth._manager import TokenManager
from tether.auth._oauth2 import DEFAULT_STORE, _Borrowed
from tether.auth._static import _send_from_source
from tether.auth._stores import TokenStore
from tether.transports._base import AsyncTransport

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["LoginExchange"]


class LoginExchange(Credential, TokenSource):
    """Log in at `login_url` to get a token, and send it until its TTL runs out.

    WattTime's API is the model: `GET /login` with Basic auth answers `{"token": "..."}`, valid
    for 30 minutes. The token is fetched once for every task and thread that needs it (the same
    single-flight machinery as OAuth2), renewed before the TTL ends, and fetched again once when
    the API answers 401.

    Args:
        login_url: The login endpoint.
        username, password: The account's credentials.
        token_field: Where the token is in the JSON answer; dots walk into objects
            (`"data.token"`).
        ttl: Seconds the token is valid, unless the answer has `expires_in`.
        method: The login request's method.
        credentials: How username and password are sent: `"basic"` (Authorization: Basic),
            `"json"` or `"form"` (in the body, under `username_field` and `password_field`).
        header, template: How the token is sent: `header: template.format(token=...)`.
    """

    __slots__ = (
        "_clock",
        "_credentials",
        "_manager",
        "_password",
        "_random",
        "_session",
        "_timeout",
        "_transport",
        "header",
        "login_url",
        "method",
        "password_field",
        "template",
        "token_field",
        "ttl",
        "username",
        "username_field",
    )

    def __init__(
        self,
        login_url: str,
        username: str,
        password: SecretLike,
        token_field: str = "token",  # noqa: S107 - a field name
        ttl: float = 1800,
        *,
        method: Literal["GET", "POST"] = "GET",
        credentials: Literal["basic", "json", "form"] = "basic",
        username_field: str = "username",
        password_field: str = "password",  # noqa: S107 - a field name
        header: str = "Authorization",
        template: str = "Bearer {token}",
        store: TokenStore | None = None,
        store_key: str | None = None,
        transport: AsyncTransport | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        lifecycle: Lifecycle | None = None,
        clock: Clock | None = None,
        allow_insecure_http: bool = False,
        rand: random.Random | None = None,
    ) -> None:
        parts = urlsplit(login_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("login_url must be an absolute http(s) URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_insecure_http:
            raise ConfigError(
                f"refusing to send a password over plain http to {parts.hostname}; "
                "use https, or pass allow_insecure_http=True"
            )
        if credentials not in ("basic", "json", "form"):
            raise ConfigError(f"credentials must be 'basic', 'json' or 'form', got {credentials!r}")
        if credentials == "basic" and ":" in username:
            raise ConfigError("Basic auth username must not contain ':'")
        if ttl <= 0:
            raise ConfigError("ttl must be a positive number of seconds")
        if "{token}" not in template:
            raise ConfigError("template must contain {token}")
        if transport is not None and session is not None:
            raise ConfigError("pass either session= or transport=, not both")
        self.login_url = login_url
        self.username = username
        self._password = secret_value("password", password)
        self.token_field = token_field
        self.ttl = float(ttl)
        self.method = method
        self._credentials = credentials
        self.username_field = username_field
        self.password_field = password_field
        self.header = header
        self.template = template
        self._transport = transport
        self._session = session
        self._timeout = timeout
        self._clock: Clock = clock or SystemClock()
        self._random = rand or random.Random()
        # The password's digest in the key: a changed password starts a fresh token.
        digest = hashlib.sha256(self._password.get_secret_value().encode()).hexdigest()[:16]
        key = store_key or "|".join(
            quote_plus(p, safe="") for p in ("login", login_url, username, digest)
        )
        self._manager = TokenManager(
            fetch=self._fetch,
            store=store if store is not None else DEFAULT_STORE,
            key=key,
            lifecycle=lifecycle or Lifecycle(default_lifetime=self.ttl),
            clock=self._clock,
            description=f"login of {username!r} at {Redactor().url(login_url)}",
            rand=self._random,
        )

    async def current_token(self) -> TokenSet:
        return await self._manager.token()

    async def renew_token(self, rejected: TokenSet) -> TokenSet:
        return await self._manager.renew(rejected)

    def redactor_for(self, base: Redactor) -> Redactor:
        return self._manager.redactor_for(base)

    def redactor(self) -> Redactor:
        password = self._password.get_secret_value()
        basic = base64.b64encode(f"{self.username}:{password}".encode()).decode()
        return Redactor(headers=[self.header], secrets=[password, basic, *self._manager.secrets()])

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        return _send_from_source(self, request, next_, self.header, self.template)

    async def _fetch(self, base: TokenSet | None) -> TokenSet:
        password = self._password.get_secret_value()
        options: dict[str, Any] = {}
        headers = {"Accept": "application/json"}
        if self._credentials == "basic":
            pair = f"{self.username}:{password}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        elif self._credentials == "json":
            options["json"] = {self.username_field: self.username, self.password_field: password}
        else:
            options["data"] = {self.username_field: self.username, self.password_field: password}
        client_options: dict[str, Any] = {
            "retry": None,
            "raise_for_status": False,
            "timeout": self._timeout,
            "clock": self._clock,
            "secrets": list(self.redactor().secrets),
            "allow_insecure_http": True,
        }
        if self._transport is not None:
            client_options["transport"] = _Borrowed(self._transport)
        elif self._session is not None:
            client_options["session"] = self._session
        attempt = 0
        while True:
            attempt += 1
            try:
                async with Client(**client_options) as client:
                    response = await client.request(
                        self.method, self.login_url, headers=headers, **options
                    )
            except RequestError as error:
                if attempt < 3:
                    await self._clock.sleep(self._backoff(attempt))
                    continue
                raise AuthError(
                    f"login at {Redactor().url(self.login_url)} failed: {error}"
                ) from error
            if response.status >= 500 and attempt < 3:
                await self._clock.sleep(self._backoff(attempt))
                continue
            break
        where = Redactor().url(self.login_url)
        if response.status in (401, 403):
            raise InvalidClient(
                f"login at {where} was refused ({response.status}) for {self.username!r}"
            )
        if response.status >= 400:
            raise AuthError(f"login at {where} answered {response.status}")
        try:
            body = response.json()
        except ValueError:
            raise AuthError(f"login at {where} did not answer JSON") from None
        token = _walk(body, self.token_field)
        if not isinstance(token, str) or not token:
            raise AuthError(f"login at {where} answered without a {self.token_field!r} field")
        answer: dict[str, Any] = {"access_token": token, "expires_in": self.ttl}
        if isinstance(body, dict) and body.get("expires_in") is not None:
            answer["expires_in"] = body["expires_in"]
        try:
            return merge_token_response(
                answer,
                previous=base,
                received_at=self._clock.time(),
                skew=0.0,
                lifecycle=self._manager.lifecycle,
                rand=self._random.random(),
            )
        except TokenResponseError as error:
            raise AuthError(f"unusable login answer from {where}: {error}") from None

    def _backoff(self, attempt: int) -> float:
        return full_jitter(attempt, base=0.5, cap=8.0, rand=self._random.random())

    def __repr__(self) -> str:
        return (
            f"LoginExchange({Redactor().url(self.login_url)!r}, {self.username!r}, "
            f"{self._password!r}, token_field={self.token_field!r}, ttl={self.ttl:g})"
        )


def _walk(body: Any, path: str) -> Any:
    value = body
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value

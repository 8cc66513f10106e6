"""Credentials that are fixed strings: API keys, bearer tokens, basic auth, custom headers."""

from __future__ import annotations

import base64
import string
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from tether._errors import ConfigError
from tether._redact import Redactor
from tether._types import SecretLike, Send
from tether.auth._base import Credential, StaticCredential, TokenSource, secret_value

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["ApiKey", "Basic", "Bearer", "HeaderTemplate"]


class ApiKey(StaticCredential):
    """An API key sent in a header (`X-Api-Key: ...`) or a query parameter (`?appid=...`)."""

    __slots__ = ("_value", "location", "name")

    def __init__(
        self, name: str, value: SecretLike, *, location: Literal["header", "query"] = "header"
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError("ApiKey needs the header or parameter name that carries the key")
        if location not in ("header", "query"):
            raise ConfigError(f"ApiKey location must be 'header' or 'query', got {location!r}")
        self.name = name
        self.location = location
        self._value = secret_value("ApiKey value", value)

    def apply(self, request: Request) -> None:
        value = self._value.get_secret_value()
        if self.location == "header":
            request.headers[self.name] = value
            return
        params = request.params
        if params is None:
            request.params = [(self.name, value)]
        elif not any(name == self.name for name, _ in params):
            params.append((self.name, value))

    def redactor(self) -> Redactor:
        secret = self._value.get_secret_value()
        if self.location == "header":
            return Redactor(headers=[self.name], secrets=[secret])
        return Redactor(params=[self.name], secrets=[secret])

    def __repr__(self) -> str:
        return f"ApiKey({self.name!r}, {self._value!r}, location={self.location!r})"


class Bearer(Credential):
    """`Authorization: Bearer <token>` (RFC 6750 §2.1).

    `token` is a fixed string, or a token source such as an `OAuth2` credential, whose current
    access token is sent and renewed once when the API answers 401.
    """

    __slots__ = ("_header", "_source", "_token")

    def __init__(self, token: SecretLike | TokenSource) -> None:
        if isinstance(token, TokenSource):
            self._source: TokenSource | None = token
            self._token: SecretStr | None = None
            self._header = ""
        else:
            self._source = None
            self._token = secret_value("Bearer token", token)
            self._header = f"Bearer {self._token.get_secret_value()}"

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        if self._source is None:
            request.headers["Authorization"] = self._header
            return next_(request)
        return _send_from_source(self._source, request, next_, "Authorization", "Bearer {token}")

    def redactor(self) -> Redactor:
        if self._source is not None:
            return self._source.redactor()
        assert self._token is not None  # noqa: S101 - one of the two is always set
        return Redactor(secrets=[self._token.get_secret_value()])

    def __repr__(self) -> str:
        return f"Bearer({self._source if self._source is not None else self._token!r})"


async def _send_from_source(
    source: TokenSource, request: Request, next_: Send, header: str, template: str
) -> Response:
    token = await source.current_token()
    request.headers[header] = template.format(token=token.access_token.get_secret_value())
    request.redactor = source.redactor_for(request.redactor)
    response = await next_(request)
    if response.status != 401 or not request.replayable:
        return response
    # One renewal, and only of the token that was rejected: if another caller has replaced it
    # meanwhile, the new one is simply used (no second refresh).
    renewed = await source.renew_token(token)
    request.headers[header] = template.format(token=renewed.access_token.get_secret_value())
    request.redactor = source.redactor_for(request.redactor)
    return await next_(request)


class Basic(StaticCredential):
    """`Authorization: Basic ...` (RFC 7617)."""

    __slots__ = ("_encoded", "_password", "username")

    def __init__(self, username: str, password: SecretLike) -> None:
        if ":" in username:
            # RFC 7617 §2: the user-id cannot contain a colon; the server would split it wrong.
            raise ConfigError("Basic auth username must not contain ':'")
        self.username = username
        self._password = secret_value("Basic password", password)
        pair = f"{username}:{self._password.get_secret_value()}".encode()
        self._encoded = base64.b64encode(pair).decode("ascii")

    def apply(self, request: Request) -> None:
        request.headers["Authorization"] = f"Basic {self._encoded}"

    def redactor(self) -> Redactor:
        return Redactor(secrets=[self._password.get_secret_value(), self._encoded])

    def __repr__(self) -> str:
        return f"Basic({self.username!r}, {self._password!r})"


class HeaderTemplate(Credential):
    """A custom scheme: `HeaderTemplate("Authorization", "Zoho-oauthtoken {token}", token)`.

    `token` is a fixed string or a token source (e.g. an `OAuth2` credential).
    """

    __slots__ = ("_source", "_token", "_value", "header", "template")

    def __init__(self, header: str, template: str, token: SecretLike | TokenSource) -> None:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        if fields != {"token"}:
            raise ConfigError(
                "HeaderTemplate template must contain exactly the field {token}, "
                f"got {template!r}"
            )
        if not header or not isinstance(header, str):
            raise ConfigError("HeaderTemplate needs the name of the header to set")
        self.header = header
        self.template = template
        if isinstance(token, TokenSource):
            self._source: TokenSource | None = token
            self._token: SecretStr | None = None
            self._value = ""
        else:
            self._source = None
            self._token = secret_value("HeaderTemplate token", token)
            self._value = template.format(token=self._token.get_secret_value())

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        if self._source is None:
            request.headers[self.header] = self._value
            return next_(request)
        return _send_from_source(self._source, request, next_, self.header, self.template)

    def redactor(self) -> Redactor:
        if self._source is not None:
            return self._source.redactor().merge(Redactor(headers=[self.header]))
        assert self._token is not None  # noqa: S101 - one of the two is always set
        return Redactor(headers=[self.header], secrets=[self._token.get_secret_value()])

    def __repr__(self) -> str:
        token = self._source if self._source is not None else self._token
        return f"HeaderTemplate({self.header!r}, {self.template!r}, {token!r})"

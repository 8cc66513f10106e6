"""The credential protocol: every auth scheme is a link in the client pipeline."""

from __future__ import annotations

import abc
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from pydantic import SecretStr

from tether._errors import ConfigError
from tether._redact import Redactor
from tether._types import SecretLike, Send, reveal

if TYPE_CHECKING:
    from tether._core._oauth import TokenSet
    from tether._models import Request, Response

__all__ = ["Credential", "StaticCredential", "TokenSource", "secret_value"]


def secret_value(name: str, value: SecretLike) -> SecretStr:
    """Validate a caller's secret and keep it wrapped."""
    if not isinstance(value, str | SecretStr):
        raise ConfigError(f"{name} must be a str or pydantic.SecretStr, got {type(value).__name__}")
    if not reveal(value):
        raise ConfigError(f"{name} must not be empty")
    return value if isinstance(value, SecretStr) else SecretStr(value)


class Credential(abc.ABC):
    """Authenticates requests. Runs inside the retry loop, so it sees every attempt."""

    __slots__ = ()

    #: Whether sending this credential over plain http to a non-loopback host is refused.
    needs_secure_transport: bool = True

    @abc.abstractmethod
    def redactor(self) -> Redactor:
        """The headers, parameters and secret values this credential puts on the wire."""

    @abc.abstractmethod
    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        """Authenticate `request` and pass it on."""


class StaticCredential(Credential):
    """A credential whose wire form never changes: applied in place, no extra await."""

    __slots__ = ()

    @abc.abstractmethod
    def apply(self, request: Request) -> None:
        """Put the credential on `request`; must be idempotent, it runs on every attempt."""

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        self.apply(request)
        return next_(request)


class TokenSource(abc.ABC):
    """Something that hands out access tokens that change over time (OAuth2, LoginExchange).

    `Bearer` and `HeaderTemplate` accept one in place of a fixed token, so a custom scheme such
    as Zoho's `Authorization: Zoho-oauthtoken <token>` can carry an OAuth2 access token.
    """

    __slots__ = ()

    @abc.abstractmethod
    async def current_token(self) -> TokenSet:
        """A token to send now; refreshed first when it is due."""

    @abc.abstractmethod
    async def renew_token(self, rejected: TokenSet) -> TokenSet:
        """After a 401: a new token, unless `rejected` has already been replaced."""

    @abc.abstractmethod
    def redactor_for(self, base: Redactor) -> Redactor:
        """`base` extended with every token value handed out so far."""

    @abc.abstractmethod
    def redactor(self) -> Redactor:
        """The secrets known now (client secret, refresh token, ...)."""

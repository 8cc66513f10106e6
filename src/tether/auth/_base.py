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
    from tether._models import Request, Response

__all__ = ["Credential", "StaticCredential", "secret_value"]


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

"""Type aliases shared across the package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, get_origin

from pydantic import SecretStr

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["SecretLike", "Send", "reveal", "type_name"]

#: The next link of the pipeline: takes the request, gives the response.
Send: TypeAlias = "Callable[[Request], Awaitable[Response]]"

#: A secret given by the caller: kept as `SecretStr` so no repr ever shows it.
SecretLike: TypeAlias = str | SecretStr


def reveal(secret: SecretLike) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def type_name(model: Any) -> str:
    """A readable name for a validation target: `Device`, or `list[Device]` for generics."""
    # list[Device] has the __name__ "list"; its repr names the whole type.
    if get_origin(model) is not None:
        return repr(model).replace("typing.", "")
    return getattr(model, "__name__", None) or repr(model)

"""Case-insensitive header lookup over whatever mapping a web framework hands over."""

from __future__ import annotations

from collections.abc import Mapping

from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

__all__ = ["HeaderView"]


class HeaderView:
    """Headers folded to lower-case names; each name may hold several received values."""

    __slots__ = ("_values",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        items = getattr(headers, "items", None)
        if not callable(items):
            raise ConfigError(f"headers must be a mapping, not {type(headers).__name__}")
        values: dict[str, list[str]] = {}
        # items(), not a case-insensitive get(): multidicts (aiohttp, starlette) yield every
        # occurrence of a repeated header here, so a conflicting duplicate cannot hide.
        for name, value in items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ConfigError("header names and values must be str; decode raw headers first")
            values.setdefault(name.lower(), []).append(value)
        self._values = values

    def get(self, name: str) -> str | None:
        """The value of `name`, or None when it is absent or blank.

        Raises:
            WebhookVerificationError: MALFORMED_HEADER when it was sent twice with different
                values, since either could be the one a proxy or framework would pick.
        """
        found = self._values.get(name.lower())
        if not found:
            return None
        if len(set(found)) > 1:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {name} header appears more than once with different values",
            )
        value = found[0]
        return value if value.strip() else None

    def require(self, name: str) -> str:
        """The value of `name`.

        Raises:
            WebhookVerificationError: MISSING_HEADER when it is absent or blank.
        """
        value = self.get(name)
        if value is None:
            raise WebhookVerificationError(
                WebhookVerificationReason.MISSING_HEADER, f"the {name} header is missing"
            )
        return value

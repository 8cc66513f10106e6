"""Case-insensitive header lookup over whatever mapping a web framework hands over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

__all__ = ["HeaderView"]


class HeaderView:
    """Headers folded to lower-case names; each name may hold several received values."""

    # The first value of each name, and every value of the few names sent more than once: one
    # dict of strings rather than a list per header keeps a receiver's garbage collector idle.
    __slots__ = ("_first", "_repeats")

    def __init__(self, headers: Mapping[str, str]) -> None:
        items = getattr(headers, "items", None)
        if not callable(items):
            raise ConfigError(f"headers must be a mapping, not {type(headers).__name__}")
        pairs = []
        # items(), not a case-insensitive get(): multidicts (aiohttp, starlette) yield every
        # occurrence of a repeated header here, so a conflicting duplicate cannot hide.
        for name, value in items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ConfigError("header names and values must be str; decode raw headers first")
            pairs.append((name.lower(), value))
        self._first, self._repeats = fold(pairs)

    @classmethod
    def of_folded(cls, first: dict[str, str], repeats: dict[str, list[str]] | None) -> HeaderView:
        """A view over what `fold()` (or a receiver's own decode) made."""
        view = cls.__new__(cls)
        view._first = first
        view._repeats = repeats
        return view

    def first(self, name: str) -> str | None:
        """The first value received for `name` (lower-case), blank or not, or None."""
        return self._first.get(name)

    def get(self, name: str) -> str | None:
        """The value of `name`, or None when it is absent or blank.

        Raises:
            WebhookVerificationError: MALFORMED_HEADER when it was sent twice with different
                values, since either could be the one a proxy or framework would pick.
        """
        # Every key is lower-case, so a name that is found as given needs no lower() call.
        value = self._first.get(name)
        if value is None:
            value = self._first.get(name.lower())
            if value is None:
                return None
        if self._repeats is not None and len(set(self._repeats.get(name.lower(), ()))) > 1:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {name} header appears more than once with different values",
            )
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


def fold(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]] | None]:
    """(lower-case name, value) pairs as first values by name, and all values of repeated names."""
    first: dict[str, str] = {}
    repeats: dict[str, list[str]] | None = None
    for key, value in pairs:
        if key in first:
            if repeats is None:
                repeats = {}
            repeats.setdefault(key, [first[key]]).append(value)
        else:
            first[key] = value
    return first, repeats

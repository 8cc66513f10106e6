"""Scheme options: keyword arguments checked by name and type before anything is verified."""

from __future__ import annotations

from collections.abc import Mapping

from tether._errors import ConfigError

__all__ = ["Options"]


class Options:
    """The options given for one scheme; each is taken once, and leftovers are an error."""

    __slots__ = ("_given", "_known", "scheme")

    def __init__(self, scheme: str, given: Mapping[str, object]) -> None:
        self.scheme = scheme
        self._given = dict(given)
        self._known: list[str] = []

    def raw(self, name: str) -> object | None:
        """The value of option `name` as given, or None."""
        self._known.append(name)
        return self._given.pop(name, None)

    def optional_text(self, name: str) -> str | None:
        """Option `name` as a non-empty str, or None when it was not given.

        Raises:
            ConfigError: a value that is not a non-empty str.
        """
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.scheme} option {name}= must be a non-empty str")
        return value

    def text(self, name: str, default: str) -> str:
        """Option `name` as a str, or `default`.

        Raises:
            ConfigError: a value that is not a str.
        """
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self.scheme} option {name}= must be a str")
        return value

    def required_text(self, name: str, why: str) -> str:
        """Option `name` as a non-empty str.

        Raises:
            ConfigError: it is missing (the message says `why` it is needed) or not a str.
        """
        value = self.optional_text(name)
        if value is None:
            raise ConfigError(f"the {self.scheme} scheme needs {name}=: {why}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """Option `name`, one of `choices`, or `default`.

        Raises:
            ConfigError: any other value.
        """
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{self.scheme} option {name}= must be one of {', '.join(choices)}")
        return value

    def done(self) -> None:
        """Raise ConfigError if any given option was not taken by the scheme."""
        if self._given:
            known = ", ".join(sorted(self._known)) or "none"
            raise ConfigError(
                f"unknown option(s) for the {self.scheme} scheme: "
                f"{', '.join(sorted(self._given))}; it takes: {known}"
            )

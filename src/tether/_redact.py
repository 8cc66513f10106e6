"""Redaction: secrets never reach a log line, a repr or an exception message.

A `Redactor` knows three things: header names whose values are always hidden, query parameter
names whose values are always hidden, and secret values hidden wherever they appear (in a URL
path, a response body excerpt, an exception text from a lower layer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "SENSITIVE_HEADERS", "SENSITIVE_PARAMS", "Redactor"]

REDACTED = "[REDACTED]"

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
    }
)

# Names that carry credentials in practice, even when no auth object declared them.
SENSITIVE_PARAMS = frozenset(
    {"access_token", "api_key", "apikey", "client_secret", "refresh_token", "id_token", "password"}
)


def _variants(secret: str) -> set[str]:
    # A secret may show up percent-encoded in a URL or form body, not only verbatim.
    return {secret, quote(secret, safe=""), quote_plus(secret, safe="")}


class Redactor:
    """Hides sensitive headers, parameters and secret values. Immutable; combine with `merge`."""

    __slots__ = ("_pattern", "headers", "params", "secrets")

    def __init__(
        self,
        *,
        headers: Iterable[str] = (),
        params: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ) -> None:
        self.headers = SENSITIVE_HEADERS | {name.lower() for name in headers}
        self.params = SENSITIVE_PARAMS | {name.lower() for name in params}
        self.secrets = frozenset(s for s in secrets if s)
        variants: set[str] = set()
        for secret in self.secrets:
            variants |= _variants(secret)
        # Longest first, so a secret that contains another is hidden whole.
        ordered = sorted(variants, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def merge(self, other: Redactor) -> Redactor:
        return Redactor(
            headers=self.headers | other.headers,
            params=self.params | other.params,
            secrets=self.secrets | other.secrets,
        )

    def text(self, value: str) -> str:
        """`value` with every known secret replaced."""
        if self._pattern is None:
            return value
        return self._pattern.sub(REDACTED, value)

    def url(self, url: str) -> str:
        """`url` with user info, sensitive query values and known secrets replaced."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(name.lower() in self.params for name, _ in pairs):
                query = urlencode(
                    [(n, REDACTED if n.lower() in self.params else v) for n, v in pairs],
                    safe="[]",
                )
        rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        return self.text(rebuilt)

    def params_list(self, params: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (name, REDACTED if name.lower() in self.params else self.text(value))
            for name, value in params
        ]

    def header_map(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A plain copy of `headers` safe to print."""
        return {
            name: REDACTED if name.lower() in self.headers else self.text(value)
            for name, value in headers.items()
        }

    def __repr__(self) -> str:
        # The repr of the thing that hides secrets must not list them.
        return (
            f"Redactor(headers={sorted(self.headers)}, params={sorted(self.params)}, "
            f"secrets={len(self.secrets)})"
        )

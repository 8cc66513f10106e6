"""Requests as the mock API sees them, and the matchers that choose a stub for them.

A matcher does not only say yes or no: it lists every field that differs, so a request that
matched nothing can be shown next to the nearest stubs with a field-by-field diff.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from tether._errors import ConfigError

__all__ = [
    "ABSENT",
    "ANY",
    "Mismatch",
    "MockRequest",
    "RequestMatcher",
    "ValueMatcher",
    "compile_path",
]


class _AnyValue:
    """Matches any value, as long as the field is present."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


class _Absent:
    """Matches only when the field is missing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ANY: Final = _AnyValue()
ABSENT: Final = _Absent()

#: What a query parameter or header value is compared with.
ValueMatcher = str | re.Pattern[str] | _AnyValue | _Absent | Callable[[str], bool]

_UNSET: Final = object()


@dataclass(frozen=True, slots=True)
class MockRequest:
    """One request as the mock API received it, whichever way it arrived."""

    method: str
    #: The absolute URL, query string included.
    url: str
    path: str
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: bytes = b""

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        *,
        path: str,
        query_string: str = "",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> MockRequest:
        query: MultiDict[str] = MultiDict(parse_qsl(query_string, keep_blank_values=True))
        return cls(
            method.upper(),
            url,
            path or "/",
            MultiDictProxy(query),
            CIMultiDictProxy(CIMultiDict(headers)),
            body,
        )

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not JSON."""
        return jsonlib.loads(self.body)

    def form(self) -> MultiDictProxy[str]:
        """The body as an `application/x-www-form-urlencoded` form."""
        return MultiDictProxy(MultiDict(parse_qsl(self.text, keep_blank_values=True)))

    def __repr__(self) -> str:
        return f"<MockRequest {self.method} {self.path}>"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One field where a request differs from what a stub expects."""

    field: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.field}: expected {self.expected}, got {self.actual}"


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_path(path: str | re.Pattern[str]) -> re.Pattern[str]:
    """`/items/{id}` becomes a pattern capturing `id`; a compiled pattern is used as given."""
    if isinstance(path, re.Pattern):
        return path
    given: object = path
    if not isinstance(given, str) or not path.startswith("/"):
        raise ConfigError(f"a stub path must start with '/', got {path!r}")
    pieces: list[str] = []
    last = 0
    for found in _PARAM.finditer(path):
        pieces.append(re.escape(path[last : found.start()]))
        pieces.append(f"(?P<{found.group(1)}>[^/]+)")
        last = found.end()
    pieces.append(re.escape(path[last:]))
    return re.compile("".join(pieces))


def _value_ok(expected: ValueMatcher, actual: str | None) -> bool:
    if isinstance(expected, _Absent):
        return actual is None
    if actual is None:
        return False
    if isinstance(expected, _AnyValue):
        return True
    if isinstance(expected, str):
        return actual == expected
    if isinstance(expected, re.Pattern):
        return expected.fullmatch(actual) is not None
    return bool(expected(actual))


def _describe(expected: object) -> str:
    if isinstance(expected, re.Pattern):
        return f"/{expected.pattern}/"
    if callable(expected) and not isinstance(expected, _AnyValue | _Absent):
        return f"<{getattr(expected, '__name__', 'predicate')}>"
    return repr(expected)


def json_contains(expected: Any, actual: Any) -> bool:
    """Whether `actual` holds everything `expected` lists: extra object keys are allowed,
    arrays must have the same length and match element by element; ANY matches anything.
    """
    if isinstance(expected, _AnyValue):
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and json_contains(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(json_contains(e, a) for e, a in zip(expected, actual, strict=True))
        )
    # bool is an int: True must not match 1, which json.loads keeps apart.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _short(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestMatcher:
    """What a stub expects of a request. Every field left out matches anything."""

    method: str | None = None
    path: str | re.Pattern[str] | None = None
    query: Mapping[str, ValueMatcher] = field(default_factory=dict)
    headers: Mapping[str, ValueMatcher] = field(default_factory=dict)
    json: Any = _UNSET
    json_partial: Any = _UNSET
    body: bytes | None = None
    where: Callable[[MockRequest], bool] | None = None
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())
        if self.path is not None:
            object.__setattr__(self, "_pattern", compile_path(self.path))
        if self.json is not _UNSET and self.json_partial is not _UNSET:
            raise ConfigError("a stub matches json= or json_partial=, not both")
        if self.body is not None and (self.json is not _UNSET or self.json_partial is not _UNSET):
            raise ConfigError("a stub matches body= or a JSON body, not both")

    def path_params(self, path: str) -> dict[str, str] | None:
        """The `{name}` values captured from `path`, or None when the path does not match."""
        if self._pattern is None:
            return {}
        found = self._pattern.fullmatch(path)
        return None if found is None else found.groupdict()

    def mismatches(self, request: MockRequest) -> list[Mismatch]:
        """Every field where `request` differs; empty means it matches."""
        problems: list[Mismatch] = []
        if self.method is not None and self.method not in ("*", request.method):
            problems.append(Mismatch("method", self.method, request.method))
        if self.path is not None and self.path_params(request.path) is None:
            problems.append(Mismatch("path", _describe(self.path), repr(request.path)))
        for name, expected in self.query.items():
            actual = request.query.get(name)
            if not _value_ok(expected, actual):
                problems.append(Mismatch(f"query[{name}]", _describe(expected), repr(actual)))
        for name, expected in self.headers.items():
            actual = request.headers.get(name)
            if not _value_ok(expected, actual):
                problems.append(Mismatch(f"header[{name}]", _describe(expected), repr(actual)))
        if self.body is not None and request.body != self.body:
            problems.append(Mismatch("body", _short(self.body), _short(request.body)))
        if self.json is not _UNSET or self.json_partial is not _UNSET:
            problems.extend(self._json_mismatch(request))
        if self.where is not None and not problems and not self.where(request):
            problems.append(Mismatch("where", _describe(self.where), "False"))
        return problems

    def _json_mismatch(self, request: MockRequest) -> list[Mismatch]:
        partial = self.json is _UNSET
        expected = self.json_partial if partial else self.json
        try:
            actual = request.json()
        except ValueError:
            return [
                Mismatch(
                    "json", _short(expected), f"a body that is not JSON: {_short(request.body)}"
                )
            ]
        ok = json_contains(expected, actual) if partial else _json_equal(expected, actual)
        if ok:
            return []
        label = "json (partial)" if partial else "json"
        return [Mismatch(label, _short(expected), _short(actual))]

    def score(self, request: MockRequest) -> int:
        """How far `request` is from this matcher: lower is nearer; path weighs most."""
        weights = {"path": 8, "method": 4}
        return sum(weights.get(m.field, 2) for m in self.mismatches(request))


def _json_equal(expected: Any, actual: Any) -> bool:
    # Equality that still honours ANY placeholders and keeps True apart from 1.
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            _json_equal(value, actual[key]) for key, value in expected.items()
        )
    return json_contains(expected, actual)

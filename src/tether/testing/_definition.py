"""Mock API definitions in a file: TOML (stdlib `tomllib`), JSON, or YAML when PyYAML is there.

The same definition builds a `MockAPI` for tests (`load_definition`) and for
`tether mock serve FILE`. Every mistake is a `ConfigError` that names the entry and the key,
e.g. `stubs[2].replies[0]: unknown key 'stauts'`. The format is described in
docs/testing-kit.md.
"""

from __future__ import annotations

import json as jsonlib
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tether._errors import ConfigError
from tether.testing._faults import (
    Drip,
    EmptyResponse,
    Fault,
    Hang,
    Latency,
    MalformedChunk,
    RateLimited,
    Reset,
    Schedule,
    ServerError,
    Truncate,
)
from tether.testing._match import ABSENT, ANY, ValueMatcher
from tether.testing._mockapi import MockAPI
from tether.testing._pagination import (
    CursorPages,
    LinkHeaderPages,
    NextUrlPages,
    OffsetPages,
    PageNumberPages,
    PageQuirks,
    Pagination,
)
from tether.testing._reply import Reply

__all__ = ["build_mock_api", "load_definition", "read_definition"]

_FAULTS: dict[str, Callable[..., Fault]] = {
    "latency": Latency,
    "rate_limited": RateLimited,
    "server_error": ServerError,
    "reset": Reset,
    "empty_response": EmptyResponse,
    "malformed_chunk": MalformedChunk,
    "truncate": Truncate,
    "hang": Hang,
    "drip": Drip,
}

_PAGINATIONS: dict[str, Callable[..., Pagination]] = {
    "cursor": CursorPages,
    "offset": OffsetPages,
    "page": PageNumberPages,
    "link": LinkHeaderPages,
    "next_url": NextUrlPages,
}


class _Entry:
    """A mapping being read, that knows where it is and refuses keys nobody asked for."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a table/object, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.where = where
        self._read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self.data.get(key, default)

    def has(self, key: str) -> bool:
        self._read.add(key)
        return key in self.data

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.where}.{key}: expected a string, got {value!r}")
        return value

    def entries(self, key: str) -> list[_Entry]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.where}.{key}: expected a list")
        return [_Entry(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key {unknown[0]!r}")

    def call(self, factory: Callable[..., Any], options: Mapping[str, Any]) -> Any:
        try:
            return factory(**options)
        except TypeError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None


def read_definition(path: str | Path) -> dict[str, Any]:
    """The raw definition in `path`: `.toml`, `.json`, or `.yaml`/`.yml` (needs PyYAML)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read mock definition {file}: {exc.strerror}") from None
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":
            data: object = tomllib.loads(raw.decode("utf-8"))
        elif suffix == ".json":
            data = jsonlib.loads(raw)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
            except ImportError:
                raise ConfigError(
                    f"{file}: YAML definitions need PyYAML (pip install pyyaml); "
                    "TOML and JSON need nothing"
                ) from None
            # safe_load only: a definition file must not be able to run code.
            data = yaml.safe_load(raw)
        else:
            raise ConfigError(f"{file}: use a .toml, .json, .yaml or .yml file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a table/object")
    return data


def load_definition(path: str | Path, *, api: MockAPI | None = None, **options: Any) -> MockAPI:
    """A `MockAPI` built from the file at `path` (or the definition added to `api`)."""
    return build_mock_api(read_definition(path), api=api, source=str(path), **options)


def build_mock_api(
    definition: Mapping[str, Any],
    *,
    api: MockAPI | None = None,
    source: str = "definition",
    **options: Any,
) -> MockAPI:
    """A `MockAPI` from an already-parsed definition; `options` go to `MockAPI(...)`."""
    top = _Entry(definition, source)
    if api is None:
        seed = top.get("seed", 0)
        if not isinstance(seed, int | str) or isinstance(seed, bool):
            raise ConfigError(f"{source}.seed: expected an integer or string")
        settings: dict[str, Any] = {"seed": seed}
        if top.has("url"):
            settings["url"] = top.text("url")
        if top.has("hang_limit"):
            settings["hang_limit"] = top.get("hang_limit")
        settings.update(options)
        api = MockAPI(**settings)
    else:
        # The fixture or caller already chose these; the file must not silently disagree.
        for key in ("seed", "url", "hang_limit"):
            top.get(key)
    for entry in top.entries("stubs"):
        _stub(api, entry)
    for entry in top.entries("faults"):
        _fault_rule(api, entry)
    for entry in top.entries("collections"):
        _collection(api, entry)
    oauth = top.get("oauth2")
    if oauth is not None:
        _oauth2(api, _Entry(oauth, f"{source}.oauth2"))
    top.done()
    return api


def _matcher_values(entry: _Entry, key: str) -> dict[str, ValueMatcher]:
    raw = entry.get(key, {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{entry.where}.{key}: expected a table/object")
    values: dict[str, ValueMatcher] = {}
    for name, spec in raw.items():
        where = f"{entry.where}.{key}.{name}"
        if isinstance(spec, str):
            values[name] = spec
            continue
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            values[name] = str(spec)
            continue
        rule = _Entry(spec, where)
        if rule.get("any"):
            values[name] = ANY
        elif rule.get("absent"):
            values[name] = ABSENT
        elif (pattern := rule.text("regex")) is not None:
            try:
                values[name] = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}.regex: {exc}") from None
        else:
            raise ConfigError(f"{where}: give a string, or one of any, absent, regex")
        rule.done()
    return values


def _fault(spec: object, where: str) -> Fault:
    if isinstance(spec, str):
        spec = {"kind": spec}
    entry = _Entry(spec, where)
    kind = entry.text("kind")
    if kind not in _FAULTS:
        raise ConfigError(
            f"{where}.kind: expected one of {', '.join(sorted(_FAULTS))}, got {kind!r}"
        )
    options = {k: v for k, v in entry.data.items() if k != "kind"}
    fault: Fault = entry.call(_FAULTS[kind], options)
    return fault


def _reply(entry: _Entry) -> Reply:
    options: dict[str, Any] = {}
    for key in ("status", "body", "headers", "times"):
        if entry.has(key):
            options[key] = entry.get(key)
    if entry.has("json"):
        options["json"] = entry.get("json")
    if entry.has("fault"):
        options["fault"] = _fault(entry.get("fault"), f"{entry.where}.fault")
    entry.done()
    reply: Reply = entry.call(Reply, options)
    return reply


def _stub(api: MockAPI, entry: _Entry) -> None:
    options: dict[str, Any] = {}
    for key in ("json", "json_partial"):
        if entry.has(key):
            options[key] = entry.get(key)
    replies = [_reply(r) for r in entry.entries("replies")]
    if entry.has("reply"):
        replies.insert(0, _reply(_Entry(entry.get("reply"), f"{entry.where}.reply")))
    path = entry.text("path")
    if entry.has("path_regex"):
        pattern = entry.text("path_regex") or ""
        try:
            compiled: str | re.Pattern[str] | None = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{entry.where}.path_regex: {exc}") from None
    else:
        compiled = path
    call = {
        "query": _matcher_values(entry, "query"),
        "headers": _matcher_values(entry, "headers"),
        "body": entry.text("body"),
        "scenario": entry.text("scenario"),
        "when": entry.text("when"),
        "then": entry.text("then"),
        "priority": entry.get("priority", 0),
        "name": entry.text("name"),
        **options,
    }
    method = entry.text("method")
    entry.done()
    try:
        api.stub(method, compiled, *replies, **call)
    except ConfigError as exc:
        raise ConfigError(f"{entry.where}: {exc}") from None


def _fault_rule(api: MockAPI, entry: _Entry) -> None:
    fault = _fault(entry.get("fault"), f"{entry.where}.fault")
    schedule_spec = entry.get("schedule")
    schedule = (
        _Entry(schedule_spec, f"{entry.where}.schedule").call(Schedule, schedule_spec)
        if schedule_spec is not None
        else Schedule()
    )
    method, path, name = entry.text("method"), entry.text("path"), entry.text("name")
    query, headers = _matcher_values(entry, "query"), _matcher_values(entry, "headers")
    entry.done()
    try:
        api.inject(
            fault,
            schedule=schedule,
            method=method,
            path=path,
            query=query,
            headers=headers,
            name=name,
        )
    except ConfigError as exc:
        raise ConfigError(f"{entry.where}: {exc}") from None


def _collection(api: MockAPI, entry: _Entry) -> None:
    path = entry.text("path")
    if path is None:
        raise ConfigError(f"{entry.where}.path is required")
    pagination: Pagination | None = None
    spec = entry.get("pagination")
    if spec is not None:
        paging = _Entry(spec, f"{entry.where}.pagination")
        style = paging.text("style", "cursor")
        if style not in _PAGINATIONS:
            raise ConfigError(
                f"{paging.where}.style: expected one of {', '.join(sorted(_PAGINATIONS))}, "
                f"got {style!r}"
            )
        options = {k: v for k, v in paging.data.items() if k != "style"}
        pagination = paging.call(_PAGINATIONS[style], options)
    quirks_spec = entry.get("quirks")
    quirks = (
        _Entry(quirks_spec, f"{entry.where}.quirks").call(PageQuirks, quirks_spec)
        if quirks_spec is not None
        else None
    )
    items = entry.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ConfigError(f"{entry.where}.items: expected a list of tables/objects")
    id_field = entry.text("id_field", "id") or "id"
    name = entry.text("name")
    entry.done()
    try:
        api.collection(
            path, items=items, id_field=id_field, pagination=pagination, quirks=quirks, name=name
        )
    except ConfigError as exc:
        raise ConfigError(f"{entry.where}: {exc}") from None


def _oauth2(api: MockAPI, entry: _Entry) -> None:
    options: dict[str, Any] = {}
    for key in (
        "token_path",
        "revoke_path",
        "clients",
        "access_ttl",
        "refresh_ttl",
        "reported_ttl",
        "rotate_refresh_tokens",
        "detect_reuse",
        "scopes",
    ):
        if entry.has(key):
            options[key] = entry.get(key)
    protect = entry.text("protect")
    users = entry.get("users", {})
    entry.done()
    try:
        server = api.oauth2(**options)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{entry.where}: {exc}") from None
    if not isinstance(users, Mapping):
        raise ConfigError(f"{entry.where}.users: expected a table/object")
    for username, password in users.items():
        server.add_user(str(username), str(password))
    if protect is not None:
        server.protect(protect)

"""Reading `tether.toml`: TOML, presets merged underneath, validation with file:line messages."""

from __future__ import annotations

import functools
import importlib.resources
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from tether._errors import ConfigError
from tether.spec._locate import KeyPath, locate
from tether.spec._model import SpecFile

__all__ = [
    "Document",
    "Origin",
    "Problem",
    "SpecError",
    "format_path",
    "load_document",
    "preset_names",
]

_MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a setting came from."""

    kind: Literal["file", "preset", "default", "env", "secret_file", "override", "missing"]
    file: str | None = None
    line: int | None = None
    #: The preset's name, the environment variable's, or the secret file's path.
    detail: str | None = None

    @property
    def where(self) -> str:
        """`file:line`, or the file alone, or empty."""
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        if self.kind == "file":
            return self.where or "the spec"
        if self.kind == "preset":
            return f"preset {self.detail} ({self.where})" if self.where else f"preset {self.detail}"
        if self.kind == "env":
            return f"env {self.detail}" + (f" (named at {self.where})" if self.where else "")
        if self.kind == "secret_file":
            return f"file {self.detail}" + (f" (named at {self.where})" if self.where else "")
        if self.kind == "missing":
            return f"env {self.detail} is not set" + (
                f" (named at {self.where})" if self.where else ""
            )
        if self.kind == "override":
            return f"override ({self.detail})" if self.detail else "override"
        return "default"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a spec, and where."""

    message: str
    key: str = ""
    origin: Origin | None = None

    def __str__(self) -> str:
        where = self.origin.where if self.origin is not None else ""
        if self.origin is not None and self.origin.kind == "preset":
            where = f"preset {self.origin.detail}" + (f" ({where})" if where else "")
        prefix = f"{where}: " if where else ""
        key = f"{self.key}: " if self.key else ""
        return f"{prefix}{key}{self.message}"


class SpecError(ConfigError):
    """A spec that cannot be used; `.problems` lists each one with its file, line and key."""

    def __init__(self, problems: Iterable[Problem], *, file: str | None = None) -> None:
        self.problems = tuple(problems)
        self.file = file
        if len(self.problems) == 1:
            message = str(self.problems[0])
        else:
            head = f"{file}: " if file else ""
            shown = self.problems[:_MAX_PROBLEMS]
            lines = [f"{head}{len(self.problems)} problems"] + [f"  {p}" for p in shown]
            if len(self.problems) > len(shown):
                lines.append(f"  ... and {len(self.problems) - len(shown)} more")
            message = "\n".join(lines)
        super().__init__(message)


def format_path(path: KeyPath) -> str:
    """`integrations.weather.auth.value`, `endpoints.list.params.tags[0]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if part and all(c.isalnum() or c in "_-" for c in part) else f'"{part}"'
            text += f".{shown}" if text else shown
    return text


# -- presets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """A parsed TOML text and where its keys are."""

    data: dict[str, Any]
    lines: Mapping[KeyPath, int]
    display: str


def _parse(text: str, display: str) -> _Source:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"; keep it, it is the location.
        raise SpecError(
            [Problem(f"not valid TOML: {exc}", origin=Origin("file", display))], file=display
        ) from None
    return _Source(data, locate(text), display)


@functools.cache
def preset_names() -> tuple[str, ...]:
    """The presets shipped with tether."""
    folder = importlib.resources.files("tether.spec") / "presets"
    return tuple(sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".toml")))


@functools.cache
def _preset(name: str) -> _Source:
    resource = importlib.resources.files("tether.spec") / "presets" / f"{name}.toml"
    return _parse(resource.read_text(encoding="utf-8"), f"presets/{name}.toml")


def preset_text(name: str) -> str:
    """The TOML of a shipped preset."""
    if name not in preset_names():
        raise ConfigError(f"no preset named {name!r}; presets: {', '.join(preset_names())}")
    resource = importlib.resources.files("tether.spec") / "presets" / f"{name}.toml"
    return resource.read_text(encoding="utf-8")


def _overrides(base: Any, over: Any) -> bool:
    # A table whose `type` differs from the preset's (another auth scheme, another paginator)
    # replaces it whole: merging fields of two different schemes would mix nonsense.
    if not isinstance(base, dict) or not isinstance(over, dict):
        return True
    return "type" in over and over.get("type") != base.get("type")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if key in merged and not _overrides(merged[key], value):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# -- the document -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Document:
    """A validated spec: the model, the merged data and where every value came from."""

    model: SpecFile
    data: Mapping[str, Any]
    origins: Mapping[KeyPath, Origin]
    file: str | None
    folder: Path
    #: Integrations a preset was merged into, by name.
    presets: Mapping[str, str] = field(default_factory=dict)

    def origin(self, path: KeyPath) -> Origin:
        """Where the value at `path` came from; the nearest enclosing key when not set itself."""
        found = self.origins.get(path)
        return found if found is not None else Origin("default")

    def nearest(self, path: KeyPath) -> Origin | None:
        for end in range(len(path), 0, -1):
            found = self.origins.get(path[:end])
            if found is not None:
                return found
        return None


def _walk(data: Any, path: KeyPath) -> Iterable[KeyPath]:
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, (*path, index))


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _contains(data: Any, path: KeyPath) -> bool:
    node = data
    for part in path:
        if _has(node, part):
            node = node[part]
        else:
            return False
    return True


def _data_path(data: Any, loc: Iterable[str | int]) -> tuple[KeyPath, list[str | int]]:
    """Split a pydantic location into the part that exists in the data and the rest.

    Pydantic inserts union member tags (`oauth2`, `str`, `function-after[...]`) into error
    locations; those are skipped, so the path printed is the one the user wrote.
    """
    node = data
    found: list[str | int] = []
    rest: list[str | int] = []
    for part in loc:
        if _has(node, part):
            node = node[part]
            found.append(part)
            rest = []
        else:
            rest.append(part)
    return tuple(found), rest


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown key (misspelt?)"
    if error["type"] == "missing":
        return "required"
    return message


def _problems(
    exc: ValidationError,
    data: Mapping[str, Any],
    origins: Mapping[KeyPath, Origin],
    file: str | None,
) -> list[Problem]:
    grouped: dict[str, tuple[Origin | None, list[str]]] = {}
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        path, rest = _data_path(data, error["loc"])
        key_path = path
        if error["type"] == "missing" and rest:
            # Name the key that is missing, not the union tag pydantic put before it.
            last = rest[-1]
            key_path = (*path, last)
        origin = origins.get(path)
        if origin is None:
            # A key inside an inline value, or a whole missing table: the nearest parent.
            for end in range(len(path) - 1, -1, -1):
                origin = origins.get(path[:end])
                if origin is not None:
                    break
        if origin is None and file is not None:
            origin = Origin("file", file)
        key = format_path(key_path)
        entry = grouped.setdefault(key, (origin, []))
        message = _message(error)
        if message not in entry[1]:
            entry[1].append(message)
    # A union reports a type mismatch for every alternative it did not pick; when a deeper
    # key has its own error, the user wrote a table and the mismatches are noise.
    deeper = {k for k in grouped if any(o.startswith(k + ".") for o in grouped if o != k)}
    problems = []
    for key, (origin, messages) in grouped.items():
        if key in deeper and all(m.startswith("Input should be a valid") for m in messages):
            continue
        # A union reports one error per alternative; together they say what was expected.
        text = messages[0] if len(messages) == 1 else "; or: ".join(messages)
        problems.append(Problem(text, key=key, origin=origin))
    return problems


def _origins_for(
    source: _Source, kind: Literal["file", "preset"], detail: str | None
) -> dict[KeyPath, Origin]:
    return {path: Origin(kind, source.display, line, detail) for path, line in source.lines.items()}


def build_document(
    data: dict[str, Any],
    lines: Mapping[KeyPath, int],
    *,
    file: str | None,
    folder: Path,
) -> Document:
    """Merge presets under the file's integrations and validate the result."""
    origins: dict[KeyPath, Origin] = (
        {path: Origin("file", file, line) for path, line in lines.items()}
        if file is not None
        else {}
    )
    problems: list[Problem] = []
    merged = dict(data)
    presets: dict[str, str] = {}
    integrations = data.get("integrations")
    if isinstance(integrations, dict):
        merged_integrations: dict[str, Any] = {}
        for name, table in integrations.items():
            preset = table.get("preset") if isinstance(table, dict) else None
            if preset is None:
                merged_integrations[name] = table
                continue
            where = ("integrations", name, "preset")
            if not isinstance(preset, str) or preset not in preset_names():
                problems.append(
                    Problem(
                        f"no preset named {preset!r}; presets: {', '.join(preset_names())}",
                        key=format_path(where),
                        origin=origins.get(where, Origin("file", file) if file else None),
                    )
                )
                merged_integrations[name] = table
                continue
            source = _preset(preset)
            merged_integrations[name] = _merge(source.data, table)
            presets[name] = preset
            base = ("integrations", name)
            preset_origins = _origins_for(source, "preset", preset)
            for path in _walk(merged_integrations[name], base):
                if path in origins and _contains(table, path[2:]):
                    continue
                relative = path[2:]
                if relative in preset_origins:
                    origins[path] = preset_origins[relative]
        merged["integrations"] = merged_integrations
    if problems:
        raise SpecError(problems, file=file)
    try:
        model = SpecFile.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(_problems(exc, merged, origins, file), file=file) from None
    return Document(model, merged, origins, file, folder, presets)


def load_document(path: str | Path) -> Document:
    """Read and validate the spec at `path`."""
    location = Path(path)
    display = str(path)
    try:
        text = location.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            [Problem("no such file", origin=Origin("file", display))], file=display
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SpecError(
            [Problem(f"cannot read: {reason}", origin=Origin("file", display))], file=display
        ) from None
    source = _parse(text, display)
    return build_document(source.data, source.lines, file=display, folder=location.parent)


def preset_document(name: str) -> Document:
    """A spec holding one integration, `name`, taken whole from the preset of that name."""
    if name not in preset_names():
        raise SpecError([Problem(f"no integration or preset named {name!r}")])
    return build_document(
        {"integrations": {name: {"preset": name}}}, {}, file=None, folder=Path.cwd()
    )

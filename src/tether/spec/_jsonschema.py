"""A small JSON Schema validator for response shapes declared in a spec.

It covers the keywords response schemas use in practice (types, properties, required,
additionalProperties, items, enum/const, length and range bounds, pattern, allOf/anyOf/oneOf/
not, local `$ref`). Any other validation keyword is refused when the spec is loaded rather than
silently ignored: a schema that looks enforced but is not would be worse than none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from tether._errors import ConfigError

__all__ = ["check_schema", "validate"]

_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")

_VALIDATION = frozenset(
    {
        "type", "enum", "const", "properties", "required", "additionalProperties", "items",
        "prefixItems", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength",
        "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minProperties", "maxProperties", "allOf", "anyOf", "oneOf", "not", "$ref", "$defs",
        "definitions",
    }
)  # fmt: skip

# Keywords that describe rather than constrain: accepted, and rightly not enforced.
_ANNOTATIONS = frozenset(
    {
        "$schema", "$id", "$comment", "$anchor", "title", "description", "default", "examples",
        "format", "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
        "nullable", "discriminator", "x-order",
    }
)  # fmt: skip

_MAX_ERRORS = 10


def check_schema(schema: Any, *, _path: str = "") -> None:
    """Raise `ConfigError` if `schema` uses a keyword this validator cannot enforce."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise ConfigError(f"schema{_path or ''} must be a table (object) or a boolean")
    for key, value in schema.items():
        where = f"{_path}.{key}" if _path else key
        if key not in _VALIDATION and key not in _ANNOTATIONS and not key.startswith("x-"):
            raise ConfigError(f"JSON Schema keyword {where!r} is not supported")
        if key == "type":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or any(n not in _TYPES for n in names):
                raise ConfigError(f"{where!r} must name JSON types ({', '.join(_TYPES)})")
        elif key in ("properties", "$defs", "definitions"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where!r} must be a table of schemas")
            for name, sub in value.items():
                check_schema(sub, _path=f"{where}.{name}")
        elif key in ("additionalProperties", "items", "not"):
            check_schema(value, _path=where)
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where!r} must be a non-empty list of schemas")
            for index, sub in enumerate(value):
                check_schema(sub, _path=f"{where}[{index}]")
        elif key == "$ref":
            if not isinstance(value, str) or not value.startswith("#"):
                raise ConfigError(f"{where!r}: only local references ('#/$defs/...') are supported")
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError):
                raise ConfigError(f"{where!r} is not a valid regular expression") from None


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    actual = _type_of(value)
    if name == "number":
        return actual in ("integer", "number")
    if name == "integer" and actual == "number":
        return math.isfinite(value) and float(value).is_integer()
    return actual == name


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but True != 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    target: Any = root
    for raw in ref.lstrip("#").split("/"):
        if not raw:
            continue
        # RFC 6901 §4: "~1" is "/", "~0" is "~", decoded in that order.
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or part not in target:
            raise ConfigError(f"schema reference {ref!r} points nowhere")
        target = target[part]
    return target


def _at(path: str) -> str:
    return path or "<root>"


def _errors(  # noqa: PLR0915 - one branch per keyword reads best
    value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int
) -> Iterator[str]:
    if depth > 64:
        yield f"{_at(path)}: schema references nest too deeply"
        return
    if schema is True:
        return
    if schema is False:
        yield f"{_at(path)}: no value is allowed here"
        return
    if "$ref" in schema:
        yield from _errors(value, _resolve(root, schema["$ref"]), root, path, depth + 1)
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_is_type(value, n) for n in names):
            yield f"{_at(path)}: expected {' or '.join(names)}, got {_type_of(value)}"
            return
    if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
        yield f"{_at(path)}: not one of the allowed values"
    if "const" in schema and not _equal(value, schema["const"]):
        yield f"{_at(path)}: not the required constant"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                yield f"{_at(path)}: missing required field {name!r}"
        for name, sub in properties.items():
            if name in value:
                yield from _errors(
                    value[name], sub, root, f"{path}.{name}" if path else name, depth
                )
        extra = schema.get("additionalProperties", True)
        if extra is not True:
            for name in value:
                if name not in properties:
                    where = f"{path}.{name}" if path else name
                    if extra is False:
                        yield f"{_at(where)}: field not allowed"
                    else:
                        yield from _errors(value[name], extra, root, where, depth)
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            yield f"{_at(path)}: fewer than {schema['minProperties']} fields"
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield f"{_at(path)}: more than {schema['maxProperties']} fields"
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(value):
            if index < len(prefix):
                yield from _errors(item, prefix[index], root, f"{path}[{index}]", depth)
            elif "items" in schema:
                yield from _errors(item, schema["items"], root, f"{path}[{index}]", depth)
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield f"{_at(path)}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"{_at(path)}: more than {schema['maxItems']} items"
        if schema.get("uniqueItems"):
            for index, item in enumerate(value):
                if any(_equal(item, other) for other in value[:index]):
                    yield f"{_at(path)}[{index}]: repeats an earlier item"
                    break
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield f"{_at(path)}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"{_at(path)}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            yield f"{_at(path)}: does not match the pattern"
    if _type_of(value) in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            yield f"{_at(path)}: less than {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            yield f"{_at(path)}: more than {schema['maximum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            yield f"{_at(path)}: not more than {schema['exclusiveMinimum']}"
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            yield f"{_at(path)}: not less than {schema['exclusiveMaximum']}"
        step = schema.get("multipleOf")
        if step and not float(value / step).is_integer():
            yield f"{_at(path)}: not a multiple of {step}"
    for sub in schema.get("allOf", ()):
        yield from _errors(value, sub, root, path, depth + 1)
    if "anyOf" in schema and all(_fails(value, s, root, path, depth) for s in schema["anyOf"]):
        yield f"{_at(path)}: matches none of anyOf"
    if "oneOf" in schema:
        matches = sum(not _fails(value, s, root, path, depth) for s in schema["oneOf"])
        if matches != 1:
            yield f"{_at(path)}: matches {matches} of oneOf, not exactly one"
    if "not" in schema and not _fails(value, schema["not"], root, path, depth):
        yield f"{_at(path)}: matches a schema it must not match"


def _fails(value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int) -> bool:
    return next(_errors(value, schema, root, path, depth + 1), None) is not None


def validate(value: Any, schema: Mapping[str, Any] | bool) -> list[str]:
    """Problems with `value` under `schema`, at most ten; empty when it conforms.

    Messages name where and what, never the offending value: responses may carry secrets.
    """
    root = schema if isinstance(schema, Mapping) else {}
    problems: list[str] = []
    for problem in _errors(value, schema, root, "", 0):
        problems.append(problem)
        if len(problems) >= _MAX_ERRORS:
            break
    return problems

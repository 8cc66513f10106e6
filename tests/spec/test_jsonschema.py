"""The built-in JSON Schema validator for response shapes."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether.spec._jsonschema import check_schema, validate

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "tags"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "name": {"type": ["string", "null"], "maxLength": 5},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "uniqueItems": True},
        "kind": {"enum": ["a", "b"]},
        "score": {"anyOf": [{"type": "number", "maximum": 1}, {"const": "n/a"}]},
    },
    "$defs": {"tag": {"type": "string", "pattern": "^[a-z]+$"}},
}


def test_a_conforming_value_has_no_problems() -> None:
    """A value that meets every rule validates."""
    value = {"id": 3, "name": None, "tags": ["x", "y"], "kind": "a", "score": "n/a"}
    assert validate(value, SCHEMA) == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"tags": []}, "<root>: missing required field 'id'"),
        ({"id": 0, "tags": []}, "id: less than 1"),
        ({"id": 1.5, "tags": []}, "id: expected integer, got number"),
        ({"id": True, "tags": []}, "id: expected integer, got boolean"),
        ({"id": 1, "tags": [], "extra": 1}, "extra: field not allowed"),
        ({"id": 1, "tags": ["OK"]}, "tags[0]: does not match the pattern"),
        ({"id": 1, "tags": ["a", "a"]}, "tags[1]: repeats an earlier item"),
        ({"id": 1, "tags": [], "name": "toolong"}, "name: longer than 5 characters"),
        ({"id": 1, "tags": [], "kind": "c"}, "kind: not one of the allowed values"),
        ({"id": 1, "tags": [], "score": 2}, "score: matches none of anyOf"),
    ],
)
def test_each_rule_names_where_it_failed(value: dict[str, Any], problem: str) -> None:
    """A broken rule is reported at its path, without the value itself."""
    assert problem in validate(value, SCHEMA)


def test_integral_floats_are_integers_and_one_of_counts_matches() -> None:
    """2.0 is an integer in JSON Schema; oneOf needs exactly one match."""
    assert validate(2.0, {"type": "integer"}) == []
    one_of = {"oneOf": [{"type": "number"}, {"type": "integer"}]}
    assert validate(1, one_of) == ["<root>: matches 2 of oneOf, not exactly one"]


def test_problems_are_capped() -> None:
    """A huge bad list yields at most ten problems."""
    assert len(validate(list(range(100)), {"items": {"type": "string"}})) == 10


@pytest.mark.parametrize(
    "schema",
    [
        {"if": {"type": "string"}},
        {"type": "text"},
        {"$ref": "https://example.com/schema.json"},
        {"pattern": "("},
        {"allOf": []},
    ],
)
def test_unsupported_or_broken_schemas_are_refused(schema: dict[str, Any]) -> None:
    """Keywords that would not be enforced, bad types, remote refs and bad patterns raise."""
    with pytest.raises(tether.ConfigError):
        check_schema(schema)


def test_annotations_are_accepted() -> None:
    """title, description, format and x- extensions describe; they are allowed."""
    check_schema({"title": "T", "description": "d", "format": "date-time", "x-order": 1})

"""The published JSON Schema and the shipped presets."""

from __future__ import annotations

import json

import pytest

import tether.spec
from tether.spec._jsonschema import validate
from tether.spec._load import preset_document
from tether.spec._schema import SCHEMA_PATH, schema_text
from tether.webhooks import SCHEMES


def test_committed_schema_is_up_to_date() -> None:
    """tether.schema.json matches the models; regenerate with `python -m tether.spec._schema`."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()


def test_schema_marks_secret_keys() -> None:
    """Secret fields carry writeOnly and x-tether-secret, so editors can flag inline values."""
    schema = json.loads(schema_text())
    token = schema["$defs"]["BearerAuth"]["properties"]["token"]
    assert token["writeOnly"] is True
    assert token["x-tether-secret"] is True


def test_the_twelve_presets_are_shipped() -> None:
    """Every preset the issue names is in the package."""
    assert tether.spec.preset_names() == (
        "airnow", "github", "google_calendar", "okta", "openweathermap", "salesforce",
        "sendgrid", "site24x7", "slack", "stripe", "watttime", "zoho",
    )  # fmt: skip


@pytest.mark.parametrize("name", tether.spec.preset_names())
def test_each_preset_names_auth_urls_limits_and_pagination(name: str) -> None:
    """A preset validates and says how to authenticate, where the API is, its documented
    limits, its docs, how to check it, and which endpoints it knows."""
    spec = preset_document(name).model.integrations[name]
    assert spec.auth is not None
    assert spec.base_url or (spec.regions and spec.region in spec.regions)
    assert spec.rate_limit_notes
    assert spec.docs
    assert spec.docs.startswith("https://")
    assert spec.check is not None
    assert spec.endpoints
    for webhook in spec.webhooks.values():
        assert webhook.scheme in SCHEMES


@pytest.mark.parametrize("name", tether.spec.preset_names())
def test_each_preset_validates_against_the_published_schema(name: str) -> None:
    """The preset TOML, as an integration of a spec, conforms to tether.schema.json."""
    schema = json.loads(schema_text())
    document = {"integrations": {name: preset_document(name).data["integrations"][name]}}
    assert validate(document, schema) == []

"""The published JSON Schema of tether.toml, generated from the models.

`python -m tether.spec._schema` rewrites `tether.schema.json` beside this file; a test fails
when the committed file is out of date.
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.spec._model import SpecFile

__all__ = ["SCHEMA_PATH", "schema_text"]

SCHEMA_PATH = Path(__file__).with_name("tether.schema.json")


def schema_text() -> str:
    """The JSON Schema text, as committed."""
    schema = SpecFile.model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "tether.toml",
    }
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")

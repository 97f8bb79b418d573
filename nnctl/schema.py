"""The JSON Schema of an experiment config and of a sweep file, for editors (``nnctl schema [--sweep]``).

yaml-language-server (behind VS Code's YAML extension and other editors' YAML support) reads a file's schema
from a comment, ``# yaml-language-server: $schema=../schemas/config.schema.json``, and then completes keys,
shows each key's description, default and allowed values, and marks unknown keys and wrong values.

The schema is generated from the pydantic models of ``nnctl.config`` and ``nnctl.sweep`` and rewritten as
draft-07, the draft yaml-language-server implements.  pydantic writes draft 2020-12: ``$defs``, ``prefixItems``
for tuples, keywords beside a ``$ref`` (which draft-07 ignores), and OpenAPI's ``discriminator`` beside the
``oneOf`` of a tagged union (the branches' own ``const`` tags already tell them apart).  Rules that tie keys
together (test_fraction + val_fraction below 1, nesterov needs momentum, the last layer against the data's
classes) are left to ``nnctl validate``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from nnctl.config import ExperimentConfig
from nnctl.sweep import SweepConfig

DRAFT_07 = "http://json-schema.org/draft-07/schema#"


class _WithoutFieldTitles(GenerateJsonSchema):
    """pydantic's generator without the titles it makes of field names ("Lr Decay" for ``lr_decay``), which an
    editor would show above each key's description."""

    def field_title_should_be_set(self, schema) -> bool:
        return False


def config_schema() -> dict:
    """The JSON Schema (draft-07) of an experiment config file."""
    return _draft_07(ExperimentConfig, "nnctl experiment config")


def sweep_schema() -> dict:
    """The JSON Schema (draft-07) of a sweep file."""
    return _draft_07(SweepConfig, "nnctl sweep file")


def schema_text(schema: dict) -> str:
    """A schema as ``nnctl schema`` prints it and ``schemas/`` holds it: indented JSON, ASCII, a final newline."""
    return json.dumps(schema, indent=2) + "\n"


def _draft_07(model: type[BaseModel], title: str) -> dict:
    schema = model.model_json_schema(ref_template="#/definitions/{model}", schema_generator=_WithoutFieldTitles)
    definitions = schema.pop("$defs", {})
    del schema["title"]  # the class name; the schema gets a title of its own
    return {
        "$schema": DRAFT_07,
        "title": title,
        **_as_draft_07(schema),
        "definitions": {name: _as_draft_07(definition) for name, definition in definitions.items()},
    }


def _as_draft_07(node: Any) -> Any:
    """``node`` with the draft 2020-12 and OpenAPI keywords pydantic writes replaced by their draft-07 forms."""
    if isinstance(node, list):
        return [_as_draft_07(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _as_draft_07(value) for key, value in node.items()}
    if "oneOf" in node:
        node.pop("discriminator", None)
    if "prefixItems" in node:  # a tuple: draft-07 lists its items' schemas in "items", the rest in "additionalItems"
        if "items" in node:
            node["additionalItems"] = node.pop("items")
        node["items"] = node.pop("prefixItems")
    if "$ref" in node and len(node) > 1:  # a $ref's siblings (description, default) count only beside an allOf
        node["allOf"] = [{"$ref": node.pop("$ref")}]
    return node

"""``nnctl schema``: the committed JSON Schemas are what the command prints, every shipped file validates against
its schema under draft-07 (as yaml-language-server reads it), and the schema rejects what nnctl rejects: unknown
keys at any depth, values outside an enum, the wrong keys for a tagged union's branch."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml
from jsonschema import Draft7Validator

from conftest import CONFIGS, REPO, nnctl, nnctl_in_process
from nnctl.config import config_from_text, validate_section
from nnctl.errors import ConfigError
from nnctl.sweep import SweepConfig
from nnctl.yamlio import Locations, read_yaml

SCHEMAS = REPO / "schemas"
CONFIG_SCHEMA = json.loads((SCHEMAS / "config.schema.json").read_text())
SWEEP_SCHEMA = json.loads((SCHEMAS / "sweep.schema.json").read_text())
SHIPPED_CONFIGS = sorted(CONFIGS.glob("*.yaml")) + sorted((REPO / "examples").glob("*/*.yaml"))
SHIPPED_SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
SPIRAL = read_yaml(CONFIGS / "spiral.yaml")[0]
SWEEP = read_yaml(REPO / "sweeps" / "activations.yaml")[0]


def errors(schema: dict, document) -> list[str]:
    return [error.message for error in Draft7Validator(schema).iter_errors(document)]


def nodes(node):
    """Every mapping inside a schema, the schema itself first."""
    if isinstance(node, dict):
        yield node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return
    for child in children:
        yield from nodes(child)


# --------------------------------------------------------------------------- the committed files


def test_committed_schemas_are_what_nnctl_schema_writes(tmp_path):
    printed = nnctl("schema")
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr
    assert printed.stdout == (SCHEMAS / "config.schema.json").read_text(), "run: nnctl schema --out schemas/config.schema.json"

    written = nnctl("schema", "--sweep", "--out", tmp_path / "sweep.json")
    assert written.returncode == 0, written.stderr
    assert written.stdout == "" and str(tmp_path / "sweep.json") in written.stderr
    assert (tmp_path / "sweep.json").read_text() == (SCHEMAS / "sweep.schema.json").read_text(), (
        "run: nnctl schema --sweep --out schemas/sweep.schema.json"
    )


def test_a_file_that_cannot_be_written_is_one_line_and_exit_2(tmp_path):
    for out in (tmp_path / "missing" / "schema.json", tmp_path):
        result = nnctl_in_process("schema", "--out", out)
        assert result.returncode == 2, result
        assert result.stderr.startswith(f"error: {out}: cannot write: ") and len(result.stderr.splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# ------------------------------------------------------------------------------ draft-07 as such


@pytest.mark.parametrize("schema", [CONFIG_SCHEMA, SWEEP_SCHEMA], ids=["config", "sweep"])
def test_the_schemas_are_draft_07_without_later_keywords(schema):
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#" and schema["title"] and "$id" not in schema
    for node in nodes(schema):
        assert not {"$defs", "prefixItems", "discriminator"} & set(node), node
        if "$ref" in node:
            assert len(node) == 1, f"draft-07 ignores the siblings of a $ref: {node}"
            name = node["$ref"].removeprefix("#/definitions/")
            assert name in schema["definitions"], node


@pytest.mark.parametrize("schema", [CONFIG_SCHEMA, SWEEP_SCHEMA], ids=["config", "sweep"])
def test_every_key_has_a_description_and_unknown_keys_are_refused(schema):
    undescribed, open_ended = [], []
    for node in nodes(schema):
        if "properties" in node:
            undescribed += [key for key, prop in node["properties"].items() if not prop.get("description")]
            if node.get("additionalProperties") is not False:
                open_ended.append(sorted(node["properties"]))
    assert undescribed == [] and open_ended == []


# ----------------------------------------------------------------- what the shipped files and docs use


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_names_the_schema_and_validates(path):
    first = path.read_text().splitlines()[0]
    reference = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert reference and (path.parent / reference[1]).resolve() == SCHEMAS / "config.schema.json", first
    assert errors(CONFIG_SCHEMA, read_yaml(path)[0]) == []


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_sweep_names_the_schema_and_validates(path):
    first = path.read_text().splitlines()[0]
    reference = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert reference and (path.parent / reference[1]).resolve() == SCHEMAS / "sweep.schema.json", first
    assert errors(SWEEP_SCHEMA, read_yaml(path)[0]) == []


def test_the_yaml_examples_of_the_docs_and_resolved_configs_validate():
    """The README's and docs' examples, and a resolved config (what ``nnctl validate`` prints and a run folder
    holds: every default written out, activations as bare names)."""
    documents = [
        yaml.safe_load(block)
        for doc in (REPO / "README.md", REPO / "docs" / "experiments.md")
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)
    ]
    assert len(documents) >= 3
    for document in documents:
        assert errors(SWEEP_SCHEMA if "parameters" in document else CONFIG_SCHEMA, document) == [], document
    for path in SHIPPED_CONFIGS:
        resolved = config_from_text(path.read_text(), str(path)).config.to_dict()
        assert errors(CONFIG_SCHEMA, resolved) == [], path.name


DELETE = object()


def changed(document: dict, path: str, value) -> dict:
    """A copy of ``document`` with the key at the dotted ``path`` set to ``value``, or removed for DELETE."""
    document = copy.deepcopy(document)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    node = document
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return document


WITH_VALIDATION = changed(SPIRAL, "data.val_fraction", 0.2)

ACCEPTED = {
    "activation by name": ("model.layers.0.activation", "relu"),
    "activation with a parameter": ("model.layers.0.activation", {"name": "leaky_relu", "slope": 0.2}),
    "elu's alpha": ("model.layers.0.activation", {"name": "elu", "alpha": 0.5}),
    "activation layer": ("model.layers.1", {"type": "activation", "name": "leaky_relu", "slope": 0.2}),
    "an mlp with its type written out": ("model.type", "mlp"),
    **{f"lr_schedule {name} by name": ("training.lr_schedule", name) for name in ("constant", "step", "exponential", "cosine", "reduce_on_plateau")},
    "lr_schedule with parameters": ("training.lr_schedule", {"type": "cosine", "min_lr": 0.001, "period": 50}),
    "early stopping": ("training.early_stopping", {"monitor": "val_accuracy", "mode": "max", "patience": 5, "restore_best": True}),
    "adam's betas": ("optimizer", {"name": "adamw", "lr": 0.01, "betas": [0.8, 0.99]}),
    "threads as a number": ("training.threads", 2),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_shorthands_nnctl_accepts_validate(case):
    document = changed(WITH_VALIDATION, *ACCEPTED[case])
    config_from_text(yaml.safe_dump(document), "case.yaml")  # nnctl takes it
    assert errors(CONFIG_SCHEMA, document) == []


# -------------------------------------------------------------------------------------- rejections
# Each case changes one key of a file that validates, so the schema refuses it for that change.

REFUSED = {
    "typo at the top level": changed(SPIRAL, "optimizer", DELETE) | {"optimzer": SPIRAL["optimizer"]},
    "typo inside a layer": changed(SPIRAL, "model.layers.0.unitz", 16),
    "typo inside an activation": changed(SPIRAL, "model.layers.0.activation", {"name": "leaky_relu", "slop": 0.2}),
    "another optimizer's key": changed(SPIRAL, "optimizer.betas", [0.9, 0.99]),
    "another dataset's key": changed(SPIRAL, "data.fn", "sin"),
    "an mlp's keys on a perceptron": changed(SPIRAL, "model.type", "perceptron"),
    "unknown activation": changed(SPIRAL, "model.layers.0.activation", "tanhh"),
    "unknown layer type": changed(SPIRAL, "model.layers.1.type", "conv"),
    "unknown loss": changed(SPIRAL, "loss", "mae"),
    "unknown init": changed(SPIRAL, "model.init", "glorot"),
    "unknown dataset": changed(SPIRAL, "data.dataset", "spirals"),
    "unknown feature": changed(SPIRAL, "data.features", ["x1", "x3"]),
    "unknown schedule by name": changed(SPIRAL, "training.lr_schedule", "cosin"),
    "three betas": changed(SPIRAL, "optimizer", {"name": "adam", "betas": [0.9, 0.99, 0.5]}),
    "negative learning rate": changed(SPIRAL, "optimizer.lr", -0.1),
    "missing data": changed(SPIRAL, "data", DELETE),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_config_schema_refuses_what_nnctl_refuses(case):
    with pytest.raises(ConfigError):
        config_from_text(yaml.safe_dump(REFUSED[case]), "case.yaml")
    assert errors(CONFIG_SCHEMA, REFUSED[case]), f"the schema accepts {case}"


def reasons(found) -> list[tuple[str, str]]:
    """(dotted path, message) of every error and, recursively, of the branches of a oneOf or anyOf that failed."""
    return [
        pair for error in found for pair in [(".".join(map(str, error.absolute_path)), error.message), *reasons(error.context)]
    ]


def test_a_typo_is_named_where_it_is():
    """What an editor can underline: the unknown key, also inside the union branch that the tag selects."""
    unexpected = "Additional properties are not allowed ('{}' was unexpected)"
    assert reasons(Draft7Validator(CONFIG_SCHEMA).iter_errors(REFUSED["typo at the top level"])) == [("", unexpected.format("optimzer"))]
    assert ("model.layers.0", unexpected.format("unitz")) in reasons(Draft7Validator(CONFIG_SCHEMA).iter_errors(REFUSED["typo inside a layer"]))


SWEEP_REFUSED = {
    "typo at the top level": changed(SWEEP, "parameters", DELETE) | {"paramters": SWEEP["parameters"]},
    "typo in the executor": changed(SWEEP, "executor.worker", 2),
    "unknown method": changed(SWEEP, "method", "bayes"),
    "unknown distribution": {**SWEEP, "method": "random", "trials": 4, "parameters": {"optimizer.lr": {"distribution": "normal", "low": 0.01, "high": 1}}},
    "a bare value for a parameter": changed(SWEEP, "parameters", {"optimizer.lr": 0.1}),
}


@pytest.mark.parametrize("case", list(SWEEP_REFUSED))
def test_the_sweep_schema_refuses_what_nnctl_refuses(case):
    with pytest.raises(ConfigError):
        validate_section(SweepConfig, SWEEP_REFUSED[case], Locations("case.yaml"))
    assert errors(SWEEP_SCHEMA, SWEEP_REFUSED[case]), f"the schema accepts {case}"

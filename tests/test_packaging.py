"""The extras: one per optional feature, every one that an error message names exists, and `all` holds them all."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_FEATURES = {"all", "test", "dev", "bench"}


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_every_extra_a_message_names_exists_and_all_holds_every_feature():
    declared = extras()
    features = set(declared) - NOT_FEATURES
    named = set()
    for path in (ROOT / "nnctl").rglob("*.py"):
        text = path.read_text()
        named |= set(re.findall(r"nnctl\[([a-z]+)\]", text))
        named |= {name for name in features if f'"{name}"' in text and "pip install" in text}  # messages built with {extra}
    assert named and named <= features, named - features
    assert {"plot", "dask", "optuna", "web", "onnx", "safetensors", "tensorboard"} <= features
    (holder,) = declared["all"]
    assert set(re.fullmatch(r"nnctl\[([a-z,]+)\]", holder).group(1).split(",")) == features
    assert "nnctl[all]" in declared["test"]  # the tests need every feature

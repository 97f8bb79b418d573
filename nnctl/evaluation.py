"""``nnctl eval``: rebuild a run's model from its config and checkpoint, and score a data split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from nnctl import build
from nnctl.config import LoadedConfig, config_from_text, load_config
from nnctl.data import Dataset, load_data
from nnctl.engine.model import Sequential
from nnctl.errors import NnctlError
from nnctl.data.preprocess import Preprocessor
from nnctl.metrics import Head
from nnctl.runs import RunFolder, is_run_dir, load_checkpoint, read_json


@dataclass
class Restored:
    loaded: LoadedConfig
    data: Dataset
    model: Sequential
    preprocessor: Preprocessor
    head: Head
    checkpoint: Path
    meta: dict


def find_checkpoint(run_dir: Path) -> Path:
    """The checkpoint summary.json's test metrics were computed with; without a summary, best then last."""
    run = RunFolder(run_dir)
    if run.summary_path.exists():
        checkpoint = run.path / read_json(run.summary_path).get("checkpoint", "checkpoints/last.npz")
        if checkpoint.exists():
            return checkpoint
    for which in ("best", "last"):
        if run.checkpoint(which).exists():
            return run.checkpoint(which)
    raise NnctlError(f"{run_dir}: the run has no checkpoint yet (checkpoints/last.npz is missing)")


def restore(target: str | Path) -> Restored:
    """From a run folder (its config.yaml and chosen checkpoint) or a checkpoint file (its embedded config)."""
    target = Path(target)
    if target.is_dir():
        if not is_run_dir(target):
            raise NnctlError(f"{target}: not a run folder (no run.json and config.yaml); give a run folder or a .npz checkpoint")
        checkpoint = find_checkpoint(target)
        arrays, meta = load_checkpoint(checkpoint)
        loaded = load_config(target / "config.yaml")
    elif target.is_file():
        checkpoint = target
        arrays, meta = load_checkpoint(checkpoint)
        loaded = config_from_text(yaml.safe_dump(meta.get("config")), f"{checkpoint} (embedded config)")
    else:
        raise NnctlError(f"{target}: no such run folder or checkpoint")
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    config = loaded.config
    model = build.build_model(config, data.n_features, config.seed)
    model.load_state_dict(model_state(arrays, model, checkpoint))
    preprocessor = Preprocessor(
        config.data.normalize, {name.removeprefix("preprocess/"): a for name, a in arrays.items() if name.startswith("preprocess/")}
    )
    head = Head(data.task, config.loss, build.output_units(config.model, data.n_features), classic=config.is_classic)
    return Restored(loaded, data, model, preprocessor, head, checkpoint, meta)


def model_state(arrays: dict[str, np.ndarray], model: Sequential, checkpoint: Path) -> dict[str, np.ndarray]:
    """The ``model/`` arrays of a checkpoint, checked against the model's names and shapes."""
    state = {name.removeprefix("model/"): value for name, value in arrays.items() if name.startswith("model/")}
    expected = model.state_dict()
    problems = [f"{name} missing" for name in expected if name not in state]
    problems += [f"{name} unexpected" for name in state if name not in expected]
    problems += [
        f"{name} has shape {state[name].shape}, the model needs {value.shape}"
        for name, value in expected.items()
        if name in state and state[name].shape != value.shape
    ]
    problems += [
        f"{name} has dtype {state[name].dtype}, not a float array"
        for name in expected
        if name in state and state[name].dtype.kind != "f"
    ]
    if problems:
        raise NnctlError(f"{checkpoint}: does not match the config's model: {'; '.join(problems)}")
    return state


def evaluate_split(restored: Restored, split_name: str) -> dict:
    split = restored.data.split(split_name)
    if split is None:
        raise NnctlError(f"the run has no {split_name} split (its fraction is 0); try --split train")
    metrics = restored.head.evaluate(restored.model, restored.preprocessor.apply(split.x), split.y)
    return {f"{split_name}_{key}": value for key, value in metrics.items()}

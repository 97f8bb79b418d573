"""Rebuild a trained model from a run folder or a checkpoint: for ``nnctl eval`` and ``nnctl predict``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl import build
from nnctl.config import LoadedConfig, load_config
from nnctl.data import load_data
from nnctl.data.preprocess import Preprocessor
from nnctl.engine.model import Sequential
from nnctl.errors import NnctlError
from nnctl.metrics import Head
from nnctl.resume import checkpoint_config, describe_differences, unsafe_differences
from nnctl.runs import RunFolder, is_run_dir, load_checkpoint


@dataclass
class Restored:
    loaded: LoadedConfig
    model: Sequential
    preprocessor: Preprocessor
    head: Head
    checkpoint: Path
    meta: dict


CHECKPOINTS = ("checkpoints/last.npz", "checkpoints/best.npz")


def find_checkpoint(run_dir: Path, which: str | None = None) -> Path:
    """``checkpoints/<which>.npz`` (last or best) when asked for; by default the checkpoint summary.json's
    test metrics were computed with, and without a summary (a run still going, or killed), the final weights
    (last.npz)."""
    run = RunFolder(run_dir)
    if which is not None:
        if not run.checkpoint(which).is_file():
            why = " (a best checkpoint is kept with training.select_best or early_stopping.restore_best)" if which == "best" else ""
            raise NnctlError(f"{run_dir}: the run has no checkpoints/{which}.npz{why}")
        return run.checkpoint(which)
    summary = run.read_summary()
    if summary is not None and "checkpoint" in summary:
        if summary["checkpoint"] not in CHECKPOINTS:
            raise NnctlError(f"{run.summary_path}: checkpoint: {summary['checkpoint']!r} is not allowed; allowed: {', '.join(CHECKPOINTS)}")
        if (run.path / summary["checkpoint"]).is_file():
            return run.path / summary["checkpoint"]
    if run.checkpoint("last").is_file():
        return run.checkpoint("last")
    raise NnctlError(f"{run_dir}: the run has no checkpoint yet (checkpoints/last.npz is missing)")


def check_run_config(run_dir: Path, trained: LoadedConfig) -> None:
    """A run's config.yaml must say what its checkpoint was trained with: an edited seed, say, would
    silently score another split.  Only the keys that resume --force may change are allowed to differ."""
    edited = load_config(Path(run_dir) / "config.yaml")  # reports a broken edit with its line
    differences = unsafe_differences(trained, edited)
    if differences:
        raise NnctlError(
            f"{Path(run_dir) / 'config.yaml'}: differs from the config its checkpoint was trained with "
            f"({describe_differences(differences)}); restore it, or give the checkpoint file to use the config inside it"
        )


def restore(target: str | Path, which: str | None = None) -> Restored:
    """From a run folder (its chosen checkpoint, or ``which``: last or best) or a checkpoint file, always with
    the config the checkpoint was trained with (embedded in it).  Needs no training data: the checkpoint's
    metadata says what the inputs and outputs are."""
    target = Path(target)
    if target.is_dir():
        if not is_run_dir(target):
            raise NnctlError(f"{target}: not a run folder (no run.json and config.yaml); give a run folder or a .npz checkpoint")
        checkpoint = find_checkpoint(target, which)
        arrays, meta = load_checkpoint(checkpoint)
        loaded = checkpoint_config(checkpoint, meta)
        check_run_config(target, loaded)
    elif target.is_file():
        if which is not None:
            raise NnctlError(f"{target}: is a checkpoint file already; choosing one ({which}) needs a run folder")
        checkpoint = target
        arrays, meta = load_checkpoint(checkpoint)
        loaded = checkpoint_config(checkpoint, meta)
    else:
        raise NnctlError(f"{target}: no such run folder or checkpoint")
    config = loaded.config
    try:
        n_features, task = int(meta["n_features"]), meta["task"]
    except (KeyError, TypeError, ValueError):
        raise NnctlError(f"{checkpoint}: the checkpoint's metadata lacks n_features/task (written by another version?)") from None
    model = build.build_model(config, n_features, config.seed)
    model.load_state_dict(model_state(arrays, model, checkpoint))
    preprocessor = Preprocessor(config.data.normalize, preprocess_state(arrays, config.data.normalize, n_features, checkpoint))
    head = Head(task, config.loss, build.output_units(config.model, n_features), classic=config.is_classic)
    return Restored(loaded, model, preprocessor, head, checkpoint, meta)


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


#: the arrays each normalization is fitted to (``data.preprocess``)
PREPROCESS_ARRAYS = {"none": (), "standard": ("shift", "scale"), "minmax": ("shift", "scale"), "pca_whiten": ("shift", "rotation", "scale")}


def preprocess_state(arrays: dict[str, np.ndarray], kind: str, n_features: int, checkpoint: Path) -> dict[str, np.ndarray]:
    """The ``preprocess/`` arrays of a checkpoint, checked against the normalization its config names and the
    model's inputs: shift and scale of one value per input, pca_whiten's rotation square."""
    state = {name.removeprefix("preprocess/"): value for name, value in arrays.items() if name.startswith("preprocess/")}
    shapes = {"shift": (n_features,), "scale": (n_features,), "rotation": (n_features, n_features)}
    expected = {name: shapes[name] for name in PREPROCESS_ARRAYS[kind]}
    problems = [f"preprocess/{name} missing" for name in expected if name not in state]
    problems += [f"preprocess/{name} unexpected" for name in state if name not in expected]
    problems += [
        f"preprocess/{name} has shape {state[name].shape}, the model needs {shape}"
        for name, shape in expected.items()
        if name in state and state[name].shape != shape
    ]
    problems += [f"preprocess/{name} has dtype {state[name].dtype}, not a float array" for name in expected if name in state and state[name].dtype.kind != "f"]
    if problems:
        raise NnctlError(f"{checkpoint}: does not match the config's normalize: {kind}: {'; '.join(problems)}")
    return state


SPLITS = ("test", "val", "train")


def evaluate_split(restored: Restored, split_name: str) -> dict:
    """Recompute the split exactly as training did (same data seed) and score the model on it."""
    data = load_data(restored.loaded)
    build.check_model_fits_data(restored.loaded, data)
    split = data.split(split_name)
    if split is None:
        raise NnctlError(f"the run has no {split_name} split (its fraction is 0); try --split train")
    metrics = restored.head.evaluate(restored.model, restored.preprocessor.apply(split.x), split.y)
    return {f"{split_name}_{key}": value for key, value in metrics.items()}

"""``nnctl predict``: a trained model applied to new rows from a CSV or NPZ file.

The rows are prepared exactly as in training: the same columns in the same order (the Playground's
features computed from x1, x2), the stored normalization, images flattened.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.data import class_name, files, playground
from nnctl.engine.losses import softmax
from nnctl.errors import NnctlError
from nnctl.evaluation import Restored
from nnctl.metrics import forward_in_chunks


@dataclass
class Predictions:
    values: list  # class names, or numbers for regression
    probabilities: np.ndarray | None  # (rows, classes) with --proba
    score: dict | None  # accuracy or mse when the input had targets


def read_inputs(restored: Restored, path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw feature rows (and targets, when the file has them) in the model's input layout."""
    meta = restored.meta
    n_features = meta["n_features"]
    unknown = sorted(set(meta.get("playground_features") or ()) - set(playground.FEATURE_FUNCTIONS))
    if unknown:
        raise NnctlError(f"{restored.checkpoint}: not a valid checkpoint: unknown Playground feature {unknown[0]!r}")
    image_shape = tuple(meta["image_shape"]) if meta.get("image_shape") else None
    if path.suffix.lower() == ".npz":
        data = restored.loaded.config.data
        x_key = getattr(data, "x", "x")
        _, names = files.read_npz_arrays(path, [])  # the names only: nothing is read yet
        y_key = next((name for name in (target, getattr(data, "y", None), *TARGET_NAMES) if name in names and name != x_key), None)
        table = files.read_npz(path, x_key, y_key)
        if table.x.ndim == 3:
            height, width = table.x.shape[1:]
            if image_shape is None:
                raise NnctlError(
                    f"{path}: array {x_key!r} has shape {table.x.shape}: images, but the model was trained on rows of "
                    f"{n_features} features; give an array of shape (rows, {n_features})"
                )
            if (height, width) != image_shape:
                raise NnctlError(
                    f"{path}: array {x_key!r} holds images of {height}x{width} pixels; the model was trained on "
                    f"{image_shape[0]}x{image_shape[1]}"
                )
        x, y = table.x.reshape(len(table.x), -1), (table.y if y_key else None)
        if meta.get("playground_features") is not None and x.shape[1] == 2:  # raw points (x1, x2)
            x = playground.make_features(x.astype(np.float64), meta["playground_features"])
    else:
        columns = meta.get("input_columns")
        if not columns:
            raise NnctlError(f"{restored.checkpoint}: the checkpoint does not list the columns its model reads; predict from an .npz file")
        delimiter = getattr(restored.loaded.config.data, "delimiter", ",")
        header = files.read_csv_header(path, delimiter)
        present, wanted = set(header), set(columns)
        missing = [name for name in columns if name not in present]
        if missing:
            raise NnctlError(
                f"{path}: missing column(s) {files.shorten([repr(name) for name in missing])}; the model reads "
                f"{files.shorten(columns)} (got {files.shorten(header) or 'no header'})"
            )
        # a column the model reads is never the target (a feature named y would be scored against)
        target = next((name for name in (target, *TARGET_NAMES) if name in present and name not in wanted), None)
        table = files.read_csv(path, target, columns, delimiter)
        x, y = table.x, (table.y if target else None)
        if meta.get("playground_features") is not None:
            x = playground.make_features(x.astype(np.float64), meta["playground_features"])
    if x.shape[1] != n_features:
        raise NnctlError(f"{path}: rows have {x.shape[1]} values; the model takes {n_features}")
    return x, y


TARGET_NAMES = ("label", "target", "y")


def predict(restored: Restored, path: str | Path, with_proba: bool = False, target: str | None = None) -> Predictions:
    """``target``: the column (CSV) or array (NPZ) holding known targets, if the file has them; by default
    the training CSV's target column, else the first of label, target, y that the file has."""
    path = Path(path)
    config = restored.loaded.config
    x, y = read_inputs(restored, path, target or getattr(config.data, "target", None))
    output = forward_in_chunks(restored.model, restored.preprocessor.apply(x))
    head, classes = restored.head, restored.meta.get("class_names") or []
    probabilities = None
    if with_proba:
        if head.task != "classification" or head.classic or config.loss != "cross_entropy":
            raise NnctlError("--proba needs a classifier trained with loss: cross_entropy (its softmax gives probabilities)")
        probabilities = softmax(output.astype(np.float64))
    predicted = head.predict(output)
    if head.task == "classification":
        outputs = output.shape[1] if output.shape[1] > 1 else 2  # one output: two classes
        if len(classes) != outputs:
            raise NnctlError(
                f"{restored.checkpoint}: not a valid checkpoint: it names {len(classes)} classes for a model of {outputs} class outputs"
            )
        values = [classes[i] for i in predicted]
    else:
        values = [float(v) for v in predicted]
    score = None
    if y is not None and len(y):
        if head.task == "classification":
            truth = [class_name(v) for v in y]
            score = {"accuracy": float(np.mean([p == t for p, t in zip(values, truth)])), "rows": len(values)}
        else:
            try:
                truth = y.astype(np.float64)
            except ValueError:
                raise NnctlError(f"{path}: the target column holds text; this model predicts numbers") from None
            score = {"mse": float(np.mean((np.array(values) - truth) ** 2)), "rows": len(values)}
    return Predictions(values, probabilities, score)


def to_csv(predictions: Predictions, class_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["prediction"] + ([f"p_{name}" for name in class_names] if predictions.probabilities is not None else [])
    writer.writerow(header)
    for i, value in enumerate(predictions.values):
        row = [value if isinstance(value, str) else repr(value)]
        if predictions.probabilities is not None:
            row += [f"{p:.6g}" for p in predictions.probabilities[i]]
        writer.writerow(row)
    return buffer.getvalue()

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
    """The rows of a CSV or NPZ file in the model's input layout (``model_inputs``), and their targets when the
    file has them."""
    meta = restored.meta
    if path.suffix.lower() == ".npz":
        data = restored.loaded.config.data
        x_key = getattr(data, "x", "x")
        _, names = files.read_npz_arrays(path, [])  # the names only: nothing is read yet
        y_key = next((name for name in (target, getattr(data, "y", None), *TARGET_NAMES) if name in names and name != x_key), None)
        table = files.read_npz(path, x_key, y_key)
        return model_inputs(restored, table.x, f"{path}: array {x_key!r}"), (table.y if y_key else None)
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
    return model_inputs(restored, table.x, str(path)), (table.y if target else None)


def model_inputs(restored: Restored, x: np.ndarray, where: str) -> np.ndarray:
    """Rows of raw inputs (float32, as ``files.feature_array`` gives them) as the model takes them: images
    (rows, height, width) flattened, the Playground's features computed from raw points (x1, x2).
    ``where`` names the rows in errors."""
    meta = restored.meta
    n_features = meta["n_features"]
    unknown = sorted(set(meta.get("playground_features") or ()) - set(playground.FEATURE_FUNCTIONS))
    if unknown:
        raise NnctlError(f"{restored.checkpoint}: not a valid checkpoint: unknown Playground feature {unknown[0]!r}")
    if x.ndim == 3:
        image_shape = tuple(meta["image_shape"]) if meta.get("image_shape") else None
        if image_shape is None:
            raise NnctlError(
                f"{where} has shape {x.shape}: images, but the model was trained on rows of "
                f"{n_features} features; give an array of shape (rows, {n_features})"
            )
        if x.shape[1:] != image_shape:
            raise NnctlError(f"{where} holds images of {x.shape[1]}x{x.shape[2]} pixels; the model was trained on {image_shape[0]}x{image_shape[1]}")
        x = x.reshape(len(x), -1)
    if meta.get("playground_features") is not None and x.shape[1] == 2:  # raw points (x1, x2)
        x = playground.make_features(x.astype(np.float64), meta["playground_features"])
    if x.shape[1] != n_features:
        raise NnctlError(f"{where}: rows have {x.shape[1]} values; the model takes {n_features}")
    return x


TARGET_NAMES = ("label", "target", "y")


def predict(restored: Restored, path: str | Path, with_proba: bool = False, target: str | None = None) -> Predictions:
    """``nnctl predict``: the rows of a CSV or NPZ file.  ``target``: the column (CSV) or array (NPZ) holding
    known targets, if the file has them; by default the training CSV's target column, else the first of label,
    target, y that the file has."""
    path = Path(path)
    x, y = read_inputs(restored, path, target or getattr(restored.loaded.config.data, "target", None))
    return predict_rows(restored, x, y, with_proba, path)


def predict_rows(restored: Restored, x: np.ndarray, y: np.ndarray | None = None, with_proba: bool = False, source="") -> Predictions:
    """Predictions for rows in the model's input layout (``model_inputs``); scored when targets ``y`` are given
    (``source`` names where they came from)."""
    config = restored.loaded.config
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
                raise NnctlError(f"{source}: the target column holds text; this model predicts numbers") from None
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

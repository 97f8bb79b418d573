"""From network outputs to loss targets, predictions and the metrics a run reports."""

from __future__ import annotations

import numpy as np

from nnctl.engine.losses import Loss
from nnctl.engine.model import Sequential

#: rows per forward pass when evaluating (bounded memory, and the same chunks in training and ``eval``)
EVAL_BATCH = 4096


def loss_targets(y: np.ndarray, loss_name: str, output_units: int, task: str) -> np.ndarray:
    """What the loss compares the output with: class indices for cross-entropy; for mse the targets
    themselves (regression), -1/+1 (one output, two classes) or one-hot rows (one output per class)."""
    if task == "regression":
        return y.astype(np.float32).reshape(-1, 1)
    if loss_name == "cross_entropy":
        return y
    if output_units == 1:
        return (2.0 * y - 1.0).astype(np.float32).reshape(-1, 1)
    return np.eye(output_units, dtype=np.float32)[y]


def predict_classes(output: np.ndarray) -> np.ndarray:
    if output.shape[1] == 1:
        return (output[:, 0] >= 0).astype(np.int64)
    return output.argmax(axis=1)


def forward_in_chunks(model: Sequential, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.forward(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def evaluate(model: Sequential, loss: Loss, x: np.ndarray, y: np.ndarray, targets: np.ndarray, task: str) -> dict:
    """Loss and accuracy (classification) or loss, MAE and R^2 (regression), in evaluation mode."""
    output = forward_in_chunks(model, x)
    metrics = {"loss": loss.forward(output, targets)}
    if task == "classification":
        metrics["accuracy"] = float(np.mean(predict_classes(output) == y))
    else:
        prediction = output[:, 0].astype(np.float64)
        truth = y.astype(np.float64)
        metrics["mae"] = float(np.mean(np.abs(prediction - truth)))
        total = float(np.sum((truth - truth.mean()) ** 2))
        metrics["r2"] = 1.0 - float(np.sum((prediction - truth) ** 2)) / total if total > 0 else float("nan")
    return metrics

"""How a run's network outputs relate to its labels: loss targets, predictions and metrics."""

from __future__ import annotations

import numpy as np

from nnctl.engine.losses import LOSSES
from nnctl.engine.model import Sequential

#: rows per forward pass when evaluating (bounded memory, and the same chunks in training and ``eval``)
EVAL_BATCH = 4096


class Head:
    """The output side of a run.

    - classification, cross-entropy: one output per class (logits), targets are class indices;
    - classification, mse: one output per class with one-hot targets, or one output with -1/+1 targets;
    - regression: one output, mse on the targets;
    - threshold models (McCulloch-Pitts, perceptron): one 0/1 output; the loss is the 0-1 loss,
      the fraction of wrong outputs, since these models have no differentiable loss.
    """

    def __init__(self, task: str, loss_name: str, output_units: int, classic: bool = False):
        self.task = task
        self.output_units = output_units
        self.classic = classic
        self.loss = None if classic else LOSSES[loss_name]()

    def targets(self, y: np.ndarray) -> np.ndarray:
        if self.classic:
            return y
        if self.task == "regression":
            return y.astype(np.float32).reshape(-1, 1)
        if self.loss.name == "cross_entropy":
            return y
        if self.output_units == 1:
            return (2.0 * y - 1.0).astype(np.float32).reshape(-1, 1)
        return np.eye(self.output_units, dtype=np.float32)[y]

    def predict(self, output: np.ndarray) -> np.ndarray:
        """Class indices (classification) or values (regression) from the network's output."""
        if self.task == "regression":
            return output[:, 0]
        if output.shape[1] > 1:
            return output.argmax(axis=1)
        return (output[:, 0] >= (0.5 if self.classic else 0.0)).astype(np.int64)

    def loss_value(self, output: np.ndarray, targets: np.ndarray) -> float:
        if self.classic:
            return float(np.mean(self.predict(output) != targets))
        return self.loss.forward(output, targets)

    def evaluate(self, model: Sequential, x: np.ndarray, y: np.ndarray) -> dict:
        """Loss and accuracy (classification) or loss, MAE and R^2 (regression), in evaluation mode."""
        output = forward_in_chunks(model, x)
        metrics = {"loss": self.loss_value(output, self.targets(y))}
        if self.task == "classification":
            metrics["accuracy"] = float(np.mean(self.predict(output) == y))
        else:
            prediction = output[:, 0].astype(np.float64)
            truth = y.astype(np.float64)
            metrics["mae"] = float(np.mean(np.abs(prediction - truth)))
            total = float(np.sum((truth - truth.mean()) ** 2))
            metrics["r2"] = 1.0 - float(np.sum((prediction - truth) ** 2)) / total if total > 0 else float("nan")
        return metrics


def forward_in_chunks(model: Sequential, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.forward(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])

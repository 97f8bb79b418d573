"""Losses: ``forward(output, target) -> scalar loss`` and ``backward() -> dL/d(output)``.

Both average over the batch, L = 1/N sum_i L_i (lecture slide 9), so a gradient step does not
depend on the batch size.
"""

from __future__ import annotations

import numpy as np


class Loss:
    name = ""

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax(z)_k = z_k - log sum_j e^{z_j}, shifted by max z first (log-sum-exp) so e^z never overflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


class SoftmaxCrossEntropy(Loss):
    """L = -1/N sum_i log softmax(z_i)[t_i] for integer class targets t; dL/dz = (softmax(z) - onehot(t)) / N.

    The loss takes raw scores (logits), like ``torch.nn.CrossEntropyLoss``: the last layer has no activation.
    Forward computes the softmax once and keeps it for backward; with s = z - max z (log-sum-exp shift),
    L = mean(log sum_j e^{s_j} - s_t).  (``np.add.reduce`` and friends are called directly: the
    ``np.sum``/``mean`` wrappers cost more than the arithmetic on a Playground-sized batch.)
    """

    name = "cross_entropy"

    def __init__(self):
        self._rows: dict[int, np.ndarray] = {}

    def forward(self, logits, target):
        n = len(target)
        rows = self._rows.get(n)
        if rows is None:
            rows = self._rows[n] = np.arange(n)
        shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        total = np.add.reduce(probabilities, axis=1, keepdims=True)
        loss = (np.add.reduce(np.log(total), axis=None) - np.add.reduce(shifted[rows, target])) / n
        probabilities /= total
        self._cache = (probabilities, rows, target)
        return float(loss)

    def backward(self):
        grad, rows, target = self._cache  # the softmax, used once: modified in place
        grad[rows, target] -= 1
        grad *= grad.dtype.type(1 / len(target))
        return grad


class MeanSquaredError(Loss):
    """L = 1/(N K) sum (o - t)^2 over N rows and K outputs (``torch.nn.MSELoss``); dL/do = 2 (o - t) / (N K).

    The Playground uses 1/2 (o - t)^2, which only halves the gradient: the same as halving the learning rate.
    """

    name = "mse"

    def forward(self, output, target):
        diff = output - target.reshape(output.shape)
        self._cache = diff
        return float(np.add.reduce(diff * diff, axis=None) / diff.size)

    def backward(self):
        diff = self._cache
        return diff * diff.dtype.type(2.0 / diff.size)


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (SoftmaxCrossEntropy, MeanSquaredError)}

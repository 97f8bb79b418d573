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
    """

    name = "cross_entropy"

    def forward(self, logits, target):
        log_p = log_softmax(logits)
        rows = np.arange(len(target))
        self._cache = (log_p, rows, target)
        return float(-log_p[rows, target].mean())

    def backward(self):
        log_p, rows, target = self._cache
        grad = np.exp(log_p, out=log_p)  # softmax, in place: the cache is used once
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
        return float(np.mean(diff * diff))

    def backward(self):
        diff = self._cache
        return diff * diff.dtype.type(2.0 / diff.size)


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (SoftmaxCrossEntropy, MeanSquaredError)}

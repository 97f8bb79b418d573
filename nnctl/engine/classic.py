"""Classic neurons (lecture slides 2-4): McCulloch-Pitts threshold units and Rosenblatt's perceptron."""

from __future__ import annotations

import numpy as np

from nnctl.engine.layers import Layer


class Threshold(Layer):
    """McCulloch-Pitts units (slide 2): y = H(x W - theta), H(a) = 1 if a >= 0 else 0.

    The weights and thresholds are given, not learned (they are buffers, not parameters), except by the
    perceptron rule below.  The output is 0 or 1.
    """

    def __init__(self, weight: np.ndarray, threshold: np.ndarray):
        super().__init__()
        self.buffers["weight"] = weight
        self.buffers["threshold"] = threshold

    def forward(self, x, training=False):
        return (x @ self.buffers["weight"] - self.buffers["threshold"] >= 0).astype(x.dtype)

    def backward(self, grad_y, input_grad=True):
        raise RuntimeError("threshold units have no gradient; they are not trained by backpropagation")


class Pocket:
    """Gallant's (1990) pocket algorithm: after every update, keep a copy of the weights if they get more
    training rows right than the copy in the pocket.  On data that is not linearly separable the
    perceptron rule cycles forever; the pocket holds the best weights it passed through.
    (Checking costs one pass over the training rows per update: fine for the lecture-sized data.)"""

    def __init__(self, unit: Threshold, x: np.ndarray, target: np.ndarray):
        self.x, self.target = x, target
        self.weight = unit.buffers["weight"].copy()
        self.threshold = unit.buffers["threshold"].copy()
        self.accuracy = self.score(unit)

    def score(self, unit: Threshold) -> float:
        return float(np.mean(unit.forward(self.x)[:, 0] == self.target))

    def offer(self, unit: Threshold) -> None:
        accuracy = self.score(unit)
        if accuracy > self.accuracy:
            self.accuracy = accuracy
            self.weight[...] = unit.buffers["weight"]
            self.threshold[...] = unit.buffers["threshold"]


def perceptron_epoch(unit: Threshold, x: np.ndarray, target: np.ndarray, lr: float, pocket: Pocket | None = None) -> int:
    """One pass of Rosenblatt's rule (slide 4) over the rows in order; returns the number of mistakes.

    For each row, y = H(w.x - theta).  Output wrongly 0 (t = 1): w += lr x, so the weights of the inputs
    that were on grow, and theta -= lr.  Output wrongly 1 (t = 0): w -= lr x, theta += lr.
    Both are w += lr (t - y) x, theta -= lr (t - y): the threshold learns as a bias.
    """
    weight = unit.buffers["weight"][:, 0]
    threshold = unit.buffers["threshold"]
    mistakes = 0
    for row, t in zip(x, target):
        y = 1.0 if row @ weight - threshold[0] >= 0 else 0.0
        if y != t:
            mistakes += 1
            weight += x.dtype.type(lr * (t - y)) * row
            threshold[0] -= x.dtype.type(lr * (t - y))
            if pocket:
                pocket.offer(unit)
    return mistakes

"""L1 and L2 weight penalties (as Keras's L1L2): penalty = l1 sum|w| + l2 sum w^2 over the weight matrices
(not the biases, as in the TensorFlow Playground); its gradient l1 sign(w) + 2 l2 w is added to dL/dw."""

from __future__ import annotations

import numpy as np


def penalty(weights: list[np.ndarray], l1: float, l2: float) -> float:
    return float(sum(l1 * np.abs(w).sum() + l2 * (w * w).sum() for w in weights))


def add_penalty_gradient(weights: list[np.ndarray], grads: list[np.ndarray], l1: float, l2: float) -> None:
    for w, g in zip(weights, grads):
        if l1:
            g += w.dtype.type(l1) * np.sign(w)
        if l2:
            g += w.dtype.type(2 * l2) * w


def clip_global_norm(grads: list[np.ndarray], max_norm: float) -> float:
    """Scale all gradients by max_norm / (norm + 1e-6) when their joint L2 norm exceeds max_norm
    (``torch.nn.utils.clip_grad_norm_``); returns the norm before clipping."""
    norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads)))
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for g in grads:
            g *= g.dtype.type(scale)
    return norm

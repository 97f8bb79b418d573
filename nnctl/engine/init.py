"""Weight initialisation schemes, with the formulas of ``torch.nn.init``.

Each scheme returns (weight of shape (fan_in, fan_out), bias of shape (fan_out,)).

- xavier_uniform: W ~ U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)); bias 0   (Glorot & Bengio 2010)
- xavier_normal:  W ~ N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out)); bias 0
- he_uniform:     W ~ U(-a, a), a = gain * sqrt(3 / fan_in); bias 0                 (He et al. 2015)
- he_normal:      W ~ N(0, s^2), s = gain / sqrt(fan_in); bias 0
- uniform:        W ~ U(-0.5, 0.5), bias 0.1: the TensorFlow Playground's choice
- torch:          W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's ``nn.Linear`` default
- zeros:          W = 0, b = 0 (every unit stays identical: shows why initialisation must break symmetry)

Xavier uses gain 1 (PyTorch's default).  He uses the gain of the layer's activation:
sqrt(2) for ReLU, sqrt(2 / (1 + slope^2)) for Leaky ReLU, 5/3 for tanh, 1 otherwise;
a layer without a rectifier therefore gets the plain 1/fan_in variance (LeCun's).
"""

from __future__ import annotations

import math

import numpy as np

INIT_SCHEMES = ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "uniform", "torch", "zeros")


def gain(activation: str, slope: float = 0.01) -> float:
    """``torch.nn.init.calculate_gain`` for the activations nnctl has."""
    if activation == "relu":
        return math.sqrt(2.0)
    if activation == "leaky_relu":
        return math.sqrt(2.0 / (1 + slope**2))
    if activation == "tanh":
        return 5.0 / 3.0
    return 1.0


def init_weights(
    scheme: str,
    fan_in: int,
    fan_out: int,
    rng: np.random.Generator,
    activation_gain: float = 1.0,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    shape = (fan_in, fan_out)
    bias = np.zeros(fan_out)
    if scheme == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weight = rng.uniform(-bound, bound, shape)
    elif scheme == "xavier_normal":
        weight = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif scheme == "he_uniform":
        bound = activation_gain * math.sqrt(3.0 / fan_in)
        weight = rng.uniform(-bound, bound, shape)
    elif scheme == "he_normal":
        weight = rng.normal(0.0, activation_gain / math.sqrt(fan_in), shape)
    elif scheme == "uniform":
        weight = rng.uniform(-0.5, 0.5, shape)
        bias = np.full(fan_out, 0.1)
    elif scheme == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        weight = rng.uniform(-bound, bound, shape)
        bias = rng.uniform(-bound, bound, fan_out)
    elif scheme == "zeros":
        weight = np.zeros(shape)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}; allowed: {', '.join(INIT_SCHEMES)}")
    return weight.astype(dtype), bias.astype(dtype)

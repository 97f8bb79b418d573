"""Small datasets for the lecture's classic slides: truth tables (slides 2-4) and 1-D functions (slide 6)."""

from __future__ import annotations

import itertools

import numpy as np

LOGIC = {
    "and": lambda bits: bits.all(axis=1),
    "or": lambda bits: bits.any(axis=1),
    "nand": lambda bits: ~bits.all(axis=1),
    "nor": lambda bits: ~bits.any(axis=1),
    "xor": lambda bits: bits.sum(axis=1) % 2 == 1,  # parity for more than two inputs
    "not": lambda bits: ~bits[:, 0],
}


def truth_table(function: str, inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Every combination of 0/1 inputs, in counting order, and the function's 0/1 output."""
    bits = np.array(list(itertools.product([0, 1], repeat=inputs)), dtype=bool)
    return bits.astype(np.float32), LOGIC[function](bits).astype(np.int64)


FUNCTIONS = {
    "sin": np.sin,
    "cos": np.cos,
    "abs": np.abs,
    "step": lambda x: (x >= 0).astype(np.float64),
    "square": np.square,
    "cube": lambda x: x**3,
    "sinc": np.sinc,  # sin(pi x) / (pi x)
    "gauss": lambda x: np.exp(-x * x),
    "sawtooth": lambda x: x - np.floor(x) - 0.5,
}


def function_samples(fn: str, low: float, high: float, n: int, noise: float, rng: np.random.Generator):
    """x ~ U(low, high); y = f(x) + N(0, noise^2)."""
    x = rng.uniform(low, high, n)
    y = FUNCTIONS[fn](x) + (rng.normal(0.0, noise, n) if noise else 0.0)
    return x.reshape(-1, 1).astype(np.float32), y.astype(np.float32)

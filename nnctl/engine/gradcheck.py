"""Centred finite differences (CS231n): df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h, in float64.

relative_error(a, n) = max|a - n| / max(1e-8, max(|a| + |n|)): < 1e-7 is good, > 1e-2 is wrong.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of the scalar f() with respect to the array x, which f reads and which is perturbed in place."""
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + h
        f_plus = f()
        x[i] = original - h
        f_minus = f()
        x[i] = original
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = np.max(np.abs(analytic) + np.abs(numeric)) if analytic.size else 0.0
    return float(np.max(np.abs(analytic - numeric), initial=0.0) / max(1e-8, scale))

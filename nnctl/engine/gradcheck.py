"""Finite-difference gradients and the comparison of an analytic gradient with them, in float64.

Numeric gradient: the centred difference (CS231n) with one step of Richardson extrapolation, i.e. the
five-point stencil (Nocedal & Wright, *Numerical Optimization*, 2nd ed., section 8.1; Fornberg 1988):

    D(h) = (f(x + h e_i) - f(x - h e_i)) / 2h                       error h^2 f'''/6 + eps |f| / h
    n_i  = (4 D(h) - D(2h)) / 3
         = (-f(x + 2h e_i) + 8 f(x + h e_i) - 8 f(x - h e_i) + f(x - 2h e_i)) / 12h,    h = 1e-5,

whose error is truncation h^4 |f^(5)| / 30 (negligible at h = 1e-5, where the plain centred difference's
h^2 term is not: it failed the check of batch norm on 3 rows) plus rounding 1.5 eps_f / h, where
eps_f ~ eps |f| is the rounding error of evaluating f (eps = 2.2e-16, the float64 machine epsilon).
``noise_floor`` is that rounding term with room for the few ulps that evaluating a network adds (measured:
up to 6 eps |f| / h on the shipped configs):

    delta = 100 eps max(1, |f|) / h                                  (2.2e-9 for a loss of order 1)

``compare_gradients`` accepts the analytic gradient a of one parameter array when, for every checked entry i,

    |a_i - n_i| <= atol + rtol |n_i|,      atol = rtol max_j |n_j| + delta,      rtol = 1e-5 by default

(``numpy.allclose``'s form, the numeric n as reference).  The absolute term is scaled, not a fixed 1e-8:
rtol times the array's gradient scale (an entry much smaller than the array's largest is judged normwise,
as its truncation and cancellation errors are of the array's size), plus the noise floor, so that a
gradient that is exactly zero (a bias feeding batch norm: about 1e-16 analytic, 1e-10 numeric) passes
instead of reporting the relative error of two rounding errors.  A 0.01 % error in a gradient above the
noise floor fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

#: the step h of the finite differences
STEP = 1e-5
#: default relative tolerance of ``compare_gradients``
RTOL = 1e-5
#: ``noise_floor``'s multiple of eps max(1, |f|) / h
NOISE_SAFETY = 100.0


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = STEP) -> np.ndarray:
    """Gradient of the scalar f() with respect to the array x, which f reads and which is perturbed in place:
    the five-point stencil (-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)) / 12h for each entry."""
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        original = x[i]
        values = []
        for step in (2 * h, h, -h, -2 * h):
            x[i] = original + step
            values.append(f())
        x[i] = original
        grad[i] = (8 * (values[1] - values[2]) - (values[0] - values[3])) / (12 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max|a - n| / max(1e-8, max(|a| + |n|)) (CS231n): < 1e-7 is good, > 1e-2 is wrong, when the gradient is
    well above the noise floor; meaningless when it is zero (see ``compare_gradients``)."""
    scale = np.max(np.abs(analytic) + np.abs(numeric)) if analytic.size else 0.0
    return float(np.max(np.abs(analytic - numeric), initial=0.0) / max(1e-8, scale))


def noise_floor(f_value: float, h: float = STEP) -> float:
    """delta = 100 eps max(1, |f|) / h: the rounding error of ``numerical_gradient`` on f, with room to spare."""
    return NOISE_SAFETY * float(np.finfo(np.float64).eps) * max(1.0, abs(f_value)) / h


@dataclass(frozen=True)
class Comparison:
    """An analytic gradient against finite differences, over the checked entries of one parameter array."""

    abs_error: float  #: max |a_i - n_i|
    scale: float  #: the array's gradient scale, max |n_i|
    rel_error: float  #: abs_error / scale (normwise, infinity norm); 0 when both are 0
    delta: float  #: the absolute floor (the finite-difference noise floor unless given)
    atol: float  #: rtol * scale + delta
    ratio: float  #: max |a_i - n_i| / (atol + rtol |n_i|): the check passes when <= 1
    passed: bool

    @property
    def below_noise(self) -> bool:
        """The numeric gradient is indistinguishable from zero: its relative error is the ratio of two noises."""
        return self.scale <= self.delta


def compare_gradients(analytic: np.ndarray, numeric: np.ndarray, delta: float, rtol: float = RTOL) -> Comparison:
    """|a_i - n_i| <= atol + rtol |n_i| for every i, atol = rtol max|n| + delta (see the module docstring)."""
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    error = np.abs(a - n)
    scale = float(np.max(np.abs(n), initial=0.0))
    atol = rtol * scale + delta
    tolerance = atol + rtol * np.abs(n)
    if not np.all(np.isfinite(error)):
        return Comparison(float("inf"), scale, float("inf"), delta, atol, float("inf"), False)
    abs_error = float(np.max(error, initial=0.0))
    rel_error = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else float("inf"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(np.where(error == 0, 0.0, error / tolerance), initial=0.0))
    return Comparison(abs_error, scale, rel_error, delta, atol, ratio, bool(np.all(error <= tolerance)))

"""Input normalization (lecture slide 8), fitted on the training split only and stored in the checkpoint.

- standard:   x' = (x - mean) / std                  (zero-center, then normalize)
- minmax:     x' = (x - min) / (max - min)           (into [0, 1])
- pca_whiten: x' = (x - mean) U / sqrt(lambda + eps) (rotate onto the principal axes, unit variance each;
              U, lambda = eigenvectors and eigenvalues of the training covariance; CS231n)
A constant column keeps its scale (std or range 1) rather than dividing by zero.
"""

from __future__ import annotations

import numpy as np

WHITEN_EPS = 1e-5


class Preprocessor:
    """x' = (x - shift) @ rotation * scale, with the arrays it was fitted to kept in ``arrays``."""

    def __init__(self, kind: str, arrays: dict[str, np.ndarray]):
        self.kind = kind
        self.arrays = arrays

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return x
        a = self.arrays
        centred = x - a["shift"]
        if "rotation" in a:
            centred = centred @ a["rotation"]
        return (centred * a["scale"]).astype(np.float32)


def fit_preprocessor(kind: str, x: np.ndarray) -> Preprocessor:
    if kind == "none":
        return Preprocessor(kind, {})
    x64 = x.astype(np.float64)
    if kind == "standard":
        std = x64.std(axis=0)
        arrays = {"shift": x64.mean(axis=0), "scale": 1 / np.where(std > 0, std, 1)}
    elif kind == "minmax":
        low, high = x64.min(axis=0), x64.max(axis=0)
        span = high - low
        arrays = {"shift": low, "scale": 1 / np.where(span > 0, span, 1)}
    elif kind == "pca_whiten":
        mean = x64.mean(axis=0)
        covariance = np.cov(x64 - mean, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        arrays = {"shift": mean, "rotation": eigenvectors, "scale": 1 / np.sqrt(np.maximum(eigenvalues, 0) + WHITEN_EPS)}
    else:
        raise ValueError(f"unknown normalization {kind!r}")
    return Preprocessor(kind, {name: value.astype(np.float32) for name, value in arrays.items()})

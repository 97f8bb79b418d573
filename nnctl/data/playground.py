"""The TensorFlow Playground's datasets, generated as its ``src/dataset.ts`` does
(shared/reference/playground.md).  Labels: the Playground's -1/+1 become classes 0/1.

Each generator takes the number of samples, the noise (0 to 0.5) and a seeded generator, and returns
points of shape (n, 2) and labels of shape (n,): int classes, or float targets for regression.
"""

from __future__ import annotations

import numpy as np

Generated = tuple[np.ndarray, np.ndarray]


def circle(n: int, noise: float, rng: np.random.Generator) -> Generated:
    """Half the points inside r < 2.5, half in 3.5 < r < 5; the label is decided on the noisy point,
    so noise shows up as flipped labels while the stored point stays clean."""
    radius = 5.0
    half = n // 2
    r = np.concatenate([rng.uniform(0, radius * 0.5, half), rng.uniform(radius * 0.7, radius, n - half)])
    angle = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    noisy = points + rng.uniform(-radius, radius, (n, 2)) * noise
    labels = (np.hypot(noisy[:, 0], noisy[:, 1]) < radius * 0.5).astype(np.int64)
    return points, labels


def xor(n: int, noise: float, rng: np.random.Generator) -> Generated:
    """Points in [-5, 5]^2 pushed 0.3 away from the axes; class 1 where x*y >= 0 (on the noisy point)."""
    points = rng.uniform(-5, 5, (n, 2))
    points += np.where(points > 0, 0.3, -0.3)
    noisy = points + rng.uniform(-5, 5, (n, 2)) * noise
    labels = (noisy[:, 0] * noisy[:, 1] >= 0).astype(np.int64)
    return points, labels


def gauss(n: int, noise: float, rng: np.random.Generator) -> Generated:
    """Two Gaussian blobs at (2, 2) (class 1) and (-2, -2) (class 0), variance 0.5 + 7 * noise."""
    std = np.sqrt(0.5 + 7 * noise)
    half = n // 2
    positive = rng.normal(2, std, (half, 2))
    negative = rng.normal(-2, std, (n - half, 2))
    labels = np.concatenate([np.ones(half, np.int64), np.zeros(n - half, np.int64)])
    return np.concatenate([positive, negative]), labels


def spiral(n: int, noise: float, rng: np.random.Generator) -> Generated:
    """Two interleaved spirals, r = 5 i/m, t = 1.75 (i/m) 2 pi + delta (delta = 0: class 1, pi: class 0);
    here the noise moves the points: x += U(-1, 1) * noise."""
    parts = []
    for delta, label, count in ((0.0, 1, n // 2), (np.pi, 0, n - n // 2)):
        i = np.arange(count)
        r = 5 * i / count
        t = 1.75 * i / count * 2 * np.pi + delta
        xy = np.stack([r * np.sin(t), r * np.cos(t)], axis=1) + rng.uniform(-1, 1, (count, 2)) * noise
        parts.append((xy, np.full(count, label, np.int64)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def reg_plane(n: int, noise: float, rng: np.random.Generator) -> Generated:
    """x, y ~ U(-6, 6); target (x + nx + y + ny) / 10 with nx, ny ~ U(-6, 6) * noise."""
    points = rng.uniform(-6, 6, (n, 2))
    noisy = points + rng.uniform(-6, 6, (n, 2)) * noise
    return points, (noisy[:, 0] + noisy[:, 1]) / 10


REG_GAUSS_CENTRES = np.array(
    [(-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1)], dtype=np.float64
)


def reg_gauss(n: int, noise: float, rng: np.random.Generator) -> Generated:
    """Six bumps sign * max(0, 1 - d/2) around fixed centres; the target is the candidate with the
    largest absolute value (d measured from the noisy point)."""
    points = rng.uniform(-6, 6, (n, 2))
    noisy = points + rng.uniform(-6, 6, (n, 2)) * noise
    cx, cy, sign = REG_GAUSS_CENTRES.T
    distance = np.hypot(noisy[:, :1] - cx, noisy[:, 1:] - cy)  # (n, 6)
    candidates = sign * np.maximum(0.0, 1 - distance / 2)
    best = np.argmax(np.abs(candidates), axis=1)
    return points, candidates[np.arange(n), best]


GENERATORS = {
    "circle": circle,
    "xor": xor,
    "gauss": gauss,
    "spiral": spiral,
    "reg-plane": reg_plane,
    "reg-gauss": reg_gauss,
}

#: the Playground's input features, computed from a point (x1, x2)
FEATURE_FUNCTIONS = {
    "x1": lambda x1, x2: x1,
    "x2": lambda x1, x2: x2,
    "x1_sq": lambda x1, x2: x1 * x1,
    "x2_sq": lambda x1, x2: x2 * x2,
    "x1_x2": lambda x1, x2: x1 * x2,
    "sin_x1": lambda x1, x2: np.sin(x1),
    "sin_x2": lambda x1, x2: np.sin(x2),
}


def make_features(points: np.ndarray, names: list[str]) -> np.ndarray:
    """The chosen features of each point, as columns of a float32 matrix."""
    x1, x2 = points[:, 0], points[:, 1]
    return np.stack([FEATURE_FUNCTIONS[name](x1, x2) for name in names], axis=1).astype(np.float32)

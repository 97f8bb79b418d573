"""Turn a config's ``data`` section into arrays: generated or read, featurised, split.

Knows nothing of training.  The split is fixed by the data seed, so ``nnctl eval`` recomputes the
very same test rows as training did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnctl.config import LoadedConfig
from nnctl.data import playground
from nnctl.seeding import generator


@dataclass
class Split:
    x: np.ndarray  # float32, (n, features)
    y: np.ndarray  # int64 classes, or float32 targets for regression

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Dataset:
    train: Split
    val: Split | None
    test: Split | None
    task: str  # "classification" or "regression"
    feature_names: list[str]
    class_names: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return self.train.x.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split | None:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def load_data(loaded: LoadedConfig) -> Dataset:
    config = loaded.config
    spec = config.data
    seed = config.data_seed()
    points, labels = playground.GENERATORS[spec.dataset](spec.samples, spec.noise, generator(seed, "data"))
    x = playground.make_features(points, spec.features)
    if spec.is_regression:
        task, y, class_names = "regression", labels.astype(np.float32), []
    else:
        task, y, class_names = "classification", labels, ["0", "1"]
    train, val, test = split_rows(x, y, spec.test_fraction, spec.val_fraction, generator(seed, "split"))
    return Dataset(train, val, test, task, list(spec.features), class_names)


def split_rows(x, y, test_fraction: float, val_fraction: float, rng: np.random.Generator):
    """Shuffle the rows, then cut test, validation and training parts (None where a part is empty)."""
    n = len(x)
    order = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    parts = np.split(order, [n_test, n_test + n_val])
    test, val, train = (Split(x[rows], y[rows]) if len(rows) else None for rows in parts)
    return train, val, test

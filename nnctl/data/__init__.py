"""Turn a config's ``data`` section into arrays: generated or read, featurised, split.

Knows nothing of training.  The split is fixed by the data seed, so ``nnctl eval`` recomputes the
very same test rows as training did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnctl.config import FunctionData, LoadedConfig, LogicData, PlaygroundData
from nnctl.data import playground, synthetic
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
    """The raw (not yet normalized) splits the config's data section describes."""
    config = loaded.config
    spec = config.data
    seed = config.data_seed()
    if isinstance(spec, LogicData):
        x, y = synthetic.truth_table(spec.function, spec.inputs)
        table = Split(x, y)
        train = Split(np.tile(x, (spec.repeat, 1)), np.tile(y, spec.repeat))
        names = [f"x{i + 1}" for i in range(spec.inputs)]
        return Dataset(train, None, table, "classification", names, ["0", "1"])
    if isinstance(spec, FunctionData):
        low, high = spec.range
        x, y = synthetic.function_samples(spec.fn, low, high, spec.samples, spec.noise, generator(seed, "data"))
        names, task, class_names = ["x"], "regression", []
    elif isinstance(spec, PlaygroundData):
        points, labels = playground.GENERATORS[spec.dataset](spec.samples, spec.noise, generator(seed, "data"))
        x = playground.make_features(points, spec.features)
        names = list(spec.features)
        if spec.is_regression:
            task, y, class_names = "regression", labels.astype(np.float32), []
        else:
            task, y, class_names = "classification", labels, ["0", "1"]
    else:  # pragma: no cover - the config's union lists every kind
        raise TypeError(type(spec))
    train, val, test = split_rows(x, y, spec.test_fraction, spec.val_fraction, generator(seed, "split"))
    if train is None or len(train) < 1:
        raise loaded.error(("data", "samples"), f"{len(x)} samples leave no training rows after the test/validation split")
    return Dataset(train, val, test, task, names, class_names)


def split_rows(x, y, test_fraction: float, val_fraction: float, rng: np.random.Generator):
    """Shuffle the rows, then cut test, validation and training parts (None where a part is empty)."""
    n = len(x)
    order = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    parts = np.split(order, [n_test, n_test + n_val])
    test, val, train = (Split(x[rows], y[rows]) if len(rows) else None for rows in parts)
    return train, val, test

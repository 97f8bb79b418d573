"""Turn a config's ``data`` section into arrays: generated or read, featurised, split.

Knows nothing of training.  The split is fixed by the data seed, so ``nnctl eval`` recomputes the
very same test rows as training did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnctl.config import CsvData, DigitsData, FunctionData, ImageData, LoadedConfig, LogicData, NpzData, PlaygroundData
from nnctl import resources
from nnctl.data import files, playground, synthetic
from nnctl.errors import NnctlError
from nnctl.seeding import generator

DIGITS_FILE = Path(__file__).with_name("digits.npz")


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
    #: (height, width) when the rows are flattened images (image augmentation applies)
    image_shape: tuple[int, int] | None = None
    #: the raw columns ``nnctl predict`` reads from a CSV: the Playground's x1, x2 (its features are computed
    #: from them), otherwise the feature names themselves
    input_columns: list[str] | None = None

    def __post_init__(self):
        if self.input_columns is None:
            self.input_columns = list(self.feature_names)

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
    data = _load(loaded)
    if getattr(loaded.config.data, "val_fraction", 0) > 0 and data.val is None:
        raise loaded.error(("data", "val_fraction"), "is too small to hold out a single validation row; raise it or set it to 0")
    check_augment(loaded, data)
    return data


def check_augment(loaded: LoadedConfig, data: Dataset) -> None:
    """Augmentation sizes that need the data: a shift or a cutout larger than the images."""
    augment = loaded.config.data.augment
    if data.image_shape is None:
        return
    side = max(data.image_shape)
    for key in ("shift", "cutout"):
        value = getattr(augment, key)
        if value > side:
            height, width = data.image_shape
            raise loaded.error(("data", "augment", key), f"{value} pixels is more than the {height}x{width} images; allowed: 0 to {side}")


def _load(loaded: LoadedConfig) -> Dataset:
    config = loaded.config
    spec = config.data
    seed = config.data_seed()
    if isinstance(spec, LogicData):
        problem = resources.check_fits(2**spec.inputs * spec.repeat * (spec.inputs + 1) * 8 * 2, f"{spec.repeat:,} copies of the truth table")
        if problem:
            raise loaded.error(("data", "repeat"), problem)
        x, y = synthetic.truth_table(spec.function, spec.inputs)
        table = Split(x, y)
        train = Split(np.tile(x, (spec.repeat, 1)), np.tile(y, spec.repeat))
        names = [f"x{i + 1}" for i in range(spec.inputs)]
        return Dataset(train, None, table, "classification", names, ["0", "1"], input_columns=names)
    if isinstance(spec, ImageData):
        return load_mnist(spec, seed)
    if isinstance(spec, (CsvData, NpzData)):
        return load_user_files(loaded, seed)
    image_shape = input_columns = None
    if isinstance(spec, (FunctionData, PlaygroundData)):
        columns = 2 + len(getattr(spec, "features", ["x"]))
        problem = resources.check_fits(spec.samples * columns * 8 * 4, f"generating {spec.samples:,} samples")
        if problem:
            raise loaded.error(("data", "samples"), problem)
    if isinstance(spec, FunctionData):
        low, high = spec.range
        x, y = synthetic.function_samples(spec.fn, low, high, spec.samples, spec.noise, generator(seed, "data"))
        names, task, class_names, input_columns = ["x"], "regression", [], ["x"]
    elif isinstance(spec, PlaygroundData):
        points, labels = playground.GENERATORS[spec.dataset](spec.samples, spec.noise, generator(seed, "data"))
        x = playground.make_features(points, spec.features)
        names, input_columns = list(spec.features), ["x1", "x2"]
        if spec.is_regression:
            task, y, class_names = "regression", labels.astype(np.float32), []
        else:
            task, y, class_names = "classification", labels, ["0", "1"]
    elif isinstance(spec, DigitsData):
        with np.load(DIGITS_FILE, allow_pickle=False) as npz:
            images, y = npz["images"].astype(np.float32) / 16.0, npz["labels"].astype(np.int64)
        x, image_shape = images.reshape(len(images), -1), images.shape[1:]
        names, task, class_names = [f"pixel{i}" for i in range(x.shape[1])], "classification", [str(d) for d in range(10)]
    else:  # pragma: no cover - the config's union lists every kind
        raise TypeError(type(spec))
    train, val, test = split_rows(x, y, spec.test_fraction, spec.val_fraction, generator(seed, "split"))
    if train is None or len(train) < 1:
        raise loaded.error(("data", "samples"), f"{len(x)} samples leave no training rows after the test/validation split")
    return Dataset(train, val, test, task, names, class_names, image_shape, input_columns)


def load_mnist(spec: ImageData, seed: int) -> Dataset:
    from nnctl.data.fetch import cache_dir

    folder = Path(spec.path) if spec.path else cache_dir(spec.dataset)
    arrays = files.read_mnist_folder(folder, spec.dataset)
    train_x, train_y = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    if spec.train_samples is not None and spec.train_samples < len(train_x):
        keep = np.sort(generator(seed, "data").permutation(len(train_x))[: spec.train_samples])
        train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = arrays["test_images"][: spec.test_samples], arrays["test_labels"][: spec.test_samples].astype(np.int64)
    image_shape = train_x.shape[1:]
    problem = resources.check_fits((len(train_x) + len(test_x)) * int(np.prod(image_shape)) * 4 * 2, "the images as float32")
    if problem:
        raise NnctlError(f"{folder}: {problem}")
    def flat(images):
        pixels = images.reshape(len(images), -1).astype(np.float32)
        pixels /= 255.0  # in place: one float copy of the images, not two
        return pixels

    train, val, _ = split_rows(flat(train_x), train_y, 0.0, spec.val_fraction, generator(seed, "split"))
    if train is None:
        raise NnctlError(f"data: {spec.dataset}: no training images left after taking val_fraction {spec.val_fraction}")
    names = [f"pixel{i}" for i in range(int(np.prod(image_shape)))]
    class_names = FASHION_CLASSES if spec.dataset == "fashion-mnist" else [str(d) for d in range(10)]
    return Dataset(train, val, Split(flat(test_x), test_y), "classification", names, class_names, image_shape)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_user_files(loaded: LoadedConfig, seed: int) -> Dataset:
    """A CSV or NPZ file split by the fractions, or separate training and test files."""
    spec = loaded.config.data
    if isinstance(spec, CsvData):
        if spec.columns is not None:
            check_columns(loaded, spec.columns, spec.target)
        read = lambda path: files.read_csv(path, spec.target, spec.columns, spec.delimiter)  # noqa: E731
        train_file, test_file = spec.path, spec.test_path
    else:
        read = lambda path: files.read_npz(path, spec.x, spec.y)  # noqa: E731
        train_file, test_file = spec.path or spec.train_path, spec.test_path
    train_table = read(train_file)
    if isinstance(spec, CsvData) and test_file:
        # the test file's columns by name, as in the training file: another order must not swap features
        test_table = files.read_csv(test_file, spec.target, train_table.feature_names, spec.delimiter)
    else:
        test_table = read(test_file) if test_file else None
    if test_table is not None and test_table.x.shape[1:] != train_table.x.shape[1:]:
        raise NnctlError(f"{test_file}: rows of shape {test_table.x.shape[1:]}, the training file has {train_table.x.shape[1:]}")
    raw_targets = [train_table.y] + ([test_table.y] if test_table is not None else [])
    lines = [train_table.lines] + ([test_table.lines] if test_table is not None else [])
    encoded, class_names = encode_targets(raw_targets, spec.task, [train_file, test_file], lines)
    x = train_table.x
    image_shape = x.shape[1:] if x.ndim == 3 else None
    if x.ndim == 3:
        x = x.reshape(len(x), -1)
    if spec.augment.for_images and image_shape is None:
        raise loaded.error(("data", "augment"), f"{train_file} holds rows of features, not images: shift, rotate, flip and cutout need images")
    if test_table is None:
        train, val, test = split_rows(x, encoded[0], spec.test_fraction, spec.val_fraction, generator(seed, "split"))
    else:
        # the user's own test file: the validation fraction is of the training file
        train, val, _ = split_rows(x, encoded[0], 0.0, spec.val_fraction, generator(seed, "split"))
        test = Split(test_table.x.reshape(len(test_table.x), -1), encoded[1])
    if train is None:
        raise loaded.error(("data",), f"{train_file}: no training rows left after the test/validation split")
    return Dataset(train, val, test, spec.task, train_table.feature_names, class_names, image_shape)


def check_columns(loaded: LoadedConfig, columns: list[str], target: str) -> None:
    """``data.columns``: each feature once, and never the target (it would leak the answer into the inputs)."""
    for i, name in enumerate(columns):
        if name == target:
            raise loaded.error(("data", "columns", i), f"{name!r} is the target column; a target cannot also be a feature")
        if name in columns[:i]:
            raise loaded.error(("data", "columns", i), f"{name!r} is listed twice; list each feature column once")


def encode_targets(raw: list[np.ndarray], task: str, sources: list, lines: list | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Targets as numbers: float values for regression; for classification, indices into the sorted class
    names (numerically sorted when every name is a number), which the checkpoint keeps.  A numeric class
    label must be a whole number (-1/+1 labels are two classes): NaN, infinity or a fraction is refused, as
    regression values would otherwise silently become hundreds of classes.
    ``lines``: per source, the CSV line of each row (for messages), or None."""
    if task == "regression":
        out = []
        for values, source in zip(raw, sources):
            try:
                out.append(values.astype(np.float32))
            except ValueError:
                bad = next(v for v in values if not is_number(v))
                raise NnctlError(f"{source}: target {bad!r} is not a number; regression needs numeric targets (or set data.task: classification)") from None
            files.check_finite(out[-1].reshape(-1, 1), f"{source}: targets")
        return out, []
    as_text = [[class_name(v) for v in values] for values in raw]
    for k, values in enumerate(as_text):
        for i, name in enumerate(values):
            if is_number(name) and not (math.isfinite(float(name)) and float(name).is_integer()):
                where = f"line {lines[k][i]}" if lines and lines[k] is not None else f"row {i}"
                raise NnctlError(
                    f"{sources[k]}: {where}: target {str(raw[k][i]).strip()!r} is not a class label; numeric labels must be whole numbers "
                    "(use text class names, or loss: mse for numeric targets)"
                )
    names = sorted({name for values in as_text for name in values})
    if all(is_number(name) for name in names):
        names = sorted(names, key=float)
    index = {name: i for i, name in enumerate(names)}
    if len(names) < 2:
        raise NnctlError(f"{sources[0]}: the target has {len(names)} class ({', '.join(names)}); classification needs at least 2")
    return [np.array([index[v] for v in values], dtype=np.int64) for values in as_text], names


def is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def class_name(value) -> str:
    """A target value as a class name; '1.0' and '1' name the same class."""
    text = str(value).strip()
    if not is_number(text):
        return text
    number = float(text)
    return str(int(number)) if number.is_integer() else str(number)


def split_rows(x, y, test_fraction: float, val_fraction: float, rng: np.random.Generator):
    """Shuffle the rows, then cut test, validation and training parts (None where a part is empty).
    With no test and no validation part, the training part is the data itself (training shuffles it
    anyway), which saves a copy of a large dataset."""
    n = len(x)
    if round(test_fraction * n) == 0 and round(val_fraction * n) == 0:
        return Split(x, y), None, None
    order = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    parts = np.split(order, [n_test, n_test + n_val])
    test, val, train = (Split(x[rows], y[rows]) if len(rows) else None for rows in parts)
    return train, val, test

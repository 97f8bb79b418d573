"""Reading a user's data files: CSV, NPZ and the IDX format of MNIST.  Every problem is an NnctlError
naming the file and the row, column or array."""

from __future__ import annotations

import csv
import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError


@dataclass
class Table:
    """Feature rows and raw targets (strings or numbers) read from a file."""

    x: np.ndarray  # float32 (rows, features) or (rows, height, width)
    y: np.ndarray  # strings, ints or floats
    feature_names: list[str]


def check_finite(x: np.ndarray, source: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise NnctlError(f"{source}: row {row} contains NaN or infinity; clean or impute the data first")


# ------------------------------------------------------------------------------------------------ CSV


def read_csv(path: str | Path, target: str | None, columns: list[str] | None = None, delimiter: str = ",") -> Table:
    """A CSV file with a header row.  Features are ``columns`` (default: every column but the target), which
    must be numbers; the target may be text (class names) or numbers.  ``target=None`` reads features only,
    and a missing target column is then allowed (``nnctl predict``)."""
    path = Path(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise NnctlError(f"{path}: file not found") from None
    except OSError as exc:
        raise NnctlError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        try:
            rows = list(csv.reader(handle, delimiter=delimiter))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise NnctlError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [row for row in rows if row]  # blank lines
    if not rows:
        raise NnctlError(f"{path}: the file is empty (a header row and data rows are needed)")
    header = [name.strip() for name in rows[0]]
    if len(rows) < 2:
        raise NnctlError(f"{path}: the file has a header but no data rows")
    if target is not None and target not in header:
        raise NnctlError(f"{path}: no target column {target!r}; the columns are: {', '.join(header)}")
    if columns is None:
        columns = [name for name in header if name != target]
    missing = [name for name in columns if name not in header]
    if missing:
        raise NnctlError(f"{path}: no column {missing[0]!r}; the columns are: {', '.join(header)}")
    if not columns:
        raise NnctlError(f"{path}: no feature columns besides the target {target!r}")
    feature_index = [header.index(name) for name in columns]
    x = np.empty((len(rows) - 1, len(columns)), dtype=np.float32)
    y = []
    target_index = header.index(target) if target is not None else None
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise NnctlError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
        for j, index in enumerate(feature_index):
            cell = row[index].strip()
            if cell == "":
                raise NnctlError(f"{path}: line {line}, column {columns[j]!r}: missing value")
            try:
                x[line - 2, j] = float(cell)
            except ValueError:
                raise NnctlError(f"{path}: line {line}, column {columns[j]!r}: {cell!r} is not a number") from None
        if target_index is not None:
            value = row[target_index].strip()
            if value == "":
                raise NnctlError(f"{path}: line {line}, column {target!r}: missing target value")
            y.append(value)
    check_finite(x, str(path))
    return Table(x, np.array(y, dtype=str), columns)


# ------------------------------------------------------------------------------------------------ NPZ


def is_zip(path: Path) -> bool:
    """An .npz is a zip archive; anything else would make ``np.load`` try to unpickle it."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def read_npz(path: str | Path, x_key: str, y_key: str | None) -> Table:
    """Arrays from an .npz file, read with ``allow_pickle=False``: object arrays are refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise NnctlError(f"{path}: file not found")
    if not is_zip(path):
        raise NnctlError(f"{path}: not a valid .npz file (an .npz is a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            for key in (x_key, y_key):
                if key is not None and key not in names:
                    raise NnctlError(f"{path}: no array named {key!r}; the file has: {', '.join(names) or 'nothing'}")
            x = npz[x_key]
            y = npz[y_key] if y_key is not None else None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise NnctlError(f"{path}: an array holds Python objects (dtype object); refused, as it would need unpickling") from None
        raise NnctlError(f"{path}: not a valid .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise NnctlError(f"{path}: not a valid .npz file ({exc})") from None
    if x.dtype.kind not in "fiub":
        raise NnctlError(f"{path}: array {x_key!r} has dtype {x.dtype}; features must be numbers")
    if x.ndim not in (2, 3):
        raise NnctlError(f"{path}: array {x_key!r} has shape {x.shape}; expected (rows, features) or (rows, height, width)")
    if y is not None:
        if y.ndim != 1:
            raise NnctlError(f"{path}: array {y_key!r} has shape {y.shape}; expected one target per row")
        if len(y) != len(x):
            raise NnctlError(f"{path}: {x_key!r} has {len(x)} rows but {y_key!r} has {len(y)}")
    x = x.astype(np.float32, copy=False)
    check_finite(x.reshape(len(x), -1), f"{path}: array {x_key!r}")
    names = [f"x{i}" for i in range(int(np.prod(x.shape[1:])))]
    return Table(x, y if y is not None else np.array([]), names)


# ------------------------------------------------------------------------------------------------ IDX

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path, expected_dims: int) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not: magic 0x0000 <type> <dims>, then the sizes as
    big-endian int32, then the data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise NnctlError(f"{path}: cannot read: truncated or corrupt gzip ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise NnctlError(f"{path}: not an IDX file (wrong magic number {raw[:4].hex() or 'none'})")
    dims = raw[3]
    if dims != expected_dims:
        raise NnctlError(f"{path}: IDX file with {dims} dimensions; expected {expected_dims}")
    if len(raw) < 4 + 4 * dims:
        raise NnctlError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", dims, 4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    needed = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * dims :]
    if len(body) < needed:
        raise NnctlError(f"{path}: truncated: {len(body):,} bytes of data, the header promises {needed:,}")
    return np.frombuffer(body, dtype, int(np.prod(shape))).reshape(shape)


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``train-images-idx3-ubyte``, gzipped or not; some copies are named ``train-images.idx3-ubyte``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_mnist_folder(folder: str | Path, dataset: str) -> dict[str, np.ndarray]:
    folder = Path(folder)
    found = {key: find_idx_file(folder, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise NnctlError(
            f"{folder}: missing {', '.join(missing)} (.gz or not); download them with: nnctl data fetch {dataset} --dir {folder}"
        )
    arrays = {key: read_idx(path, 3 if key.endswith("images") else 1) for key, path in found.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise NnctlError(f"{folder}: {len(images)} {part} images but {len(labels)} {part} labels")
    return arrays

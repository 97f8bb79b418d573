"""Reading a user's data files: CSV, NPZ and the IDX format of MNIST.  Every problem is an NnctlError
naming the file and the row, column or array.

Nothing is trusted before it is checked: a path must be a regular file (not a FIFO, a device or a folder,
which could block or never end); the sizes a file declares (an .npy header's shape, a zip member's size,
an IDX header's dimensions) are checked against the bytes actually there and against the machine's memory
before anything is allocated; a gzip stream is decompressed only as far as its header says.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl import resources
from nnctl.errors import NnctlError
from nnctl.yamlio import open_regular_file

#: the largest finite float32; a value beyond it would become infinity
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: bytes read at a time from a zip member or a gzip stream
CHUNK = 1 << 20


@dataclass
class Table:
    """Feature rows and raw targets (strings or numbers) read from a file."""

    x: np.ndarray  # float32 (rows, features) or (rows, height, width)
    y: np.ndarray  # strings, ints or floats
    feature_names: list[str]
    #: the line of each row in a CSV file (for messages); None for arrays
    lines: np.ndarray | None = None


def check_finite(x: np.ndarray, source: str) -> None:
    with np.errstate(invalid="ignore"):
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
    with open_regular_file(path, "CSV file") as raw:
        handle = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next((row for row in reader if row), None)
            if header is None:
                raise NnctlError(f"{path}: the file is empty (a header row and data rows are needed)")
            header = check_header(path, header, reader.line_num)
            position = {name: i for i, name in enumerate(header)}  # not header.index: quadratic in the columns
            if target is not None and target not in position:
                raise NnctlError(f"{path}: no target column {target!r}; the columns are: {shorten(header)}")
            if columns is None:
                columns = [name for name in header if name != target]
            missing = [name for name in columns if name not in position]
            if missing:
                raise NnctlError(f"{path}: no column {missing[0]!r}; the columns are: {shorten(header)}")
            if not columns:
                raise NnctlError(f"{path}: no feature columns besides the target {target!r}")
            feature_index = [position[name] for name in columns]
            target_index = position[target] if target is not None else None
            values, y, lines = array("d"), [], array("l")
            for row in reader:
                if not row:
                    continue  # a blank line
                line = reader.line_num
                if len(row) != len(header):
                    raise NnctlError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
                for j, index in enumerate(feature_index):
                    values.append(parse_number(path, line, columns[j], row[index]))
                if target_index is not None:
                    value = row[target_index].strip()
                    if value == "":
                        raise NnctlError(f"{path}: line {line}, column {target!r}: missing target value")
                    if is_non_finite_number(value):
                        raise NnctlError(f"{path}: line {line}, column {target!r}: {value!r} is not a valid target (NaN or infinity)")
                    y.append(value)
                lines.append(line)
        except (csv.Error, TypeError, ValueError) as exc:  # ValueError: UnicodeDecodeError, a delimiter csv refuses
            raise NnctlError(f"{path}: not a readable CSV file ({exc}); save it as UTF-8 text") from None
    if not lines:
        raise NnctlError(f"{path}: the file has a header but no data rows")
    x = np.frombuffer(values, dtype=np.float64).astype(np.float32).reshape(len(lines), len(columns))
    return Table(x, np.array(y, dtype=str), list(columns), np.array(lines, dtype=np.int64))


def read_csv_header(path: str | Path, delimiter: str = ",") -> list[str]:
    """The column names of a CSV file (its first non-blank row)."""
    path = Path(path)
    with open_regular_file(path, "CSV file") as raw:
        try:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=delimiter)
            header = next((row for row in reader if row), None)
        except (csv.Error, TypeError, ValueError) as exc:
            raise NnctlError(f"{path}: not a readable CSV file ({exc}); save it as UTF-8 text") from None
    if header is None:
        raise NnctlError(f"{path}: the file is empty (a header row and data rows are needed)")
    return [name.strip() for name in header]


def shorten(names: list[str], limit: int = 20) -> str:
    """A list of names for a message: the first ``limit`` of them."""
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check_header(path: Path, header: list[str], line: int) -> list[str]:
    """Column names, each given and given once: a duplicate would silently feed one column twice."""
    names = [name.strip() for name in header]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name == "":
            raise NnctlError(f"{path}: line {line}, column {i + 1}: the header has an empty column name; every column needs a name")
        if name in first:
            raise NnctlError(
                f"{path}: line {line}: column name {name!r} appears twice (columns {first[name] + 1} and {i + 1}); column names must be unique"
            )
        first[name] = i
    return names


def parse_number(path: Path, line: int, column: str, cell: str) -> float:
    cell = cell.strip()
    if cell == "":
        raise NnctlError(f"{path}: line {line}, column {column!r}: missing value")
    try:
        value = float(cell)
    except ValueError:
        raise NnctlError(f"{path}: line {line}, column {column!r}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise NnctlError(f"{path}: line {line}, column {column!r}: {cell!r} is NaN or infinity; clean or impute the data first")
    if abs(value) > FLOAT32_MAX:
        raise NnctlError(f"{path}: line {line}, column {column!r}: {cell!r} is beyond the float32 range (about ±3.4e38)")
    return value


def is_non_finite_number(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ NPZ


def is_zip(path: Path) -> bool:
    """An .npz is a zip archive; anything else would make ``np.load`` try to unpickle it."""
    with open_regular_file(path, ".npz file") as handle:
        return handle.read(4) == b"PK\x03\x04"


def read_npz_arrays(path: str | Path, keys: list[str] | None = None, kind: str = ".npz file") -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays named ``keys`` (every array when None) of an .npz file, and the names of all its arrays.

    Never ``np.load``: each .npy header is read from its zip member, pickles (object dtypes) are refused, and
    the size the header declares is checked against the member's size and the machine's memory before the
    array is allocated; a member's data is read no further than the header says."""
    path = Path(path)
    invalid = f"not a valid {kind}"
    with open_regular_file(path, kind) as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise NnctlError(f"{path}: {invalid}: not an .npz file (an .npz is a zip archive of .npy arrays; empty, truncated or another format)")
        handle.seek(0)
        try:
            with zipfile.ZipFile(handle) as archive:
                members: dict[str, zipfile.ZipInfo] = {}
                for info in archive.infolist():
                    name = info.filename.removesuffix(".npy")
                    if name in members:
                        raise NnctlError(f"{path}: {invalid}: the archive holds {name!r} twice")
                    members[name] = info
                names = list(members)
                arrays = {}
                for key in names if keys is None else keys:
                    if key not in members:
                        raise NnctlError(f"{path}: no array named {key!r}; the file has: {', '.join(names) or 'nothing'}")
                    arrays[key] = _read_member(archive, members[key], path, key, invalid)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise NnctlError(f"{path}: {invalid}: truncated or corrupt ({exc})") from None
    return arrays, names


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str, invalid: str) -> np.ndarray:
    fmt = np.lib.format
    with archive.open(info) as member:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(member)
        else:
            raise NnctlError(f"{path}: array {key!r}: .npy format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
        if dtype.hasobject:
            raise NnctlError(f"{path}: array {key!r} has dtype object: it holds Python objects (pickle); refused, never unpickled")
        if any(n < 0 for n in shape):
            raise NnctlError(f"{path}: {invalid}: array {key!r} declares the negative shape {shape}")
        count = math.prod(shape)
        needed = count * dtype.itemsize
        held = info.file_size - member.tell()
        if needed != held:
            raise NnctlError(
                f"{path}: {invalid}: array {key!r} declares shape {shape} of {dtype} ({needed:,} bytes) "
                f"but its member holds {held:,} bytes (truncated, or a forged header)"
            )
        flat = read_array(member, count, dtype, path, invalid, f"array {key!r} of shape {shape}")
        member.read(1)  # at the end of the member: zipfile checks its CRC-32 here
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


def read_array(stream, count: int, dtype: np.dtype, path: Path, invalid: str, what: str) -> np.ndarray:
    """``count`` values of ``dtype`` from ``stream`` into a new flat array, refused before allocating when the
    machine has not the memory for it (the sizes come from a header the file itself declares)."""
    needed = count * dtype.itemsize
    problem = resources.check_fits(needed, what)
    if problem:
        raise NnctlError(f"{path}: {problem}")
    flat = np.empty(count, dtype)
    if needed:
        read_into(stream, memoryview(flat.view(np.uint8)), needed, path, invalid)
    return flat


def read_into(stream, buffer: memoryview, size: int, path: Path, invalid: str) -> None:
    """Fill ``buffer`` with exactly ``size`` bytes of ``stream``, a chunk at a time."""
    done = 0
    while done < size:
        n = stream.readinto(buffer[done : min(size, done + CHUNK)])
        if not n:
            raise NnctlError(f"{path}: {invalid}: truncated: {done:,} bytes of data, the header declares {size:,}")
        done += n


def read_npz(path: str | Path, x_key: str, y_key: str | None) -> Table:
    """Features ``x_key`` (rows, features) or (rows, height, width) and targets ``y_key`` of an .npz file;
    pickles are refused, never unpickled, and every size is checked before it is allocated."""
    path = Path(path)
    arrays, _ = read_npz_arrays(path, [key for key in (x_key, y_key) if key is not None])
    x = feature_array(arrays[x_key], f"{path}: array {x_key!r}")
    y = arrays[y_key] if y_key is not None else None
    if y is not None:
        if y.ndim != 1:
            raise NnctlError(f"{path}: array {y_key!r} has shape {y.shape}; expected one target per row")
        if len(y) != len(x):
            raise NnctlError(f"{path}: {x_key!r} has {len(x)} rows but {y_key!r} has {len(y)}")
        if y.dtype.kind not in "fiubUS":
            raise NnctlError(f"{path}: array {y_key!r} has dtype {y.dtype}; targets must be numbers or text")
        if y.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(~np.isfinite(y))
            if len(bad):
                raise NnctlError(f"{path}: array {y_key!r}, row {bad[0]}: {y[bad[0]]} is not a valid target (NaN or infinity)")
    names = [f"x{i}" for i in range(int(np.prod(x.shape[1:])))]
    return Table(x, y if y is not None else np.array([]), names)


def feature_array(x: np.ndarray, where: str) -> np.ndarray:
    """Features (rows, features) or (rows, height, width) as float32, checked: numbers, at least one row of at
    least one value, finite.  ``where`` names the array in errors (``in.npz: array 'x'``)."""
    if x.dtype.kind not in "fiub":
        raise NnctlError(f"{where} has dtype {x.dtype}; features must be numbers")
    if x.ndim not in (2, 3):
        raise NnctlError(f"{where} has shape {x.shape}; expected (rows, features) or (rows, height, width)")
    if len(x) == 0:
        raise NnctlError(f"{where} has shape {x.shape}: no rows; at least one is needed")
    if x.ndim == 2 and x.shape[1] == 0:
        raise NnctlError(f"{where} has shape {x.shape}: rows of zero features; each row needs at least one value")
    if x.ndim == 3 and 0 in x.shape[1:]:
        raise NnctlError(f"{where} has shape {x.shape}: images of {x.shape[1]}x{x.shape[2]} pixels; height and width must be at least 1")
    if x.dtype != np.float32:
        problem = resources.check_fits(x.size * 4, f"{where} as float32")
        if problem:
            raise NnctlError(problem)
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(np.float32)
    check_finite(x.reshape(len(x), -1), where)
    return x


# ------------------------------------------------------------------------------------------------ IDX

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


#: deflate never expands data more than about 1032 times: a gzip claiming more is truncated
MAX_GZIP_RATIO = 1100


def read_idx(path: str | Path, expected_dims: int) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not: magic 0x0000 <type> <dims>, then the sizes as
    big-endian int32, then the data.  The sizes are checked against the file and the machine's memory
    before anything is allocated, and a gzip stream is decompressed no further than they say."""
    path = Path(path)
    with open_regular_file(path, "IDX file") as handle:
        file_size = os.fstat(handle.fileno()).st_size
        gzipped = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        stream = gzip.GzipFile(fileobj=handle, mode="rb") if gzipped else handle
        try:
            return _read_idx_stream(stream, path, expected_dims, file_size, gzipped)
        except (OSError, EOFError, zlib.error) as exc:
            raise NnctlError(f"{path}: cannot read: truncated or corrupt gzip ({exc})") from None


def _read_idx_stream(stream, path: Path, expected_dims: int, file_size: int, gzipped: bool) -> np.ndarray:
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES:
        raise NnctlError(f"{path}: not an IDX file (wrong magic number {magic.hex() or 'none'})")
    dims = magic[3]
    if dims != expected_dims:
        raise NnctlError(f"{path}: IDX file with {dims} dimensions; expected {expected_dims}")
    sizes = stream.read(4 * dims)
    if len(sizes) < 4 * dims:
        raise NnctlError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{dims}i", sizes)
    if any(n < 0 for n in shape):
        raise NnctlError(f"{path}: not a valid IDX file: its header declares the negative size {'x'.join(map(str, shape))}")
    dtype = np.dtype(IDX_TYPES[magic[2]])
    count = math.prod(shape)
    needed = count * dtype.itemsize
    header = 4 + 4 * dims
    available = (file_size - header) if not gzipped else file_size * MAX_GZIP_RATIO
    if available < needed:
        held = f"{file_size - header:,} bytes of data" if not gzipped else f"{file_size:,} compressed bytes"
        raise NnctlError(f"{path}: truncated: {held}, the header promises {needed:,} ({'x'.join(map(str, shape))} of {dtype})")
    flat = read_array(stream, count, dtype, path, "not a valid IDX file", f"the {'x'.join(map(str, shape))} array its header declares")
    if stream.read(1):
        raise NnctlError(f"{path}: not a valid IDX file: more data than its header declares ({'x'.join(map(str, shape))} of {dtype})")
    return flat.reshape(shape)


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
        if (folder / name).exists() and not (folder / name).is_dir():
            return folder / name  # a FIFO or a device is found, then refused by name when read
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
        images_path, labels_path = found[f"{part}_images"], found[f"{part}_labels"]
        if len(images) == 0:
            raise NnctlError(f"{images_path}: holds no images")
        if 0 in images.shape[1:]:
            raise NnctlError(f"{images_path}: images of {images.shape[1]}x{images.shape[2]} pixels; height and width must be at least 1")
        if len(images) != len(labels):
            raise NnctlError(f"{folder}: {len(images)} {part} images but {len(labels)} {part} labels")
        if images.dtype.kind == "f":
            check_finite(images.reshape(len(images), -1), f"{images_path}: image")
        check_labels(labels, labels_path, dataset)
    train_shape, test_shape = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if test_shape != train_shape:
        raise NnctlError(
            f"{found['test_images']}: images of {test_shape[0]}x{test_shape[1]} pixels, the training images are {train_shape[0]}x{train_shape[1]}"
        )
    return arrays


def check_labels(labels: np.ndarray, path: Path, dataset: str, n_classes: int = 10) -> None:
    """IDX labels are class indices: whole numbers 0 to 9.  Anything else would pick a wrong class or fail
    in the middle of training."""
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~((labels >= 0) & (labels < n_classes) & (labels == np.floor(labels))))
    if len(bad):
        value = labels[bad[0]].item()
        raise NnctlError(f"{path}: label {value!r} at index {bad[0]}; {dataset} labels are whole numbers 0 to {n_classes - 1}")

"""Hostile input through the real CLI (issue #11): data that would train silently wrong, sizes declared inside
files, limits on --set values and sweep specs, special files and encodings, and predict's inputs.

Each case is one ``nnctl`` command on tiny files.  It must end with exit code 2 and exactly one line
``error: ...`` naming the file and the place, no traceback, and every file the user had left as it was (no
run or sweep folder either).  Each command runs with a 3 GB address-space limit and a timeout, so that a
missing size check fails fast (MemoryError) instead of eating the machine, and a read that never ends fails
the test instead of hanging it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import resource
import stat
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

TIMEOUT = 30
ADDRESS_SPACE = 3 << 30


def _limit_memory():  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_nnctl(cwd: Path, *args, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)],
        cwd=cwd,
        stdin=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        preexec_fn=_limit_memory,
    )
    result.stdout = result.stdout.decode("utf-8", "replace")
    result.stderr = result.stderr.decode("utf-8", "replace")
    return result


def run_in_process(cwd: Path, args, monkeypatch, capsys) -> SimpleNamespace:
    """The CLI's ``main`` in this process (what ``python -m nnctl`` runs, without the 0.7 s start-up of a new
    interpreter): exit code, stdout, stderr; an exception that escapes it is reported as a traceback."""
    from nnctl import cli

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["nnctl", *map(str, args)])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - what a user would have seen as a traceback
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=1, stdout=captured.out, stderr=captured.err + traceback.format_exc())
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def snapshot(*folders: Path) -> dict:
    """Every file (its SHA-256), folder and special file under ``folders``."""
    seen = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs:
                seen[os.path.join(root, name)] = "folder"
            for name in files:
                path = os.path.join(root, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    with open(path, "rb") as handle:
                        seen[path] = hashlib.sha256(handle.read()).hexdigest()
                else:
                    seen[path] = oct(stat.S_IFMT(mode))
    return seen


def assert_refused(result, fragments, before, after):
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert after == before, "the command changed or created files"


# ------------------------------------------------------------------------------------------- builders

CSV = "a,b,y\n0,1,p\n1,0,q\n0.5,1,p\n1,0.5,q\n0,0,p\n1,1,q\n0.2,0.8,p\n0.8,0.2,q\n"


def config(tmp: Path, data: str, units: int = 2, name: str = "c.yaml", extra: str = "") -> Path:
    path = tmp / name
    path.write_text(
        f"name: t\ndata: {data}\nmodel:\n  layers:\n    - {{type: dense, units: {units}}}\n"
        "optimizer: {name: sgd, lr: 0.1}\ntraining: {epochs: 1, batch_size: 4}\n" + extra
    )
    return path


def csv_config(tmp: Path, text: str = CSV, data: str = "{dataset: csv, path: d.csv, target: y}") -> list:
    (tmp / "d.csv").write_text(text)
    return ["train", config(tmp, data), "--out", tmp / "runs"]


def with_labels(labels: list[str]) -> str:
    rows = CSV.splitlines()
    return "\n".join([rows[0]] + [",".join(row.split(",")[:2] + [label]) for row, label in zip(rows[1:], labels)]) + "\n"


def npz_config(tmp: Path, data: str = "{dataset: npz, path: a.npz}", units: int = 2, **arrays) -> list:
    if arrays:
        np.savez(tmp / "a.npz", **arrays)
    return ["train", config(tmp, data, units), "--out", tmp / "runs"]


X8 = np.random.default_rng(0).normal(size=(8, 2))
Y8 = np.arange(8) % 2

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.float32: 0x0D}
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx(array, dtype=np.uint8, shape=None) -> bytes:
    array = np.asarray(array)
    shape = array.shape if shape is None else shape
    big_endian = np.dtype(dtype).newbyteorder(">")
    header = bytes([0, 0, IDX_CODES[dtype], len(shape)]) + np.array(shape, dtype=">i4").tobytes()
    return header + array.astype(big_endian).tobytes()


def mnist_config(tmp: Path, **files) -> list:
    """A tiny MNIST folder (4x4 images, 8 train, 4 test); ``files`` replaces a file's bytes (a name ending in
    ``_gz`` writes it gzipped)."""
    rng = np.random.default_rng(0)
    contents = {
        "train_images": idx(rng.integers(0, 256, (8, 4, 4))),
        "train_labels": idx(np.arange(8) % 10),
        "test_images": idx(rng.integers(0, 256, (4, 4, 4))),
        "test_labels": idx(np.arange(4)),
    }
    folder = tmp / "mnist"
    folder.mkdir()
    for key, data in files.items():
        contents.pop(key.removesuffix("_gz"))
        name = IDX_NAMES[key.removesuffix("_gz")] + (".gz" if key.endswith("_gz") else "")
        if data is not None:
            (folder / name).write_bytes(data)
        else:
            os.mkfifo(folder / name)
    for key, data in contents.items():
        (folder / IDX_NAMES[key]).write_bytes(data)
    return ["train", config(tmp, "{dataset: mnist, path: mnist}", units=10), "--out", tmp / "runs"]


def npy_member(shape, descr="<f8", body=b"") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + body


def write_zip(path: Path, members: dict[str, bytes], declared_sizes: dict[str, int] | None = None) -> Path:
    """A zip of ``members``; ``declared_sizes`` forges the uncompressed size its directory declares."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for info in archive.infolist():
            if declared_sizes and info.filename in declared_sizes:
                info.file_size = declared_sizes[info.filename]  # written (as zip64) into the central directory
    return path


@functools.cache
def zeros_gzip_member() -> bytes:
    return gzip.compress(bytes(1 << 24), compresslevel=1)  # 16 MB of zeros in about 70 KB


SPIRAL = "{dataset: spiral, samples: 40}"


def sweep_file(tmp: Path, body: str) -> list:
    base = config(tmp, SPIRAL, name="base.yaml")
    (tmp / "s.yaml").write_text(f"base: {base.name}\n" + body)
    return ["sweep", tmp / "s.yaml", "--out", tmp / "out"]


# ---------------------------------------------------------------------------------------------- cases
# Each case builds its files in ``tmp`` and returns (arguments, fragments of the error line[, options]).

CASES: dict[str, dict] = {}


def case(category: str, train: bool = False):
    """Register a case.  A ``train CONFIG --out RUNS`` command runs as ``validate CONFIG`` (the same reading
    and checking, a lighter process) unless ``train``."""

    def register(build):
        build.train = train
        CASES.setdefault(category, {})[build.__name__] = build
        return build

    return register


# --- data that would train silently wrong (or fail mid-training) --------------------------------------


@case("wrong-data", train=True)
def csv_duplicate_column_name(tmp):
    return csv_config(tmp, CSV.replace("a,b,y", "a,a,y")), ["d.csv", "line 1", "'a' appears twice"]


@case("wrong-data")
def csv_empty_column_name(tmp):
    return csv_config(tmp, CSV.replace("a,b,y", "a,,y")), ["d.csv", "column 2", "empty column name"]


@case("wrong-data", train=True)
def csv_nan_label(tmp):
    return csv_config(tmp, with_labels(["p", "nan"] * 4)), ["d.csv", "line 3", "'nan'", "NaN or infinity"]


@case("wrong-data")
def csv_infinite_label_in_test_path(tmp):
    (tmp / "t.csv").write_text(with_labels(["p", "q", "p", "-inf"] * 2))
    return csv_config(tmp, data="{dataset: csv, path: d.csv, test_path: t.csv, target: y}"), ["t.csv", "line 5", "NaN or infinity"]


@case("wrong-data")
def csv_test_path_with_other_columns(tmp):
    (tmp / "t.csv").write_text(CSV.replace("a,b,y", "a,c,y"))  # c would silently have been read as b
    return csv_config(tmp, data="{dataset: csv, path: d.csv, test_path: t.csv, target: y}"), ["t.csv", "no column 'b'"]


@case("wrong-data")
def csv_target_also_a_feature(tmp):
    return csv_config(tmp, data="{dataset: csv, path: d.csv, target: y, columns: [a, y]}"), ["data.columns.1", "'y' is the target"]


@case("wrong-data")
def csv_feature_listed_twice(tmp):
    return csv_config(tmp, data="{dataset: csv, path: d.csv, target: y, columns: [a, a]}"), ["data.columns.1", "'a' is listed twice"]


@case("wrong-data")
def csv_fractional_class_labels(tmp):
    return csv_config(tmp, with_labels(["0.5", "1.5"] * 4)), ["d.csv", "line 2", "'0.5'", "whole numbers"]


@case("wrong-data")
def npz_zero_features(tmp):
    return npz_config(tmp, x=np.zeros((8, 0)), y=Y8), ["a.npz", "'x'", "zero features"]


@case("wrong-data")
def npz_zero_rows(tmp):
    return npz_config(tmp, x=np.zeros((0, 2)), y=np.zeros(0)), ["a.npz", "'x'", "no rows"]


@case("wrong-data")
def npz_images_of_zero_height(tmp):
    return npz_config(tmp, x=np.zeros((8, 0, 3)), y=Y8), ["a.npz", "0x3 pixels"]


@case("wrong-data", train=True)
def npz_nan_labels(tmp):
    return npz_config(tmp, x=X8, y=np.array([0, 1, np.nan, 1, 0, 1, 0, 1])), ["a.npz", "array 'y', row 2", "NaN or infinity"]


@case("wrong-data")
def npz_fractional_labels_in_test_path(tmp):
    np.savez(tmp / "train.npz", x=X8, y=Y8)
    np.savez(tmp / "test.npz", x=X8, y=Y8 + 0.5)
    return npz_config(tmp, "{dataset: npz, train_path: train.npz, test_path: test.npz}"), ["test.npz", "row 0", "'0.5'", "whole numbers"]


@case("wrong-data")
def npz_complex_labels(tmp):
    return npz_config(tmp, x=X8, y=Y8.astype(complex)), ["a.npz", "'y'", "complex128", "numbers or text"]


@case("wrong-data", train=True)
def idx_label_beyond_the_outputs(tmp):
    return mnist_config(tmp, train_labels=idx([0, 1, 2, 200, 4, 5, 6, 7])), ["train-labels-idx1-ubyte", "label 200", "0 to 9"]


@case("wrong-data")
def idx_negative_label_gzipped(tmp):
    labels = gzip.compress(idx([0, 1, -1, 3], dtype=np.int8))
    return mnist_config(tmp, test_labels_gz=labels), ["t10k-labels-idx1-ubyte.gz", "label -1", "0 to 9"]


@case("wrong-data")
def idx_fractional_label(tmp):
    return mnist_config(tmp, train_labels=idx([0, 1, 2.5, 3, 4, 5, 6, 7], dtype=np.float32)), ["train-labels-idx1-ubyte", "label 2.5"]


@case("wrong-data", train=True)
def idx_nan_pixels(tmp):
    images = np.full((8, 4, 4), 0.5, dtype=np.float32)
    images[3, 1, 1] = np.nan
    return mnist_config(tmp, train_images=idx(images, dtype=np.float32)), ["train-images-idx3-ubyte", "row 3", "NaN or infinity"]


@case("wrong-data")
def idx_images_of_zero_height(tmp):
    return mnist_config(tmp, train_images=idx(np.zeros((8, 0, 4)))), ["train-images-idx3-ubyte", "0x4 pixels"]


@case("wrong-data")
def idx_test_images_of_another_size(tmp):
    return mnist_config(tmp, test_images=idx(np.zeros((4, 5, 5)))), ["t10k-images-idx3-ubyte", "5x5", "4x4"]


# --- sizes declared inside files ----------------------------------------------------------------------


@case("declared-sizes", train=True)
def npz_header_declares_petabytes(tmp):
    write_zip(tmp / "a.npz", {"x.npy": npy_member((10**15, 2)), "y.npy": npy_member((8,), "<i8", Y8.tobytes())})
    return npz_config(tmp), ["a.npz", "array 'x' declares shape (1000000000000000, 2)", "holds 0 bytes"]


@case("declared-sizes")
def npz_zip_member_declares_a_terabyte(tmp):
    header = npy_member((2**37,))
    members = {"x.npy": header + bytes(64), "y.npy": npy_member((8,), "<i8", Y8.tobytes())}
    write_zip(tmp / "a.npz", members, declared_sizes={"x.npy": len(header) + 2**40})
    return npz_config(tmp), ["a.npz", "'x'", "memory"]


@case("declared-sizes")
def npz_header_product_overflows_int64(tmp):
    write_zip(tmp / "a.npz", {"x.npy": npy_member((2**32, 2**32, 16)), "y.npy": npy_member((8,), "<i8", Y8.tobytes())})
    return npz_config(tmp), ["a.npz", "(4294967296, 4294967296, 16)"]


@case("declared-sizes")
def idx_negative_count(tmp):
    return mnist_config(tmp, train_labels=idx(np.arange(8), shape=(-1,))), ["train-labels-idx1-ubyte", "negative size -1"]


@case("declared-sizes")
def idx_gzip_decompressing_to_gigabytes(tmp):
    # the header says 8 labels; the stream behind them inflates to 2.5 GB of zeros
    bomb = gzip.compress(idx(np.arange(8) % 10)) + zeros_gzip_member() * 160
    return mnist_config(tmp, train_labels_gz=bomb), ["train-labels-idx1-ubyte.gz", "more data than its header declares"]


# --- checkpoints (eval and predict read them with the same limits) --------------------------------------


@case("checkpoints")
def checkpoint_header_declares_petabytes(tmp):
    write_zip(tmp / "c.npz", {"meta.json.npy": npy_member((), "<U2", "{}".encode("utf-32-le")), "model/w.npy": npy_member((10**15,))})
    return ["eval", tmp / "c.npz"], ["c.npz", "not a valid checkpoint", "'model/w' declares shape (1000000000000000,)"]


def tampered_checkpoint(tmp: Path, trained: dict, **meta_changes) -> Path:
    with np.load(trained["csv"] / "checkpoints" / "last.npz") as checkpoint:
        arrays = {name: checkpoint[name] for name in checkpoint.files}
    meta = json.loads(str(arrays["meta.json"]))
    meta.update(meta_changes)
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(tmp / "c.npz", **arrays)
    return tmp / "c.npz"


@case("checkpoints")
def checkpoint_meta_columns_not_a_list(tmp, trained):
    (tmp / "in.csv").write_text(CSV)
    return ["predict", tampered_checkpoint(tmp, trained, input_columns=5), tmp / "in.csv"], ["c.npz", "input_columns: 5"]


@case("checkpoints")
def checkpoint_meta_without_class_names(tmp, trained):
    (tmp / "in.csv").write_text(CSV)
    return ["predict", tampered_checkpoint(tmp, trained, class_names=[]), tmp / "in.csv"], ["c.npz", "names 0 classes for a model of 2"]


@case("checkpoints")
def checkpoint_with_normalization_arrays_its_config_does_not_name(tmp, trained):
    path = tampered_checkpoint(tmp, trained)
    with np.load(path) as checkpoint:
        arrays = {name: checkpoint[name] for name in checkpoint.files}
    np.savez(path, **arrays, **{"preprocess/shift": np.zeros(3, np.float32)})
    (tmp / "in.csv").write_text(CSV)
    return ["predict", path, tmp / "in.csv"], ["c.npz", "normalize: none: preprocess/shift unexpected"]


@case("checkpoints")
def checkpoint_meta_nested_json_bomb(tmp, trained):
    path = tampered_checkpoint(tmp, trained)
    with np.load(path) as checkpoint:
        arrays = {name: checkpoint[name] for name in checkpoint.files}
    arrays["meta.json"] = np.array("[" * 100_000 + "]" * 100_000)
    np.savez(path, **arrays)
    return ["eval", path], ["c.npz", "not an nnctl checkpoint"]


# --- --set values and sweep specs: the limits of a file ---------------------------------------------------


def nested_aliases(levels: int = 9, width: int = 10) -> str:
    parts = ["&a0 [" + ", ".join(["x1"] * width) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + f", *a{levels - 1}]"


@case("set-and-sweep")
def set_infinite_penalty(tmp):  # pydantic's NonNegativeFloat admits infinity: it used to end as "diverged", exit 3
    return ["validate", config(tmp, SPIRAL), "--set", "model.regularization.l2=.inf"], ["model.regularization.l2", "finite number"]


@case("set-and-sweep")
def set_nan_weight_decay(tmp):
    return ["validate", config(tmp, SPIRAL), "--set", "optimizer.weight_decay=.nan"], ["optimizer.weight_decay", "finite number"]


@case("set-and-sweep")
def set_infinite_threshold_of_a_fixed_unit(tmp):
    path = tmp / "mp.yaml"
    path.write_text("data: {dataset: logic, function: and}\nmodel: {type: mcculloch_pitts, weights: [1, 1], threshold: 1.5}\n")
    return ["validate", path, "--set", "model.threshold=-.inf"], ["model.threshold", "finite number"]


@case("set-and-sweep")
def set_value_nested_thousands_deep(tmp):
    return ["validate", config(tmp, SPIRAL), "--set", "name=" + "[" * 5000 + "]" * 5000], ["--set name=[[[", "nested"]


@case("set-and-sweep")
def set_value_alias_bomb(tmp):
    return ["validate", config(tmp, SPIRAL), "--set", "data.features=" + nested_aliases()], ["--set data.features=", "100,000 values"]


@case("set-and-sweep")
def set_value_with_a_duplicate_key(tmp):
    return ["validate", config(tmp, SPIRAL), "--set", "optimizer={name: sgd, lr: 0.1, lr: 50}"], ["--set optimizer=", "'lr' appears twice"]


@case("set-and-sweep")
def sweep_trials_1e11(tmp):
    body = "method: random\ntrials: 100000000000\nparameters:\n  optimizer.lr: {distribution: loguniform, low: 0.001, high: 0.1}\n"
    return sweep_file(tmp, body), ["s.yaml:3:", "trials", "100000"]


@case("set-and-sweep")
def sweep_infinite_bound(tmp):
    body = "method: random\ntrials: 1\nparameters:\n  optimizer.lr: {distribution: uniform, low: 0.01, high: .inf}\n"
    return sweep_file(tmp, body), ["s.yaml:", "parameters.optimizer.lr", "finite"]


@case("set-and-sweep")
def sweep_int_bounds_beyond_int64(tmp):
    body = "method: random\ntrials: 1\nparameters:\n  training.batch_size: {distribution: int, low: 1, high: 1.0e30}\n"
    return sweep_file(tmp, body), ["s.yaml:", "training.batch_size", "whole-number bounds"]


@case("set-and-sweep")
def sweep_astronomical_grid(tmp):
    paths = ["optimizer.lr", "optimizer.momentum", "training.epochs", "training.batch_size", "data.noise", "data.samples",
             "seed", "model.layers.0.units", "data.test_fraction", "training.checkpoint_every", "data.seed", "name"]  # fmt: skip
    body = "parameters:\n" + "".join(f"  {path}: [{', '.join(str(i + 1) for i in range(10))}]\n" for path in paths)
    return sweep_file(tmp, body), ["s.yaml:", "1,000,000,000,000 grid points", "at most 100,000"]


@case("set-and-sweep")
def sweep_duplicate_seed(tmp):
    return sweep_file(tmp, "seeds: [0, 1, 0]\nparameters:\n  optimizer.lr: [0.1]\n"), ["s.yaml:2:15", "seeds.2", "seed 0 appears twice"]


@case("set-and-sweep")
def sweep_duplicate_grid_value(tmp):
    return sweep_file(tmp, "parameters:\n  optimizer.lr: [0.1, 0.2, 0.1]\n"), ["s.yaml:", "parameters.optimizer.lr", "0.1 appears twice"]


@case("set-and-sweep")
def sweep_seed_beyond_32_bits(tmp):
    return sweep_file(tmp, "seeds: [4294967296]\nparameters:\n  optimizer.lr: [0.1]\n"), ["s.yaml:", "seeds.0", "4294967296"]


@case("set-and-sweep")
def sweep_name_of_300_characters(tmp):
    return sweep_file(tmp, f"name: {'n' * 300}\nparameters:\n  optimizer.lr: [0.1]\n"), ["s.yaml:", "name", "100 characters"]


@case("set-and-sweep")
def one_line_sweep_with_20001_seeds(tmp):
    seeds = ",".join(map(str, range(20_001)))
    command = ["sweep", config(tmp, SPIRAL), "-p", "optimizer.lr=" + ",".join(f"0.{i}" for i in range(1, 10)), "--seeds", seeds]
    return command + ["--out", tmp / "out"], ["command line", "180,009 trials", "at most 100,000"]


@case("set-and-sweep")
def one_line_sweep_value_nested_thousands_deep(tmp):
    command = ["sweep", config(tmp, SPIRAL), "-p", "name=" + "[" * 5000 + "]" * 5000, "--out", tmp / "out"]
    return command, ["-p name=[[[", "nested"]


@case("set-and-sweep", train=True)
def config_data_seed_below_zero(tmp):
    return ["train", config(tmp, SPIRAL), "--set", "data.seed=-99999999999999999999", "--out", tmp / "runs"], ["data.seed", "greater than or equal to 0"]


@case("set-and-sweep")
def config_logic_table_repeated_1e11_times(tmp):
    data = "{dataset: logic, function: xor, repeat: 100000000000}"
    return ["train", config(tmp, data), "--out", tmp / "runs"], ["c.yaml:2:", "data.repeat", "memory"]


@case("set-and-sweep", train=True)
def config_image_shift_beyond_int64(tmp):
    data = "{dataset: npz, path: a.npz, augment: {shift: 99999999999999999999}}"
    return npz_config(tmp, data, x=np.zeros((8, 3, 3)), y=Y8), ["c.yaml:2:", "data.augment.shift", "3x3 images"]


# --- special files, encodings, YAML structure -------------------------------------------------------------


@case("special-files", train=True)
def config_is_dev_zero(tmp):
    return ["train", "/dev/zero", "--out", tmp / "runs"], ["/dev/zero", "is a device"]


@case("special-files")
def config_is_a_fifo(tmp):
    os.mkfifo(tmp / "c.yaml")
    return ["validate", tmp / "c.yaml"], ["c.yaml", "is a pipe (FIFO)"]


@case("special-files")
def config_is_stdin_kept_open(tmp):
    read_end, write_end = os.pipe()  # the writer stays open: a read would wait forever
    return ["validate", "/dev/stdin"], ["/dev/stdin", "not a regular file"], {"stdin": read_end, "keep_open": write_end}


@case("special-files")
def sweep_file_is_a_fifo(tmp):
    os.mkfifo(tmp / "s.yaml")
    return ["sweep", tmp / "s.yaml", "--out", tmp / "out"], ["s.yaml", "is a pipe (FIFO)"]


@case("special-files", train=True)
def csv_data_is_a_fifo(tmp):
    os.mkfifo(tmp / "d.csv")
    return ["train", config(tmp, "{dataset: csv, path: d.csv, target: y}"), "--out", tmp / "runs"], ["d.csv", "is a pipe (FIFO)"]


@case("special-files")
def npz_data_is_a_fifo(tmp):
    os.mkfifo(tmp / "a.npz")
    return npz_config(tmp), ["a.npz", "is a pipe (FIFO)"]


@case("special-files")
def idx_file_is_a_fifo(tmp):
    return mnist_config(tmp, train_labels=None), ["train-labels-idx1-ubyte", "is a pipe (FIFO)"]


@case("special-files")
def csv_data_is_dev_urandom(tmp):
    return ["validate", config(tmp, "{dataset: csv, path: /dev/urandom, target: y}")], ["/dev/urandom", "is a device"]


@case("special-files")
def yaml_two_merge_keys(tmp):
    path = config(tmp, SPIRAL)
    path.write_text(path.read_text().replace("optimizer: {name: sgd, lr: 0.1}\n", "optimizer:\n  <<: {name: sgd}\n  <<: {lr: 5.0}\n"))
    return ["validate", path], ["c.yaml:8:3", "'<<' appears twice"]


@case("special-files")
def yaml_several_documents(tmp):
    path = config(tmp, SPIRAL)
    path.write_text(path.read_text() + "---\nname: other\n")
    return ["validate", path], ["c.yaml:", "several YAML documents"]


# --- predict --------------------------------------------------------------------------------------------


@case("predict")
def predict_csv_not_utf8(tmp, trained):
    (tmp / "in.csv").write_bytes("a,b\n0,1\n".encode() + "é,1\n".encode("latin-1"))
    return ["predict", trained["csv"], tmp / "in.csv"], ["in.csv", "not a readable CSV", "UTF-8"]


@case("predict")
def predict_csv_duplicate_column(tmp, trained):
    (tmp / "in.csv").write_text("a,b,a\n0,1,5\n1,0,5\n")
    return ["predict", trained["csv"], tmp / "in.csv"], ["in.csv", "'a' appears twice"]


@case("predict")
def predict_images_for_a_feature_model(tmp, trained):
    np.savez(tmp / "in.npz", x=np.zeros((3, 1, 2)))
    return ["predict", trained["csv"], tmp / "in.npz"], ["in.npz", "(3, 1, 2)", "rows of 2 features"]


@case("predict")
def predict_images_of_another_shape(tmp, trained):
    np.savez(tmp / "in.npz", x=np.zeros((3, 2, 8)))
    return ["predict", trained["images"], tmp / "in.npz"], ["in.npz", "2x8", "trained on 4x4"]


@case("predict")
def predict_npz_without_rows(tmp, trained):
    np.savez(tmp / "in.npz", x=np.zeros((0, 2)))
    return ["predict", trained["csv"], tmp / "in.npz"], ["in.npz", "no rows"]


@case("predict")
def predict_npz_header_declares_petabytes(tmp, trained):
    write_zip(tmp / "in.npz", {"x.npy": npy_member((10**15, 2))})
    return ["predict", trained["csv"], tmp / "in.npz"], ["in.npz", "declares shape (1000000000000000, 2)"]


@case("predict")
def predict_nan_target_column(tmp, trained):
    # known targets in the input are scored against: NaN is no class name there either
    (tmp / "in.csv").write_text("a,b,y\n0,1,p\n1,0,nan\n")
    return ["predict", trained["csv"], tmp / "in.csv"], ["in.csv", "line 3", "NaN or infinity"]


# --------------------------------------------------------------------------------------------- the test


class TrainedRuns(dict):
    """Tiny trained runs, each trained when a case first asks for it: "csv" (features a, b; classes p, q) and
    "images" (4x4 images)."""

    DATA = {"csv": "{dataset: csv, path: d.csv, target: y}", "images": "{dataset: npz, path: images.npz}"}

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder
        (folder / "d.csv").write_text(CSV)
        np.savez(folder / "images.npz", x=np.random.default_rng(0).random((8, 4, 4)), y=Y8)

    def __missing__(self, key: str) -> Path:
        result = run_nnctl(self.folder, "train", config(self.folder, self.DATA[key], name=f"{key}.yaml"), "--run-dir", self.folder / key, "--json")
        assert result.returncode == 0, result.stderr
        self[key] = self.folder / key
        return self[key]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainedRuns:
    return TrainedRuns(tmp_path_factory.mktemp("trained"))


def params():
    for category, builds in CASES.items():
        for name, build in builds.items():
            yield pytest.param(category, name, id=f"{category}/{name}")


@pytest.mark.parametrize(("category", "name"), list(params()))
def test_hostile_input_is_refused_with_one_line(category, name, tmp_path, request, monkeypatch, capsys):
    build = CASES[category][name]
    needs_runs = "trained" in build.__code__.co_varnames[: build.__code__.co_argcount]
    built = build(tmp_path, request.getfixturevalue("trained")) if needs_runs else build(tmp_path)
    args, fragments, options = (*built, {})[:3]
    if args[0] == "train" and not build.train:
        args = ["validate", args[1], *args[4:]]  # train CONFIG --out RUNS ... -> validate CONFIG ...
    watched = [tmp_path] + ([request.getfixturevalue("trained").folder] if needs_runs else [])
    before = snapshot(*watched)
    try:
        if category == "special-files" or options:  # could block on a pipe or device: a process with a timeout
            result = run_nnctl(tmp_path, *args, stdin=options.get("stdin", subprocess.DEVNULL))
        else:
            result = run_in_process(tmp_path, args, monkeypatch, capsys)
    finally:
        for fd in (options.get("stdin"), options.get("keep_open")):
            if isinstance(fd, int):
                os.close(fd)
    assert_refused(result, fragments, before, snapshot(*watched))


def test_minus_one_plus_one_labels_are_two_classes(tmp_path):
    """Whole-number labels of either sign are class names (the perceptron's -1/+1), not refused."""
    args = csv_config(tmp_path, with_labels(["1", "-1"] * 4))
    result = run_nnctl(tmp_path, *args, "--json")
    assert result.returncode == 0, result.stderr
    from nnctl.runs import load_checkpoint

    _, meta = load_checkpoint(Path(json.loads(result.stdout)["run_dir"]) / "checkpoints/last.npz")
    assert meta["class_names"] == ["-1", "1"]

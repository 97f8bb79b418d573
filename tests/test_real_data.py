"""Real data through the CLI: CSV, NPZ, MNIST-format IDX files, the bundled digits, data show, predict."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, REPO, nnctl, nnctl_in_process, train_json
from test_cli_errors import assert_clean_error

MLP = """
model:
  layers:
    - {type: dense, units: 16, activation: tanh}
    - {type: dense, units: UNITS}
optimizer: {name: adam, lr: 0.02}
training: {epochs: 40, batch_size: 16}
"""


def write_config(folder: Path, data: str, units: int = 2, extra: str = "", name="exp.yaml") -> Path:
    path = folder / name
    path.write_text(f"name: test\nseed: 0\ndata: {data}\n" + MLP.replace("UNITS", str(units)) + extra)
    return path


def blobs(n=200, seed=0):
    """Two separable classes in 3 features, with text labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 3)) + np.where(y[:, None] == 1, 2.0, -2.0) * np.array([1, 0.5, 0])
    return x, np.where(y == 1, "yes", "no")


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ CSV


def test_csv_with_text_classes_trains_evaluates_and_predicts(tmp_path, runs):
    x, y = blobs()
    write_csv(tmp_path / "data.csv", ["a", "b", "c", "label"], [[*map(float, row), label] for row, label in zip(x, y)])
    config = write_config(tmp_path, "{dataset: csv, path: data.csv, target: label, normalize: standard}")
    summary = train_json(config, out=runs)
    assert summary["test_accuracy"] >= 0.95
    run = Path(summary["run_dir"])
    meta_classes = json.loads(str(np.load(run / "checkpoints/last.npz")["meta.json"]))["class_names"]
    assert meta_classes == ["no", "yes"]
    # predict on rows with the target column: class names out, accuracy on stderr
    new = write_csv(tmp_path / "new.csv", ["c", "label", "b", "a"], [[r[2], l, r[1], r[0]] for r, l in zip(x[:50], y[:50])])
    result = nnctl("predict", run, new, "--proba")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "prediction,p_no,p_yes" and len(lines) == 51
    predicted = [line.split(",")[0] for line in lines[1:]]
    assert set(predicted) <= {"yes", "no"}
    assert np.mean(np.array(predicted) == y[:50]) >= 0.9
    assert "accuracy" in result.stderr
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_predict_reads_the_training_delimiter(tmp_path, runs):
    x, y = blobs(120)
    rows = [[*map(float, row), label] for row, label in zip(x, y)]
    with open(tmp_path / "data.csv", "w", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows([["a", "b", "c", "label"], *rows])
    config = write_config(tmp_path, "{dataset: csv, path: data.csv, target: label, delimiter: ';'}")
    run = train_json(config, out=runs)["run_dir"]
    result = nnctl("predict", run, tmp_path / "data.csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 121 and "accuracy" in result.stderr
    assert_clean_error(nnctl("predict", run, tmp_path / "data.csv", "--out", tmp_path / "data.csv"), "is the input file")


def test_csv_regression_and_relative_paths(tmp_path, runs):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (300, 2))
    target = x[:, 0] * 2 - x[:, 1]
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "sub" / "reg.csv", ["u", "v", "t"], np.column_stack([x, target]).tolist())
    config = write_config(tmp_path / "sub", "{dataset: csv, path: reg.csv, target: t}", units=1, extra="loss: mse\n")
    summary = train_json(config, out=runs, cwd=REPO)  # the path is relative to the config, not to the cwd
    assert summary["test_r2"] > 0.95
    resolved = (Path(summary["run_dir"]) / "config.yaml").read_text()
    assert str((tmp_path / "sub" / "reg.csv").resolve()) in resolved  # absolute in the run folder


CSV_BAD = {
    "missing value": ("a,b,label\n1,2,x\n3,,y\n", ["line 3", "column 'b'", "missing value"]),
    "not a number": ("a,b,label\n1,2,x\n3,four,y\n", ["line 3", "column 'b'", "'four' is not a number"]),
    "ragged row": ("a,b,label\n1,2,x\n3,4,y,9\n", ["line 3 has 4 fields, the header has 3"]),
    "empty file": ("", ["the file is empty"]),
    "header only": ("a,b,label\n", ["no data rows"]),
    "no target column": ("a,b,kind\n1,2,x\n3,4,y\n", ["no target column 'label'", "the columns are: a, b, kind"]),
    "infinite value": ("a,b,label\n1,2,x\n3,inf,y\n", ["NaN or infinity"]),
}


@pytest.mark.parametrize("case", list(CSV_BAD))
def test_bad_csv(tmp_path, case):
    text, fragments = CSV_BAD[case]
    (tmp_path / "data.csv").write_text(text)
    config = write_config(tmp_path, "{dataset: csv, path: data.csv, target: label}")
    assert_clean_error(nnctl_in_process("train", config, "--out", tmp_path / "runs"), "data.csv", *fragments)
    assert not (tmp_path / "runs").exists()


def test_missing_data_file(tmp_path):
    config = write_config(tmp_path, "{dataset: csv, path: nowhere.csv, target: label}")
    assert_clean_error(nnctl("train", config), "nowhere.csv: file not found")


# ------------------------------------------------------------------------------------------------ NPZ


def test_npz_with_separate_train_and_test_files(tmp_path, runs):
    x, y = blobs(300)
    labels = (y == "yes").astype(np.int64)
    np.savez(tmp_path / "train.npz", features=x[:200], target=labels[:200])
    np.savez(tmp_path / "test.npz", features=x[200:], target=labels[200:])
    config = write_config(tmp_path, "{dataset: npz, train_path: train.npz, test_path: test.npz, x: features, y: target, val_fraction: 0.1}")
    summary = train_json(config, out=runs)
    assert summary["test_accuracy"] >= 0.95
    shown = nnctl("data", "show", config)
    assert shown.returncode == 0 and "100" in shown.stdout and "180" in shown.stdout and "20" in shown.stdout


NPZ_BAD = {
    "missing array": (lambda p: np.savez(p, x=np.zeros((4, 2)), labels=np.zeros(4)), ["no array named 'y'", "x, labels"]),
    "object dtype": (lambda p: np.savez(p, x=np.array([[1, "a"]], dtype=object), y=np.zeros(1)), ["dtype object", "refused"]),
    "length mismatch": (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.zeros(3)), ["'x' has 4 rows but 'y' has 3"]),
    "nan": (lambda p: np.savez(p, x=np.array([[1.0, np.nan], [0, 1]]), y=np.zeros(2)), ["row 0", "NaN or infinity"]),
    "not an npz": (lambda p: p.write_text("hello"), ["not a valid .npz"]),
}


@pytest.mark.parametrize("case", list(NPZ_BAD))
def test_bad_npz(tmp_path, case):
    make, fragments = NPZ_BAD[case]
    make(tmp_path / "arrays.npz")
    config = write_config(tmp_path, "{dataset: npz, path: arrays.npz}")
    assert_clean_error(nnctl_in_process("train", config, "--out", tmp_path / "runs"), "arrays.npz", *fragments)


# ------------------------------------------------------------------------------------------------ IDX


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, gz: bool, n_train=600, n_test=200, seed=0) -> None:
    """MNIST-format files of 28x28 images whose class (0-2) is the image's brightest third."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 3, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, :, label * 9 : label * 9 + 9] += 150
        for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
            name = f"{part}-{kind}-idx{dims}-ubyte"
            data = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_format_files_train_with_image_augmentation(tmp_path, runs, gz):
    write_mnist(tmp_path / "mnist", gz)
    config = write_config(
        tmp_path, "{dataset: mnist, path: mnist, val_fraction: 0.1, augment: {shift: 2, rotate: 10, cutout: 4}}", units=10
    )
    summary = train_json(config, "--set", "training.epochs=5", out=runs)
    assert summary["test_accuracy"] >= 0.9
    shown = nnctl("data", "show", config).stdout
    assert "images 28x28" in shown and "784 features" in shown and "540" in shown


IDX_BAD = {
    "wrong magic": (lambda data: b"\x00\x00\x07\x03" + data[4:], ["not an IDX file"]),
    "truncated": (lambda data: data[: len(data) // 2], ["truncated"]),
}


@pytest.mark.parametrize("case", list(IDX_BAD))
def test_bad_idx(tmp_path, case):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=False, n_train=20, n_test=10)
    target = folder / "train-images-idx3-ubyte"
    damage, fragments = IDX_BAD[case]
    target.write_bytes(damage(target.read_bytes()))
    config = write_config(tmp_path, "{dataset: mnist, path: mnist}", units=10)
    assert_clean_error(nnctl_in_process("train", config), "train-images-idx3-ubyte", *fragments)


def test_missing_mnist_files_name_the_fetch_command(tmp_path):
    config = write_config(tmp_path, "{dataset: fashion-mnist, path: empty}", units=10)
    (tmp_path / "empty").mkdir()
    assert_clean_error(nnctl("train", config), "missing train-images-idx3-ubyte", "nnctl data fetch fashion-mnist --dir")


def test_image_augmentation_needs_images(tmp_path):
    assert_clean_error(
        nnctl("train", CONFIGS / "spiral.yaml", "--set", "data.augment.shift=2"), "data.augment", "apply to images"
    )


# ---------------------------------------------------------------------------------------------- digits


def test_digits_reaches_095_and_predict_on_exported_csv_matches_eval(tmp_path, runs):
    summary = train_json(CONFIGS / "digits_mlp.yaml", out=runs)
    assert summary["test_accuracy"] >= 0.95
    run = Path(summary["run_dir"])
    # export the test split as CSV (columns pixel0..pixel63 and the label), as a user would
    from nnctl.config import load_config
    from nnctl.data import load_data

    data = load_data(load_config(run / "config.yaml"))
    header = data.feature_names + ["label"]
    write_csv(tmp_path / "test.csv", header, [[*row, label] for row, label in zip(data.test.x.tolist(), data.test.y)])
    out = tmp_path / "predictions.csv"
    result = nnctl("predict", run, tmp_path / "test.csv", "--out", out)
    assert result.returncode == 0, result.stderr
    predicted = [line for line in out.read_text().splitlines()[1:]]
    accuracy = np.mean(np.array(predicted) == data.test.y.astype(str))
    evaluated = json.loads(nnctl("eval", run, "--json").stdout)["test_accuracy"]
    assert accuracy == pytest.approx(evaluated, abs=1e-12)
    assert f"accuracy {evaluated:.4f}" in result.stderr
    # the same predictions from the checkpoint loaded in Python
    from nnctl.evaluation import restore
    from nnctl.metrics import forward_in_chunks

    restored = restore(run)
    output = forward_in_chunks(restored.model, restored.preprocessor.apply(data.test.x))
    assert [str(c) for c in output.argmax(axis=1)] == predicted


def test_predict_errors(tmp_path, runs):
    run = Path(train_json(CONFIGS / "spiral.yaml", "--set", "training.epochs=2", out=runs)["run_dir"])
    write_csv(tmp_path / "wrong.csv", ["x", "y"], [[0.1, 0.2]])
    assert_clean_error(nnctl_in_process("predict", run, tmp_path / "wrong.csv"), "missing column(s) 'x1', 'x2'", "the model reads x1, x2")
    assert_clean_error(nnctl_in_process("predict", run, tmp_path / "none.csv"), "none.csv: file not found")
    write_csv(tmp_path / "points.csv", ["x2", "x1"], [[0.5, 1.0], [-3, 2]])
    out = tmp_path / "missing-folder" / "p.csv"
    assert_clean_error(nnctl_in_process("predict", run, tmp_path / "points.csv", "--out", out), "cannot write")
    assert not out.exists()
    good = nnctl("predict", run, tmp_path / "points.csv")
    assert good.returncode == 0 and good.stdout.splitlines()[0] == "prediction" and len(good.stdout.splitlines()) == 3
    assert_clean_error(nnctl_in_process("predict", train_json(CONFIGS / "reg_plane.yaml", "--set", "training.epochs=2", out=runs)["run_dir"], tmp_path / "points.csv", "--proba"), "--proba needs a classifier")


def test_playground_predict_applies_the_feature_transforms(tmp_path, runs):
    run = Path(train_json(CONFIGS / "spiral.yaml", "--set", "data.features=[x1, x2, x1_sq, sin_x2]", "--set", "data.normalize=standard", "--set", "training.epochs=30", out=runs)["run_dir"])
    points = np.array([[0.5, 1.0], [-3.0, 2.0], [4.0, -1.0]])
    write_csv(tmp_path / "points.csv", ["x1", "x2"], points.tolist())
    predicted = nnctl("predict", run, tmp_path / "points.csv").stdout.splitlines()[1:]
    from nnctl.data.playground import make_features
    from nnctl.evaluation import restore

    restored = restore(run)
    expected = restored.model.forward(restored.preprocessor.apply(make_features(points, ["x1", "x2", "x1_sq", "sin_x2"]))).argmax(axis=1)
    assert predicted == [str(v) for v in expected]

"""Bad input through the real CLI: one clear line on stderr, exit code 2, no traceback, no run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl, nnctl_in_process, train_json

SPIRAL = (CONFIGS / "spiral.yaml").read_text()


def assert_clean_error(result, *fragments, code=2):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def write(tmp_path: Path, text: str, name="bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


CONFIG_CASES = {
    "unknown key with a near miss": (
        SPIRAL.replace("optimizer: {name: sgd, lr: 0.03", "optimizer: {name: sgd, lrate: 0.03"),
        ["bad.yaml:20:", "optimizer.lrate", "unknown key 'lrate'", "did you mean 'lr'", "allowed: name, lr, momentum"],
    ),
    "wrong type": (
        SPIRAL.replace("units: 16, activation: tanh}\n    - {type: dense, units: 16", "units: many, activation: tanh}\n    - {type: dense, units: 16"),
        ["bad.yaml:16:", "model.layers.0.units", "valid integer", "'many'"],
    ),
    "noise out of range": (SPIRAL.replace("noise: 0.1 ", "noise: 0.9 "), ["bad.yaml:9:", "data.noise", "less than or equal to 0.5", "0.9"]),
    "negative learning rate": (SPIRAL.replace("lr: 0.03", "lr: -0.03"), ["optimizer.lr", "greater than 0"]),
    "fractions sum to 1": (
        SPIRAL.replace("val_fraction: 0.0", "val_fraction: 0.5"),
        ["data", "test_fraction + val_fraction must be below 1"],
    ),
    "unknown dataset": (SPIRAL.replace("dataset: spiral ", "dataset: spirals "), ["data.dataset", "'spirals'", "did you mean 'spiral'"]),
    "unknown activation": (SPIRAL.replace("activation: tanh}", "activation: tanhh}", 1), ["model.layers.0.activation", "'tanhh'", "allowed: identity"]),
    "unknown optimizer": (SPIRAL.replace("name: sgd", "name: sgdm"), ["optimizer.name", "'sgdm'", "allowed: sgd, adam"]),
    "unknown feature": (SPIRAL.replace("features: [x1, x2]", "features: [x1, x3]"), ["data.features.1", "'x3'"]),
    "last layer does not match the classes": (
        SPIRAL.replace("- {type: dense, units: 2}", "- {type: dense, units: 3}"),
        ["bad.yaml:18:", "model.layers.2.units", "2 classes", "units: 2"],
    ),
    "cross-entropy on regression data": (SPIRAL.replace("dataset: spiral ", "dataset: reg-plane "), ["loss", "regression dataset", "mse"]),
    "yaml that does not parse": ("name: x\ndata: {dataset: spiral\n", ["bad.yaml:", "invalid YAML"]),
    "not a mapping": ("- just\n- a list\n", ["a config must be a mapping"]),
    "python object tag": ("name: !!python/object/apply:os.system ['echo hi']\n", ["invalid YAML", "not allowed"]),
    "duplicate key": ("name: a\nname: b\n", ["bad.yaml:2:1", "'name' appears twice"]),
    "missing sections": ("name: x\n", ["data", "missing required key"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(tmp_path, case):
    text, fragments = CONFIG_CASES[case]
    out = tmp_path / "runs"
    result = nnctl_in_process("train", write(tmp_path, text), "--out", out)
    assert_clean_error(result, *fragments)
    assert not out.exists() or not any(out.iterdir())  # no run folder left behind


SET_CASES = {
    "unknown key": (["--set", "optimizer.lrr=0.1"], ["--set optimizer.lrr=0.1", "unknown key 'lrr'", "did you mean 'lr'"]),
    "unknown section": (["--set", "trainin.epochs=3"], ["unknown key 'trainin'", "did you mean 'training'"]),
    "index out of range": (["--set", "model.layers.7.units=3"], ["model.layers has 3 items"]),
    "no equals sign": (["--set", "optimizer.lr"], ["expected key.path=value"]),
    "bad value": (["--set", "training.epochs=-5"], ["--set training.epochs=-5", "greater than 0"]),
}


@pytest.mark.parametrize("case", list(SET_CASES))
def test_bad_set_override(tmp_path, case):
    args, fragments = SET_CASES[case]
    result = nnctl_in_process("train", CONFIGS / "spiral.yaml", *args, "--out", tmp_path / "runs")
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_config_file(tmp_path):
    assert_clean_error(nnctl("train", tmp_path / "nope.yaml"), "nope.yaml: file not found")
    assert_clean_error(nnctl("validate", tmp_path / "nope.yaml"), "file not found")


def test_validate_reports_errors(tmp_path):
    result = nnctl("validate", write(tmp_path, SPIRAL.replace("momentum: 0.9", "momentum: 1.5")))
    assert_clean_error(result, "optimizer.momentum", "less than 1")
    assert result.stdout == ""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    return Path(train_json(CONFIGS / "spiral.yaml", "--set", "training.epochs=3", out=out)["run_dir"])


def test_eval_on_a_folder_that_is_not_a_run(tmp_path):
    assert_clean_error(nnctl("eval", tmp_path), "not a run folder")
    assert_clean_error(nnctl("eval", tmp_path / "missing"), "no such run folder or checkpoint")


def test_eval_on_a_truncated_checkpoint(tmp_path, trained_run):
    data = (trained_run / "checkpoints/last.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    assert_clean_error(nnctl("eval", truncated), "truncated.npz", "not a valid checkpoint")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert_clean_error(nnctl("eval", empty), "empty.npz", "not a valid checkpoint")


def test_eval_on_a_file_that_is_not_an_npz(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    assert_clean_error(nnctl("eval", text), "not a valid checkpoint")
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.zeros(3))
    assert_clean_error(nnctl("eval", plain), "not an nnctl checkpoint")


def test_eval_refuses_a_pickled_checkpoint(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, payload=np.array([{"a": 1}], dtype=object))
    assert_clean_error(nnctl("eval", evil), "pickle", "refused")


def test_eval_split_that_does_not_exist(trained_run):
    assert_clean_error(nnctl("eval", trained_run, "--split", "val"), "no val split")
    assert_clean_error(nnctl("eval", trained_run, "--split", "everything"), "--split", "allowed: test, val, train")


def test_eval_with_mismatched_architecture(tmp_path, trained_run):
    run = tmp_path / "edited"
    run.mkdir()
    for name in ("run.json", "summary.json"):
        (run / name).write_text((trained_run / name).read_text())
    (run / "checkpoints").mkdir()
    (run / "checkpoints/last.npz").write_bytes((trained_run / "checkpoints/last.npz").read_bytes())
    (run / "config.yaml").write_text((trained_run / "config.yaml").read_text().replace("units: 16", "units: 8", 1))
    # an edited config.yaml no longer decides the model: the checkpoint's own config does, and the edit is named
    assert_clean_error(nnctl("eval", run), "differs from the config its checkpoint was trained with", "model.layers.0.units: 16 -> 8")
    # a checkpoint whose arrays do not fit the config inside it lists the mismatched arrays and shapes
    from nnctl.runs import load_checkpoint, save_checkpoint

    arrays, meta = load_checkpoint(run / "checkpoints/last.npz")
    arrays["model/layers.0.weight"] = arrays["model/layers.0.weight"][:, :8].copy()
    save_checkpoint(run / "checkpoints/last.npz", arrays, meta)
    (run / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    assert_clean_error(nnctl("eval", run), "does not match the config's model", "layers.0.weight has shape (2, 8)")


def test_divergence_stops_with_status_diverged_and_keeps_a_good_checkpoint(tmp_path):
    out = tmp_path / "runs"
    result = nnctl(
        "train", CONFIGS / "reg_plane.yaml", "--set", "optimizer.lr=1", "--set", "training.epochs=50", "--out", out, "--json"
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert result.stderr.startswith("error: training diverged: the loss became non-finite")
    summary = json.loads(result.stdout)
    assert summary["status"] == "diverged"
    run = Path(summary["run_dir"])
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    with np.load(run / "checkpoints/last.npz") as checkpoint:
        assert all(np.isfinite(checkpoint[name]).all() for name in checkpoint.files if name.startswith("model/"))
    assert nnctl("eval", run).returncode == 0

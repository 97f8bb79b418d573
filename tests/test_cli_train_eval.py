"""End to end through the real CLI: train the Playground datasets, evaluate, determinism, output formats."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, REPO, nnctl, read_jsonl, train_json


def test_quick_start_spiral_learns_and_writes_a_complete_run_folder(runs):
    summary = train_json(CONFIGS / "spiral.yaml", out=runs)
    assert summary["status"] == "completed"
    assert summary["test_accuracy"] >= 0.95
    run = Path(summary["run_dir"])
    assert run.parent == runs and run.name.startswith("spiral-")
    for name in ("config.yaml", "run.json", "metrics.jsonl", "metrics.csv", "summary.json", "checkpoints/last.npz"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints/best.npz").exists()  # no validation data, so no "best"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["seed"] == 0
    assert {"nnctl", "numpy", "python"} <= set(info["versions"])
    assert info["started"] <= info["ended"]
    rows = read_jsonl(run / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == list(range(1, 301))
    assert {"epoch", "lr", "train_loss", "train_accuracy", "train_seconds"} == set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,lr,train_loss,train_accuracy,train_seconds" and len(csv_lines) == 301
    saved = json.loads((run / "summary.json").read_text())
    assert saved["test_accuracy"] == summary["test_accuracy"]
    assert saved["epochs_run"] == 300
    assert saved["train_seconds_total"] == pytest.approx(sum(r["train_seconds"] for r in rows))
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["optimizer"] == {"name": "sgd", "lr": 0.03, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}


@pytest.mark.parametrize("dataset", ["circle", "xor", "gauss"])
def test_playground_classification_datasets_reach_093(runs, dataset):
    summary = train_json(CONFIGS / "spiral.yaml", "--set", f"data.dataset={dataset}", "--set", "training.epochs=100", out=runs)
    assert summary["test_accuracy"] >= 0.93


def test_reg_plane_reaches_r2_095(runs):
    summary = train_json(CONFIGS / "reg_plane.yaml", out=runs)
    assert summary["test_r2"] >= 0.95
    assert {"test_loss", "test_mae", "test_r2"} <= set(summary)
    assert "test_accuracy" not in summary


def test_eval_reproduces_summary_exactly_with_last_and_best_checkpoints(runs):
    summary = train_json(
        CONFIGS / "spiral.yaml", "--set", "training.epochs=40", "--set", "data.val_fraction=0.2",
        "--set", "training.select_best={monitor: val_loss}", out=runs,
    )  # fmt: skip
    run = Path(summary["run_dir"])
    assert summary["checkpoint"] == "checkpoints/best.npz" and summary["best_epoch"] is not None
    best_val = min(r["val_loss"] for r in read_jsonl(run / "metrics.jsonl"))
    result = nnctl("eval", run, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["test_loss"] == summary["test_loss"] and metrics["test_accuracy"] == summary["test_accuracy"]
    val = json.loads(nnctl("eval", run, "--split", "val", "--json").stdout)
    assert val["val_loss"] == best_val  # the best checkpoint is the one with the lowest validation loss
    # a checkpoint file works too, with the config embedded in it
    last = json.loads(nnctl("eval", run / "checkpoints" / "last.npz", "--json").stdout)
    assert last["checkpoint"].endswith("last.npz") and 0 <= last["test_accuracy"] <= 1
    table = nnctl("eval", run)
    assert table.returncode == 0 and "test_accuracy" in table.stdout


def test_same_seed_gives_identical_metrics_and_weights(runs):
    args = (CONFIGS / "spiral.yaml", "--set", "training.epochs=30", "--set", "data.val_fraction=0.1")
    first, second = (Path(train_json(*args, out=runs)["run_dir"]) for _ in range(2))
    assert first != second
    strip = lambda rows: [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]  # noqa: E731
    assert strip(read_jsonl(first / "metrics.jsonl")) == strip(read_jsonl(second / "metrics.jsonl"))
    with np.load(first / "checkpoints/last.npz") as a, np.load(second / "checkpoints/last.npz") as b:
        assert a.files == b.files
        for name in a.files:
            assert np.array_equal(a[name], b[name]), name
    other = train_json(*args, "--set", "seed=1", out=runs)
    assert strip(read_jsonl(Path(other["run_dir"]) / "metrics.jsonl")) != strip(read_jsonl(first / "metrics.jsonl"))


def test_plain_progress_without_a_terminal(runs):
    result = nnctl("train", CONFIGS / "spiral.yaml", "--set", "training.epochs=120", "--out", runs)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert 10 <= len(epoch_lines) <= 120
    assert epoch_lines[-1].startswith("epoch 120/120")
    assert "test_accuracy" in result.stdout and "run folder:" in result.stdout


def test_quiet_prints_only_the_run_folder(runs):
    result = nnctl("train", CONFIGS / "spiral.yaml", "--set", "training.epochs=3", "--out", runs, "--quiet", "--name", "q")
    assert result.returncode == 0
    (line,) = result.stdout.splitlines()
    assert Path(line).parent == runs and Path(line).name.startswith("q-")


def test_progress_bar_on_a_terminal(runs):
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", CONFIGS / "spiral.yaml", "--set", "training.epochs=50", "--out", runs],
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"},
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0
    text = output.decode("utf-8", "replace")
    assert "\x1b[" in text  # a live display, redrawn with control sequences
    assert "50/50" in text and "train_loss" in text and "━" in text


def test_validate_prints_the_resolved_config():
    result = nnctl("validate", CONFIGS / "spiral.yaml", "--set", "optimizer.lr=0.5")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["optimizer"]["lr"] == 0.5
    assert resolved["training"]["shuffle"] is True  # a default, filled in
    assert resolved["model"]["layers"][2]["activation"] == "identity"


def test_console_script_and_version():
    result = subprocess.run([Path(sys.executable).parent / "nnctl", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("nnctl ")


def test_run_folders_never_collide(tmp_path):
    from nnctl.runs import create_run_dir

    folders = {create_run_dir(tmp_path, "same") for _ in range(5)}
    assert len(folders) == 5


def test_regression_config_from_the_issue_is_accepted(runs):
    config = yaml.safe_load((CONFIGS / "spiral.yaml").read_text())
    config["data"]["dataset"] = "reg-gauss"
    config["model"]["layers"][-1]["units"] = 1
    config["loss"] = "mse"
    config["training"]["epochs"] = 20
    path = runs.parent / "reg.yaml"
    path.write_text(yaml.safe_dump(config))
    summary = train_json(path, out=runs)
    assert summary["status"] == "completed" and "test_r2" in summary


def test_repo_layout():
    for name in ("pyproject.toml", "README.md", "nnctl", "configs", "tests", ".ci/run"):
        assert (REPO / name).exists(), name
    assert (REPO / ".gitignore").read_text().count("runs/") >= 1

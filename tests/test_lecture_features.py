"""The lecture's features beyond the shipped configs: their bad input, gradcheck, truth tables, schedules and
early stopping as a user sees them in run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl, nnctl_in_process, read_jsonl, train_json
from test_cli_errors import assert_clean_error

SPIRAL = CONFIGS / "spiral.yaml"

BAD = {
    "dropout rate 1": (SPIRAL, ["model.layers.1={type: dropout, rate: 1.0}"], ["model.layers.1.rate", "less than 1"]),
    "dropout rate negative": (SPIRAL, ["model.layers.1={type: dropout, rate: -0.1}"], ["model.layers.1.rate"]),
    "batchnorm with batch size 1": (
        SPIRAL,
        ["model.layers.1={type: batchnorm}", "training.batch_size=1"],
        ["training.batch_size", "batch norm needs batches of at least 2"],
    ),
    "maxout with one piece": (SPIRAL, ["model.layers.0={type: maxout, units: 4, pieces: 1}"], ["model.layers.0.pieces", "greater than or equal to 2"]),
    "perceptron on regression data": (
        CONFIGS / "perceptron_and.yaml",
        ["data={dataset: function, fn: sin}"],
        ["model.type", "needs a classification dataset"],
    ),
    "perceptron with sgd": (CONFIGS / "perceptron_and.yaml", ["optimizer={name: sgd}"], ["optimizer.name", "perceptron rule"]),
    "McCulloch-Pitts weights do not match the inputs": (
        CONFIGS / "mcculloch_pitts_and.yaml",
        ["model.weights=[1, 1, 1]"],
        ["--set model.weights=[1, 1, 1]: model.weights", "3 weights but the data has 2 inputs"],
    ),
    "threshold network layer widths": (
        CONFIGS / "mcculloch_pitts_xor_network.yaml",
        ["model.layers.1.weights=[[1, 1, 1]]"],
        ["model.layers.1.weights", "each unit needs 2 weights"],
    ),
    "threshold count differs from units": (
        CONFIGS / "mcculloch_pitts_xor_network.yaml",
        ["model.layers.0.thresholds=[1]"],
        ["model.layers.0", "2 units (rows of weights) but 1 thresholds"],
    ),
    "unknown function": (CONFIGS / "universal_approximation.yaml", ["data.fn=tan"], ["data.fn", "'tan'", "allowed: sin, cos"]),
    "unknown logic function": (CONFIGS / "perceptron_and.yaml", ["data.function=xnor"], ["data.function", "'xnor'"]),
    "not with two inputs": (CONFIGS / "mcculloch_pitts_not.yaml", ["data.inputs=2"], ["data", "not takes exactly 1 input"]),
    "slope on relu": (SPIRAL, ["model.layers.0.activation={name: relu, slope: 0.2}"], ["'slope' is a parameter of leaky_relu"]),
    "early stopping on val without validation data": (
        SPIRAL,
        ["training.early_stopping={monitor: val_loss}"],
        ["training.early_stopping.monitor", "set data.val_fraction"],
    ),
    "unknown schedule": (SPIRAL, ["training.lr_schedule=cosin"], ["training.lr_schedule.type", "did you mean 'cosine'"]),
    "nesterov without momentum": (SPIRAL, ["optimizer.momentum=0", "optimizer.nesterov=true"], ["nesterov needs momentum"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_lecture_input(tmp_path, case):
    config, overrides, fragments = BAD[case]
    args = [arg for override in overrides for arg in ("--set", override)]
    assert_clean_error(nnctl_in_process("train", config, *args, "--out", tmp_path / "runs"), *fragments)
    assert not (tmp_path / "runs").exists()


def test_gradcheck_passes_for_every_layer_type():
    layers = (
        "model.layers=[{type: dense, units: 6, activation: {name: leaky_relu, slope: 0.2}}, {type: batchnorm},"
        " {type: activation, name: elu}, {type: dropout, rate: 0.3}, {type: maxout, units: 4, pieces: 3},"
        " {type: dense, units: 5, activation: softplus}, {type: dense, units: 2}]"
    )
    result = nnctl(
        "gradcheck", SPIRAL, "--set", layers, "--set", "model.regularization={l1: 0.01, l2: 0.01}", "--set", "data.normalize=standard"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("layers.0.weight", "layers.1.gamma", "layers.1.beta", "layers.4.weight", "layers.6.bias"):
        assert name in result.stdout
    assert "FAIL" not in result.stdout and result.stdout.count(" ok ") >= 10


def test_gradcheck_catches_a_wrong_gradient(monkeypatch):
    from nnctl.config import load_config
    from nnctl.engine.layers import Maxout
    from nnctl.gradcheck_run import gradcheck

    loaded = load_config(SPIRAL, ["model.layers.0={type: maxout, units: 4}"])
    assert all(row.error < 1e-6 for row in gradcheck(loaded))
    original = Maxout.backward

    def off_by_ten_percent(self, grad_y):
        grad_x = original(self, grad_y)
        self.grads["weight"] *= 1.1
        return grad_x

    monkeypatch.setattr(Maxout, "backward", off_by_ten_percent)
    rows = {row.name: row.error for row in gradcheck(loaded)}
    assert rows["layers.0.weight"] > 0.01 and rows["layers.0.bias"] < 1e-6


def test_gradcheck_refuses_threshold_models():
    assert_clean_error(nnctl("gradcheck", CONFIGS / "mcculloch_pitts_and.yaml"), "no gradients to check")


def test_truth_tables():
    from nnctl.data.synthetic import truth_table

    x, y = truth_table("xor", 3)
    assert x.shape == (8, 3) and list(y) == [0, 1, 1, 0, 1, 0, 0, 1]
    assert list(truth_table("nand", 2)[1]) == [1, 1, 1, 0]
    assert list(truth_table("nor", 2)[1]) == [1, 0, 0, 0]
    assert list(truth_table("not", 1)[1]) == [1, 0]


def test_mcculloch_pitts_nand_nor_from_the_command_line(runs):
    nand = train_json(CONFIGS / "mcculloch_pitts_and.yaml", "--set", "data.function=nand", "--set", "model={type: mcculloch_pitts, weights: [-1, -1], threshold: -1.5}", out=runs)
    nor = train_json(CONFIGS / "mcculloch_pitts_and.yaml", "--set", "data.function=nor", "--set", "model={type: mcculloch_pitts, weights: [-1, -1], threshold: 0}", out=runs)
    wrong = train_json(CONFIGS / "mcculloch_pitts_and.yaml", "--set", "data.function=or", out=runs)  # AND's weights on OR
    assert nand["test_accuracy"] == nor["test_accuracy"] == 1.0
    assert wrong["test_accuracy"] == 0.5


def test_perceptron_on_playground_data(runs):
    gauss = train_json(CONFIGS / "perceptron_and.yaml", "--set", "data={dataset: gauss}", out=runs)
    circle = train_json(CONFIGS / "perceptron_and.yaml", "--set", "data={dataset: circle}", "--set", "training.epochs=20", out=runs)
    assert gauss["status"] == "converged" and gauss["test_accuracy"] >= 0.99  # separable
    assert circle["status"] == "not_converged"  # a circle is not a half-plane
    rows = read_jsonl(Path(circle["run_dir"]) / "metrics.jsonl")
    assert len(rows) == 20 and all(row["mistakes"] > 0 for row in rows)


def test_schedule_and_early_stopping_in_the_run_folder(runs):
    summary = train_json(
        SPIRAL,
        "--set", "data.val_fraction=0.2",
        "--set", "training.lr_schedule={type: step, step_size: 5, gamma: 0.5}",
        "--set", "training.early_stopping={monitor: val_accuracy, patience: 8, restore_best: true}",
        "--set", "training.epochs=300",
        out=runs,
    )  # fmt: skip
    rows = read_jsonl(Path(summary["run_dir"]) / "metrics.jsonl")
    assert [row["lr"] for row in rows[:11]] == [0.03] * 5 + [0.015] * 5 + [0.0075]
    assert summary["epochs_run"] < 300 and summary["stop_reason"].startswith("early stopping: val_accuracy")
    best = max(rows, key=lambda row: row["val_accuracy"])
    assert summary["best_epoch"] == best["epoch"] and summary["monitor"] == "val_accuracy"
    assert summary["epochs_run"] - summary["best_epoch"] == 8
    val = json.loads(nnctl("eval", summary["run_dir"], "--split", "val", "--json").stdout)
    assert val["val_accuracy"] == best["val_accuracy"]  # restore_best: the best epoch's weights


def test_reduce_on_plateau_lowers_the_lr(runs):
    summary = train_json(
        SPIRAL,
        "--set", "training.lr_schedule={type: reduce_on_plateau, monitor: train_loss, patience: 2, factor: 0.5}",
        "--set", "optimizer.lr=3",
        "--set", "training.epochs=30",
        out=runs,
    )  # fmt: skip
    lrs = [row["lr"] for row in read_jsonl(Path(summary["run_dir"]) / "metrics.jsonl")]
    assert lrs[0] == 3 and min(lrs) < 3 and all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_every_optimizer_trains_the_spiral(runs):
    for optimizer in ("{name: adam, lr: 0.01}", "{name: adamw, lr: 0.01, weight_decay: 0.01}", "{name: rmsprop, lr: 0.01}",
                      "{name: adagrad, lr: 0.5}", "{name: sgd, lr: 0.03, momentum: 0.9, nesterov: true}"):  # fmt: skip
        summary = train_json(SPIRAL, "--set", f"optimizer={optimizer}", out=runs)
        assert summary["test_accuracy"] >= 0.9, optimizer


def test_grad_clip_and_l2_run(runs):
    summary = train_json(SPIRAL, "--set", "training.grad_clip=1.0", "--set", "model.regularization.l2=0.0001", out=runs)
    assert summary["test_accuracy"] >= 0.9
    heavy = train_json(SPIRAL, "--set", "model.regularization.l2=0.1", "--set", "training.epochs=50", out=runs)
    with np.load(Path(heavy["run_dir"]) / "checkpoints/last.npz") as a, np.load(Path(summary["run_dir"]) / "checkpoints/last.npz") as b:
        assert np.abs(a["model/layers.1.weight"]).sum() < np.abs(b["model/layers.1.weight"]).sum() / 3

"""Every config in configs/ runs end to end through the CLI and shows what its opening comment promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import CONFIGS, nnctl, train_json


def eval_json(run_dir, split="test") -> dict:
    result = nnctl("eval", run_dir, "--split", split, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_shipped_config_is_covered_and_says_which_slide_it_shows():
    shipped = {path.stem for path in CONFIGS.glob("*.yaml")}
    assert shipped == set(OUTCOMES) | NEEDS_DOWNLOAD
    for path in CONFIGS.glob("*.yaml"):
        first = path.read_text().splitlines()[1]  # after the schema line (test_schema.py)
        assert first.startswith("#") and re.search(r"[Ss]lides? \d+", first), path.name


def mcculloch_pitts(summary, runs):
    assert summary["status"] == "completed" and summary["epochs_run"] == 0
    assert "no trainable parameters" in summary["stop_reason"]
    assert summary["test_accuracy"] == 1.0 and summary["test_loss"] == 0.0
    assert eval_json(summary["run_dir"])["test_accuracy"] == 1.0


def perceptron_converges(summary, runs):
    assert summary["status"] == "converged"
    assert summary["converged_epoch"] <= 10 and summary["epochs_run"] == summary["converged_epoch"]
    assert summary["test_accuracy"] == 1.0 and summary["updates"] >= 1


def perceptron_xor(summary, runs):
    assert summary["status"] == "not_converged"
    assert summary["epochs_run"] == 100
    assert summary["test_accuracy"] == 0.75 and summary["best_train_accuracy"] == 0.75
    assert eval_json(summary["run_dir"])["test_accuracy"] == 0.75  # eval uses the pocket's best weights
    info = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert info["status"] == "not_converged" and "cannot separate" in info["message"]


def xor_mlp(summary, runs):
    assert summary["test_accuracy"] == 1.0


def universal_approximation(summary, runs):
    # the bound we state: test MSE below 1e-3 with 32 tanh units on sin over [-pi, pi]
    assert summary["test_loss"] < 1e-3
    narrow = train_json(CONFIGS / "universal_approximation.yaml", "--set", "model.layers.0.units=2", out=runs)
    assert narrow["test_loss"] > 3 * summary["test_loss"]


def spiral(summary, runs):
    assert summary["test_accuracy"] >= 0.95


def activations(summary, runs):
    assert summary["test_accuracy"] >= 0.95  # tanh
    results = {}
    for name in ("relu", "identity", "heaviside"):
        args = ("--set", f"model.layers.0.activation={name}", "--set", f"model.layers.1.activation={name}")
        results[name] = train_json(CONFIGS / "activations.yaml", *args, out=runs)["test_accuracy"]
    assert results["relu"] >= 0.95
    assert results["identity"] < 0.7  # a linear model cannot separate spirals
    assert results["heaviside"] < 0.6  # zero derivative: nothing learned


def momentum(summary, runs):
    plain = train_json(CONFIGS / "momentum.yaml", "--set", "optimizer.momentum=0", out=runs)
    assert summary["train_loss"] < 0.2 < 0.45 < plain["train_loss"]


def gap(summary) -> float:
    return eval_json(summary["run_dir"], "train")["train_accuracy"] - summary["test_accuracy"]


def dropout(summary, runs):
    gaps_on, gaps_off = [], []
    for seed in (0, 1, 2):
        seed_args = ("--set", f"seed={seed}")
        on = summary if seed == 0 else train_json(CONFIGS / "dropout.yaml", *seed_args, out=runs)
        off = train_json(CONFIGS / "dropout.yaml", *seed_args, "--set", "model.layers.1.rate=0", "--set", "model.layers.3.rate=0", out=runs)
        gaps_on.append(gap(on))
        gaps_off.append(gap(off))
    assert sum(gaps_on) < sum(gaps_off)
    assert all(g > 0.05 for g in gaps_off)  # without dropout it does overfit
    # dropout is off in evaluation: eval reproduces the run's test metrics
    assert eval_json(summary["run_dir"])["test_loss"] == summary["test_loss"]


def batchnorm(summary, runs):
    assert summary["test_accuracy"] >= 0.85
    assert eval_json(summary["run_dir"])["test_accuracy"] == summary["test_accuracy"]  # running stats saved


def batchnorm_vanilla(summary, runs):
    assert summary["test_accuracy"] < 0.65


def normalization(summary, runs):
    assert summary["test_r2"] > 0.99
    raw = train_json(CONFIGS / "normalization.yaml", "--set", "data.normalize=none", out=runs)
    assert raw["test_r2"] < 0.5
    assert eval_json(summary["run_dir"])["test_loss"] == summary["test_loss"]  # normalization stored


def augmentation(summary, runs):
    plain = train_json(CONFIGS / "augmentation.yaml", "--set", "data.augment.noise_std=0", out=runs)
    assert plain["train_accuracy"] == 1.0
    assert summary["test_loss"] * 3 < plain["test_loss"]
    assert summary["test_accuracy"] >= plain["test_accuracy"]


def reg_plane(summary, runs):
    assert summary["test_r2"] >= 0.95


def reg_gauss(summary, runs):
    assert summary["test_r2"] >= 0.9


def digits_mlp(summary, runs):
    assert summary["test_accuracy"] >= 0.95


OUTCOMES = {
    "mcculloch_pitts_and": mcculloch_pitts,
    "mcculloch_pitts_or": mcculloch_pitts,
    "mcculloch_pitts_not": mcculloch_pitts,
    "mcculloch_pitts_xor_network": mcculloch_pitts,
    "perceptron_and": perceptron_converges,
    "perceptron_or": perceptron_converges,
    "perceptron_xor": perceptron_xor,
    "xor_mlp": xor_mlp,
    "universal_approximation": universal_approximation,
    "spiral": spiral,
    "activations": activations,
    "momentum": momentum,
    "dropout": dropout,
    "batchnorm": batchnorm,
    "batchnorm_vanilla": batchnorm_vanilla,
    "normalization": normalization,
    "augmentation": augmentation,
    "reg_plane": reg_plane,
    "reg_gauss": reg_gauss,
    "digits_mlp": digits_mlp,
}
#: configs that need data this machine cannot download; they run on MNIST-format files the test writes
NEEDS_DOWNLOAD = {"mnist_mlp"}


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_config_shows_its_claim(name, runs):
    summary = train_json(CONFIGS / f"{name}.yaml", out=runs)
    OUTCOMES[name](summary, runs)


def test_mnist_config_runs_on_mnist_format_files(tmp_path, runs):
    from test_real_data import write_mnist

    write_mnist(tmp_path / "mnist", gz=True)
    summary = train_json(
        CONFIGS / "mnist_mlp.yaml", "--set", f"data.path={tmp_path / 'mnist'}", "--set", "training.epochs=3", out=runs
    )
    assert summary["status"] == "completed" and summary["best_epoch"] is not None  # val_fraction 0.1: a best epoch
    assert summary["test_accuracy"] >= 0.9  # the synthetic classes are easy; real MNIST is not measured offline

"""``nnctl gradcheck``: a gradient that is truly zero (a bias feeding batch norm) passes, every shipped config
passes, and a backward pass that is wrong by a little still fails, naming the parameter."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl
from nnctl.config import load_config
from nnctl.engine.activations import Tanh
from nnctl.engine.gradcheck import compare_gradients, noise_floor, numerical_gradient
from nnctl.engine.layers import BatchNorm, Dense
from nnctl.errors import NnctlError
from nnctl.gradcheck_run import gradcheck

#: a small batch-norm network (dense -> batch norm -> sigmoid, twice): fast, and its dense biases have gradient 0
SMALL_BN = [
    "model.layers=[{type: dense, units: 6}, {type: batchnorm}, {type: activation, name: sigmoid},"
    " {type: dense, units: 6}, {type: batchnorm}, {type: activation, name: tanh}, {type: dense, units: 2}]"
]
BN_FED_BIASES = {"layers.0.bias", "layers.3.bias"}


def failures(rows) -> set[str]:
    return {row.name for row in rows if not row.passed}


# ------------------------------------------------------------------------------------------ the criterion


def test_a_zero_gradient_passes_on_the_absolute_figure_and_a_wrong_one_fails():
    """Analytic 1.7e-16 against numeric 5e-11 is two roundings of 0: it passes (their relative error is ~1)."""
    delta = noise_floor(0.7)
    zero = compare_gradients(np.full(4, 1.7e-16), np.array([5e-11, -3e-11, 0.0, 1e-11]), delta)
    assert zero.passed and zero.below_noise and zero.abs_error == pytest.approx(5e-11) and zero.rel_error > 0.5
    assert not compare_gradients(np.full(4, 1e-3), np.array([5e-11, -3e-11, 0.0, 1e-11]), delta).passed
    g = np.array([0.3, -1e-4, 2e-2, 0.0])
    assert compare_gradients(g + 1e-12, g, delta).passed
    assert not compare_gradients(g * 1.001, g, delta).passed  # 0.1 % off
    assert not compare_gradients(g * (1 + 1e-4), g, delta).passed  # 0.01 % off
    assert not compare_gradients(np.where(g == g[2], np.nan, g), g, delta).passed


def test_the_five_point_stencil_is_exact_to_rounding_on_a_quartic():
    x = np.array([0.3, -1.2, 2.0])
    numeric = numerical_gradient(lambda: float(np.sum(x**4)), x)
    np.testing.assert_allclose(numeric, 4 * x**3, rtol=0, atol=noise_floor(float(np.sum(x**4))))
    np.testing.assert_array_equal(x, [0.3, -1.2, 2.0])


# ----------------------------------------------------------------------------------------- shipped configs


def test_batchnorm_config_passes_and_shows_both_errors():
    result = nnctl("gradcheck", CONFIGS / "batchnorm.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    header = next(line for line in result.stdout.splitlines() if "parameter" in line)
    assert "abs err" in header and "rel err" in header and "max|grad|" in header
    bias = next(line for line in result.stdout.splitlines() if "layers.0.bias " in line)
    scale, abs_err, rel_err = (float(v) for v in re.findall(r"\d\.\de[-+]\d\d", bias))
    assert abs_err < 1e-9 and scale < 1e-9  # zero, to the resolution of finite differences
    assert "ok" in bias
    assert "rtol = 1e-05" in result.stdout and "floor = " in result.stdout


def write_fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10) -> None:
    """MNIST-format (IDX) files of random 28x28 images with labels 0-9."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images", rng.integers(0, 256, (n, 28, 28))), ("labels", np.arange(n) % 10)):
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
            (folder / f"{part}-{kind}-idx{array.ndim}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_config_passes(config, tmp_path):
    loaded = load_config(config)
    if loaded.config.is_classic:  # threshold units: the command refuses them with a clear error
        with pytest.raises(NnctlError, match="no gradients to check"):
            gradcheck(loaded, batch=4)
        return
    if loaded.config.data.dataset in ("mnist", "fashion-mnist"):  # the real files may not be downloaded
        write_fake_mnist(tmp_path / "mnist")
        loaded = load_config(config, [f"data.path={tmp_path / 'mnist'}"])
    rows = gradcheck(loaded, batch=4, entries=12)
    assert rows and not failures(rows), [(r.name, r.abs_error, r.scale) for r in rows if not r.passed]


# ----------------------------------------------------------------------------- broken backward passes fail


def test_dense_bias_gradient_off_by_one_percent_fails(monkeypatch):
    original = Dense.backward

    def bias_off(self, grad_y, input_grad=True):
        grad_x = original(self, grad_y, input_grad)
        self.grads["bias"] *= 1.01
        return grad_x

    loaded = load_config(CONFIGS / "spiral.yaml")
    assert not failures(gradcheck(loaded))
    monkeypatch.setattr(Dense, "backward", bias_off)
    assert failures(gradcheck(loaded)) == {"layers.0.bias", "layers.1.bias", "layers.2.bias"}


def test_activation_derivative_off_by_a_hundredth_of_a_percent_fails(monkeypatch):
    original = Tanh.backward
    monkeypatch.setattr(Tanh, "backward", lambda self, x, y, grad_y: original(self, x, y, grad_y) * (1 + 1e-4))
    # spiral: dense+tanh, dense+tanh, dense; the last layer's gradient does not pass through a tanh
    assert failures(gradcheck(load_config(CONFIGS / "spiral.yaml"))) == {
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
    }


def batchnorm_missing(term: str):
    """BatchNorm.backward without one term of dx = (1/n) inv_std (n dx_hat - sum dx_hat - x_hat sum(dx_hat x_hat)),
    computed from the layer's input and parameters (recorded by a wrapped forward)."""
    forward, backward = BatchNorm.forward, BatchNorm.backward

    def recording_forward(self, x, training=False):
        self.seen_input = x
        return forward(self, x, training)

    def broken_backward(self, grad_y, input_grad=True):
        grad_x = backward(self, grad_y, input_grad)
        if grad_x is None:
            return None
        x = self.seen_input
        inv_std = 1 / np.sqrt(x.var(axis=0) + self.eps)
        x_hat = (x - x.mean(axis=0)) * inv_std
        grad_x_hat = grad_y * self.params["gamma"]
        if term == "mean":
            missing = -grad_x_hat.sum(axis=0)
        else:
            missing = -x_hat * (grad_x_hat * x_hat).sum(axis=0)
        return grad_x - inv_std / len(x) * missing

    return recording_forward, broken_backward


@pytest.mark.parametrize("term", ["mean", "variance"])
def test_batchnorm_input_gradient_missing_a_term_fails(monkeypatch, term):
    loaded = load_config(CONFIGS / "batchnorm.yaml", SMALL_BN)
    rows = gradcheck(loaded)
    assert not failures(rows)
    assert {row.name for row in rows if row.below_noise} == BN_FED_BIASES
    recording_forward, broken_backward = batchnorm_missing(term)
    monkeypatch.setattr(BatchNorm, "forward", recording_forward)
    monkeypatch.setattr(BatchNorm, "backward", broken_backward)
    failed = failures(gradcheck(loaded))
    assert "layers.0.weight" in failed
    assert not failed & {"layers.4.gamma", "layers.4.beta", "layers.6.weight", "layers.6.bias"}  # after the last input gradient
    if term == "mean":  # without the mean's term the BN-fed biases get a (wrong) non-zero gradient
        assert BN_FED_BIASES <= failed


def test_a_bias_feeding_batchnorm_with_a_non_zero_gradient_fails(monkeypatch):
    original = Dense.backward

    def nonzero_where_zero(self, grad_y, input_grad=True):
        grad_x = original(self, grad_y, input_grad)
        if np.max(np.abs(self.grads["bias"])) < 1e-12:  # the true gradient is 0: only the BN-fed biases
            self.grads["bias"] += 1e-3
        return grad_x

    monkeypatch.setattr(Dense, "backward", nonzero_where_zero)
    assert failures(gradcheck(load_config(CONFIGS / "batchnorm.yaml", SMALL_BN))) == BN_FED_BIASES


def test_options_rtol_threshold_alias_and_atol():
    args = ("gradcheck", CONFIGS / "batchnorm.yaml", "--set", SMALL_BN[0], "--batch", "4")
    assert nnctl(*args, "--threshold", "1e-4").returncode == 0
    result = nnctl(*args, "--rtol", "1e-4", "--atol", "1e-20")  # no floor: the zero gradients' noise fails
    assert result.returncode == 1
    assert "layers.0.bias" in result.stderr and "layers.3.bias" in result.stderr and "layers.0.weight" not in result.stderr

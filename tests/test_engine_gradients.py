"""Centred finite-difference checks of every analytic gradient in the engine, in float64.

Each check builds a scalar loss f() that reads the array being perturbed, computes the analytic gradient
with the engine's backward pass, and compares it with ``numerical_gradient`` (finite differences (a five-point stencil)).
The tolerance is a relative error below 1e-6; inputs are drawn away from kinks so that the finite
difference never straddles one.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine.activations import ACTIVATIONS, make_activation
from nnctl.engine.gradcheck import numerical_gradient, relative_error
from nnctl.engine.layers import ActivationLayer, BatchNorm, Dense, Dropout, Maxout
from nnctl.engine.losses import MeanSquaredError, SoftmaxCrossEntropy
from nnctl.engine.model import Sequential

TOL = 1e-6
H = 1e-5


def away_from_zero(rng: np.random.Generator, shape, low=-3.0, high=3.0, margin=1e-3) -> np.ndarray:
    """Uniform draws in [low, high] with |x| > margin, so a finite difference of size H never crosses 0."""
    x = rng.uniform(low, high, shape)
    small = np.abs(x) <= margin
    x[small] = np.where(x[small] >= 0, 1.0, -1.0) * (margin + rng.uniform(0.1, 1.0, small.sum()))
    assert np.all(np.abs(x) > margin)
    return x


def assert_grad_close(analytic: np.ndarray, numeric: np.ndarray, tol: float = TOL) -> None:
    assert analytic.shape == numeric.shape
    assert np.all(np.isfinite(analytic))
    err = relative_error(analytic, numeric)
    assert err < tol, f"relative error {err:.3e} >= {tol:.0e}\nanalytic={analytic}\nnumeric={numeric}"


def test_relative_error_detects_a_wrong_gradient():
    """Sanity check of the checker itself: a gradient off by 1 % is flagged, an exact one is not."""
    a = np.array([1.0, -2.0, 3.0])
    assert relative_error(a, a.copy()) == 0.0
    assert relative_error(a * 1.01, a) > TOL


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    num = numerical_gradient(lambda: float(np.sum(x**3)), x, h=H)
    assert_grad_close(3 * x**2, num, 1e-8)
    # the input is restored after the perturbations
    np.testing.assert_array_equal(x, [0.3, -1.2, 2.0])


# --------------------------------------------------------------------------------------------- activations

ACTIVATION_CASES = [
    ("identity", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("relu", {}),
    ("leaky_relu", {"slope": 0.1}),
    ("leaky_relu", {"slope": 0.2}),
    ("elu", {"alpha": 1.0}),
    ("elu", {"alpha": 0.5}),
    ("softplus", {}),
]


def test_activation_cases_cover_every_activation():
    covered = {name for name, _ in ACTIVATION_CASES} | {"heaviside"}
    assert covered == set(ACTIVATIONS)


@pytest.mark.parametrize(("name", "params"), ACTIVATION_CASES, ids=lambda v: str(v))
def test_activation_gradient(name, params):
    rng = np.random.default_rng(1)
    act = make_activation(name, **params)
    x = away_from_zero(rng, (6, 5))
    if name == "softplus":
        # include inputs above the threshold 20 (where softplus(x) = x) and well below it
        x[0] = rng.uniform(21.0, 40.0, 5)
        x[1] = rng.uniform(-30.0, -21.0, 5)
        assert np.any(x > act.threshold)
    R = rng.standard_normal(x.shape)

    def f():
        return float(np.sum(act.forward(x) * R))

    y = act.forward(x)
    analytic = act.backward(x, y, R)
    numeric = numerical_gradient(f, x, h=H)
    assert_grad_close(analytic, numeric)


def test_heaviside_backward_is_exactly_zero():
    rng = np.random.default_rng(2)
    act = make_activation("heaviside")
    x = rng.standard_normal((4, 7))
    x[0, 0] = 0.0
    grad_y = rng.standard_normal(x.shape)
    y = act.forward(x)
    grad_x = act.backward(x, y, grad_y)
    assert grad_x.shape == x.shape
    assert np.all(grad_x == 0.0)
    # and the finite difference away from the step is zero too
    x = away_from_zero(rng, (4, 7))
    numeric = numerical_gradient(lambda: float(np.sum(act.forward(x) * grad_y)), x, h=H)
    assert np.all(numeric == 0.0)


# ------------------------------------------------------------------------------------------------ losses


@pytest.mark.parametrize(("n", "k"), [(1, 2), (5, 3), (8, 10)])
def test_softmax_cross_entropy_gradient(n, k):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((n, k)) * 2.0
    target = rng.integers(0, k, n)
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, target)
    analytic = loss.backward().copy()
    numeric = numerical_gradient(lambda: loss.forward(logits, target), logits, h=H)
    assert_grad_close(analytic, numeric)


def test_softmax_cross_entropy_gradient_large_logits():
    """The log-sum-exp shift keeps both loss and gradient finite for logits in the hundreds."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 5)) + 500.0
    target = rng.integers(0, 5, 4)
    loss = SoftmaxCrossEntropy()
    assert np.isfinite(loss.forward(logits, target))
    analytic = loss.backward().copy()
    numeric = numerical_gradient(lambda: loss.forward(logits, target), logits, h=H)
    # the loss is ~1 but logits are ~500, so rounding in f limits the finite difference to ~500 eps / h
    assert_grad_close(analytic, numeric, 1e-5)


@pytest.mark.parametrize("shape", [(5, 1), (4, 3), (1, 6)])
def test_mean_squared_error_gradient(shape):
    rng = np.random.default_rng(5)
    output = rng.standard_normal(shape)
    target = rng.standard_normal(shape)
    loss = MeanSquaredError()
    loss.forward(output, target)
    analytic = loss.backward().copy()
    numeric = numerical_gradient(lambda: loss.forward(output, target), output, h=H)
    assert_grad_close(analytic, numeric)


def test_mean_squared_error_gradient_flat_target():
    """A target of shape (N,) is reshaped to the (N, 1) output."""
    rng = np.random.default_rng(6)
    output = rng.standard_normal((6, 1))
    target = rng.standard_normal(6)
    loss = MeanSquaredError()
    loss.forward(output, target)
    analytic = loss.backward().copy()
    numeric = numerical_gradient(lambda: loss.forward(output, target), output, h=H)
    assert_grad_close(analytic, numeric)


# ------------------------------------------------------------------------------------------------ layers


def check_layer_gradients(layer, x, training, rng, before_forward=lambda: None):
    """Gradient of sum(layer(x) * R) w.r.t. the input and every parameter of ``layer``."""
    buffers = {k: v.copy() for k, v in layer.buffers.items()}

    def restore():
        for k, v in buffers.items():
            layer.buffers[k][...] = v

    before_forward()
    y = layer.forward(x, training)
    R = rng.standard_normal(y.shape)
    grad_x = layer.backward(R).copy()
    grads = {k: g.copy() for k, g in layer.grads.items()}
    assert set(grads) == set(layer.params)

    def f():
        restore()
        before_forward()
        return float(np.sum(layer.forward(x, training) * R))

    assert_grad_close(grad_x, numerical_gradient(f, x, h=H))
    for name, value in layer.params.items():
        assert_grad_close(grads[name], numerical_gradient(f, value, h=H))
    restore()


@pytest.mark.parametrize("activation", ["tanh", "identity", "sigmoid"])
@pytest.mark.parametrize(("n", "inputs", "units"), [(5, 4, 3), (1, 3, 2)])
def test_dense_gradients(activation, n, inputs, units):
    rng = np.random.default_rng(7)
    layer = Dense(rng.standard_normal((inputs, units)), rng.standard_normal(units), make_activation(activation))
    x = rng.standard_normal((n, inputs))
    check_layer_gradients(layer, x, True, rng)


def test_dense_gradients_relu_away_from_kink():
    rng = np.random.default_rng(8)
    weight, bias = rng.standard_normal((4, 3)), rng.standard_normal(3)
    x = rng.standard_normal((6, 4))
    assert np.min(np.abs(x @ weight + bias)) > 1e-3  # no pre-activation near the kink for this seed
    check_layer_gradients(Dense(weight, bias, make_activation("relu")), x, True, rng)


@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_gradients(pieces):
    rng = np.random.default_rng(9)
    inputs, units, n = 4, 3, 6
    weight = rng.standard_normal((inputs, units * pieces))
    bias = rng.standard_normal(units * pieces)
    x = rng.standard_normal((n, inputs))
    z = np.sort((x @ weight + bias).reshape(n, units, pieces), axis=2)
    assert np.min(z[..., -1] - z[..., -2]) > 1e-3  # no near-ties between the top two pieces
    check_layer_gradients(Maxout(weight, bias, pieces), x, True, rng)


def make_batchnorm(rng, features):
    layer = BatchNorm(features, dtype=np.float64)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, features)
    layer.params["beta"][...] = rng.standard_normal(features)
    return layer


@pytest.mark.parametrize(("n", "features"), [(8, 4), (3, 2)])
def test_batchnorm_training_gradients(n, features):
    rng = np.random.default_rng(10)
    layer = make_batchnorm(rng, features)
    x = rng.standard_normal((n, features)) * 2.0 + 1.0
    check_layer_gradients(layer, x, True, rng)


def test_batchnorm_training_output_ignores_running_stats():
    """Justifies not caring about the running-stat updates inside f() for the training-mode checks."""
    rng = np.random.default_rng(11)
    layer = make_batchnorm(rng, 3)
    x = rng.standard_normal((5, 3))
    y1 = layer.forward(x, True)
    layer.buffers["running_mean"][...] = rng.standard_normal(3)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 3)
    np.testing.assert_array_equal(layer.forward(x, True), y1)


def test_batchnorm_eval_gradients():
    rng = np.random.default_rng(12)
    layer = make_batchnorm(rng, 4)
    layer.buffers["running_mean"][...] = rng.standard_normal(4)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 4)
    x = rng.standard_normal((6, 4))
    check_layer_gradients(layer, x, False, rng)


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_dropout_gradient_with_fixed_mask(rate):
    rng = np.random.default_rng(13)
    layer = Dropout(rate, np.random.default_rng(0))

    def reseed():
        layer.rng = np.random.default_rng(0)

    x = rng.standard_normal((6, 5))
    reseed()
    layer.forward(x, True)
    assert 0 < np.count_nonzero(layer._mask) < x.size  # some units dropped, some kept
    check_layer_gradients(layer, x, True, rng, before_forward=reseed)


def test_dropout_eval_gradient_is_identity():
    rng = np.random.default_rng(14)
    layer = Dropout(0.5, np.random.default_rng(0))
    x = rng.standard_normal((4, 3))
    check_layer_gradients(layer, x, False, rng)
    g = rng.standard_normal(x.shape)
    layer.forward(x, False)
    np.testing.assert_array_equal(layer.backward(g), g)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
def test_activation_layer_gradient(activation):
    rng = np.random.default_rng(15)
    x = away_from_zero(rng, (5, 4))
    check_layer_gradients(ActivationLayer(make_activation(activation)), x, True, rng)


# ------------------------------------------------------------------------------------------------ network


@pytest.mark.parametrize("training", [True, False])
def test_sequential_gradients(training):
    rng = np.random.default_rng(16)
    n, inputs, hidden, classes = 8, 3, 5, 4
    bn = make_batchnorm(rng, hidden)
    if not training:
        bn.buffers["running_mean"][...] = rng.standard_normal(hidden) * 0.3
        bn.buffers["running_var"][...] = rng.uniform(0.3, 1.0, hidden)
    model = Sequential(
        [
            Dense(rng.standard_normal((inputs, hidden)), rng.standard_normal(hidden) * 0.1, make_activation("tanh")),
            bn,
            ActivationLayer(make_activation("relu")),
            Dense(rng.standard_normal((hidden, classes)), rng.standard_normal(classes) * 0.1, make_activation("identity")),
        ]
    )
    x = rng.standard_normal((n, inputs))
    target = rng.integers(0, classes, n)
    loss = SoftmaxCrossEntropy()
    buffers = {k: v.copy() for k, v in bn.buffers.items()}

    def f():
        for k, v in buffers.items():
            bn.buffers[k][...] = v
        return loss.forward(model.forward(x, training), target)

    f()
    pre_relu = model.layers[1]._cache[0] * bn.params["gamma"] + bn.params["beta"]
    assert np.min(np.abs(pre_relu)) > 1e-3  # the ReLU sees no input near its kink for this seed
    grad_x = model.backward(loss.backward()).copy()
    analytic = {name: g.copy() for name, _, g in model.named_params()}
    assert len(analytic) == 6  # 2 Dense x (weight, bias) + BatchNorm (gamma, beta)
    for name, value, _ in model.named_params():
        assert_grad_close(analytic[name], numerical_gradient(f, value, h=H))
    assert_grad_close(grad_x, numerical_gradient(f, x, h=H))

"""Agreement of the engine with PyTorch (the reference in shared/reference/formulas.md), in float64.

Every comparison uses float64 on both sides, so the only differences left are rounding: atol 1e-6.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

import torch  # the test extra installs torch==2.13.0: a missing one must fail, not skip
import torch.nn.functional as F  # noqa: E402

from nnctl.engine.activations import make_activation  # noqa: E402
from nnctl.engine.init import gain, init_weights  # noqa: E402
from nnctl.engine.layers import BatchNorm, Dense, Dropout, Maxout  # noqa: E402
from nnctl.engine.losses import MeanSquaredError, SoftmaxCrossEntropy  # noqa: E402
from nnctl.engine.optim import SGD, AdaGrad, Adam, AdamW, RMSProp  # noqa: E402

ATOL = 1e-6
RTOL = 1e-7


def t64(a, requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=requires_grad)


def close(ours, theirs, atol=ATOL, rtol=RTOL):
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def _torch_seed():
    torch.manual_seed(0)
    yield


# ----------------------------------------------------------------------------------------------- activations

TORCH_ACTIVATIONS = [
    ("identity", {}, lambda x: x),
    ("sigmoid", {}, torch.sigmoid),
    ("tanh", {}, torch.tanh),
    ("relu", {}, F.relu),
    ("leaky_relu", {"slope": 0.1}, lambda x: F.leaky_relu(x, negative_slope=0.1)),
    ("leaky_relu", {"slope": 0.01}, lambda x: F.leaky_relu(x, negative_slope=0.01)),
    ("leaky_relu", {"slope": 0.2}, lambda x: F.leaky_relu(x, negative_slope=0.2)),
    ("elu", {"alpha": 1.0}, lambda x: F.elu(x, alpha=1.0)),
    ("elu", {"alpha": 0.5}, lambda x: F.elu(x, alpha=0.5)),
    ("softplus", {}, lambda x: F.softplus(x, beta=1.0, threshold=20.0)),
]


def activation_inputs(rng):
    """Ordinary values, exact kinks (0), the softplus threshold (20) and large magnitudes."""
    x = rng.standard_normal(40) * 3.0
    special = np.array([0.0, -0.0, 1e-12, -1e-12, 19.999, 20.0, 20.001, 25.0, 60.0, -25.0, -60.0, 700.0, -700.0])
    return np.concatenate([x, special]).reshape(-1, 1) * np.ones((1, 2))


@pytest.mark.parametrize(("name", "params", "torch_fn"), TORCH_ACTIVATIONS, ids=lambda v: str(v) if not callable(v) else "")
def test_activation_matches_torch(name, params, torch_fn):
    rng = np.random.default_rng(0)
    x = activation_inputs(rng)
    grad_y = rng.standard_normal(x.shape)
    act = make_activation(name, **params)

    y = act.forward(x)
    grad_x = act.backward(x, y, grad_y)

    xt = t64(x, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(t64(grad_y))

    close(y, yt)
    close(grad_x, xt.grad)


def test_activation_kink_conventions_match_torch():
    """The documented derivatives at 0: ReLU'(0) = 0, LeakyReLU'(0) = slope, ELU'(0) = alpha."""
    x = np.zeros((1, 3))
    g = np.ones((1, 3))
    relu, leaky, elu = make_activation("relu"), make_activation("leaky_relu", slope=0.1), make_activation("elu", alpha=0.5)
    np.testing.assert_array_equal(relu.backward(x, relu.forward(x), g), 0.0)
    np.testing.assert_allclose(leaky.backward(x, leaky.forward(x), g), 0.1)
    np.testing.assert_allclose(elu.backward(x, elu.forward(x), g), 0.5)


def test_softplus_threshold_matches_torch_exactly():
    """Above threshold 20 both return x and pass the gradient through unchanged, bit for bit
    (log1p(e^x) differs from x there by < 2e-9, far below ATOL, so only exact equality sees the threshold)."""
    x = np.array([[20.5, 21.0, 25.0, 33.3, 100.0]])
    g = np.array([[0.3, -1.2, 2.0, 0.7, -0.1]])
    act = make_activation("softplus")
    y = act.forward(x)
    xt = t64(x, requires_grad=True)
    yt = F.softplus(xt, beta=1.0, threshold=20.0)
    yt.backward(t64(g))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(act.backward(x, y, g), xt.grad.numpy())
    np.testing.assert_array_equal(act.backward(x, y, g), g)


def test_heaviside_matches_torch():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(20), [0.0, -0.0, 1e-300, -1e-300]]).reshape(4, 6)
    y = make_activation("heaviside").forward(x)
    expected = torch.heaviside(t64(x), t64(1.0))
    np.testing.assert_array_equal(y, expected.numpy())
    assert y.dtype == np.float64


# ---------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize(("n", "k", "scale"), [(1, 2, 1.0), (7, 3, 1.0), (16, 10, 5.0), (4, 5, 300.0)])
def test_cross_entropy_matches_torch(n, k, scale):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((n, k)) * scale
    target = rng.integers(0, k, n)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, target)
    grad = loss.backward()

    zt = t64(logits, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(target, dtype=torch.int64))
    lt.backward()
    assert isinstance(value, float)
    close(value, lt)
    close(grad, zt.grad)


@pytest.mark.parametrize("shape", [(5, 1), (6, 3), (1, 4)])
def test_mse_matches_torch(shape):
    rng = np.random.default_rng(3)
    output = rng.standard_normal(shape)
    target = rng.standard_normal(shape)
    loss = MeanSquaredError()
    value = loss.forward(output, target)
    grad = loss.backward()

    ot = t64(output, requires_grad=True)
    lt = F.mse_loss(ot, t64(target))
    lt.backward()
    close(value, lt)
    close(grad, ot.grad)


# ---------------------------------------------------------------------------------------------------- layers

TORCH_FN = {name: fn for name, params, fn in TORCH_ACTIVATIONS if not params}


@pytest.mark.parametrize("activation", ["identity", "tanh", "sigmoid", "relu"])
@pytest.mark.parametrize(("n", "inputs", "units"), [(5, 4, 3), (1, 2, 6)])
def test_dense_matches_torch_linear(activation, n, inputs, units):
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((inputs, units))
    bias = rng.standard_normal(units)
    x = rng.standard_normal((n, inputs))
    grad_y = rng.standard_normal((n, units))

    linear = torch.nn.Linear(inputs, units, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(t64(weight.T))
        linear.bias.copy_(t64(bias))

    layer = Dense(weight, bias, make_activation(activation))
    y = layer.forward(x, True)
    grad_x = layer.backward(grad_y)

    xt = t64(x, requires_grad=True)
    yt = TORCH_FN[activation](linear(xt))
    yt.backward(t64(grad_y))

    close(y, yt)
    close(grad_x, xt.grad)
    close(layer.grads["weight"], linear.weight.grad.T)
    close(layer.grads["bias"], linear.bias.grad)


@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_maxout_matches_torch(pieces):
    rng = np.random.default_rng(5)
    n, inputs, units = 6, 4, 3
    weight = rng.standard_normal((inputs, units * pieces))
    bias = rng.standard_normal(units * pieces)
    x = rng.standard_normal((n, inputs))
    grad_y = rng.standard_normal((n, units))

    layer = Maxout(weight, bias, pieces)
    y = layer.forward(x, True)
    grad_x = layer.backward(grad_y)

    xt = t64(x, requires_grad=True)
    wt = t64(weight.T, requires_grad=True)  # torch layout (out, in)
    bt = t64(bias, requires_grad=True)
    yt = F.linear(xt, wt, bt).view(n, units, pieces).max(-1).values
    yt.backward(t64(grad_y))

    assert y.shape == (n, units)
    close(y, yt)
    close(grad_x, xt.grad)
    close(layer.grads["weight"], wt.grad.T)
    close(layer.grads["bias"], bt.grad)


@pytest.mark.parametrize("rate", [0.5, 0.3, 0.1])
def test_dropout_uses_its_mask(rate):
    rng = np.random.default_rng(6)
    layer = Dropout(rate, np.random.default_rng(7))
    x = rng.standard_normal((50, 40))
    y = layer.forward(x, True)
    scaled_mask = layer._mask
    keep = scaled_mask * (1 - rate)
    assert set(np.unique(np.round(keep, 12))) <= {0.0, 1.0}
    assert 0 < keep.sum() < keep.size
    close(y, x * keep / (1 - rate), atol=1e-12)
    grad_y = rng.standard_normal(x.shape)
    close(layer.backward(grad_y), grad_y * keep / (1 - rate), atol=1e-12)
    # evaluation: the identity
    np.testing.assert_array_equal(layer.forward(x, False), x)
    np.testing.assert_array_equal(layer.backward(grad_y), grad_y)


def test_dropout_rate_is_drop_probability_like_torch():
    """rate = probability of dropping, as torch's p: the dropped fraction and the kept scale agree."""
    rate = 0.3
    x = np.ones((500, 400))
    ours = Dropout(rate, np.random.default_rng(8)).forward(x, True)
    theirs = F.dropout(t64(x), p=rate, training=True).numpy()
    for y in (ours, theirs):
        dropped = np.mean(y == 0)
        assert abs(dropped - rate) < 0.02, dropped
        np.testing.assert_allclose(y[y != 0], 1 / (1 - rate))
    assert abs(np.mean(ours == 0) - np.mean(theirs == 0)) < 0.02


@pytest.mark.parametrize(("n", "features"), [(8, 4), (3, 5), (32, 2)])
def test_batchnorm_matches_torch(n, features):
    rng = np.random.default_rng(9)
    gamma = rng.uniform(0.5, 1.5, features)
    beta = rng.standard_normal(features)

    ours = BatchNorm(features, momentum=0.1, eps=1e-5, dtype=np.float64)
    ours.params["gamma"][...] = gamma
    ours.params["beta"][...] = beta
    bn = torch.nn.BatchNorm1d(features, momentum=0.1, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(t64(gamma))
        bn.bias.copy_(t64(beta))
    bn.train()

    for step in range(5):
        x = rng.standard_normal((n, features)) * (1 + step) + step - 2.0
        grad_y = rng.standard_normal((n, features))

        y = ours.forward(x, True)
        grad_x = ours.backward(grad_y)

        bn.zero_grad()
        xt = t64(x, requires_grad=True)
        yt = bn(xt)
        yt.backward(t64(grad_y))

        close(y, yt)
        close(grad_x, xt.grad)
        close(ours.grads["gamma"], bn.weight.grad)
        close(ours.grads["beta"], bn.bias.grad)

    close(ours.buffers["running_mean"], bn.running_mean)
    close(ours.buffers["running_var"], bn.running_var)
    assert int(bn.num_batches_tracked) == 5

    bn.eval()
    x = rng.standard_normal((n, features)) * 2.0
    grad_y = rng.standard_normal((n, features))
    y = ours.forward(x, False)
    grad_x = ours.backward(grad_y)
    bn.zero_grad()
    xt = t64(x, requires_grad=True)
    yt = bn(xt)
    yt.backward(t64(grad_y))
    close(y, yt)
    close(grad_x, xt.grad)
    close(ours.grads["gamma"], bn.weight.grad)
    close(ours.grads["beta"], bn.bias.grad)
    # evaluation does not move the running statistics
    close(ours.buffers["running_mean"], bn.running_mean)
    close(ours.buffers["running_var"], bn.running_var)


def test_batchnorm_initial_state_matches_torch():
    ours = BatchNorm(3, dtype=np.float64)
    bn = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    close(ours.params["gamma"], bn.weight)
    close(ours.params["beta"], bn.bias)
    close(ours.buffers["running_mean"], bn.running_mean)
    close(ours.buffers["running_var"], bn.running_var)
    assert ours.momentum == bn.momentum and ours.eps == bn.eps


# ------------------------------------------------------------------------------------------------ optimizers

OPTIMIZER_CASES = [
    ("sgd-plain", SGD, torch.optim.SGD, {"lr": 0.1}, {}),
    ("sgd-momentum", SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, {}),
    ("sgd-nesterov", SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}, {}),
    ("sgd-wd", SGD, torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.01}, {}),
    ("sgd-momentum-wd", SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, {}),
    ("sgd-nesterov-wd", SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, {}),
    ("adam", Adam, torch.optim.Adam, {"lr": 0.01}, {}),
    ("adam-betas", Adam, torch.optim.Adam, {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6}, {}),
    ("adam-wd", Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.01}, {}),
    ("adamw", AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.01}, {}),
    ("adamw-wd0.1", AdamW, torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.1}, {}),
    ("rmsprop", RMSProp, torch.optim.RMSprop, {"lr": 0.01}, {}),
    ("rmsprop-momentum", RMSProp, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9}, {}),
    ("rmsprop-wd", RMSProp, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}, {}),
    ("adagrad", AdaGrad, torch.optim.Adagrad, {"lr": 0.1}, {}),
    ("adagrad-decay", AdaGrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01}, {}),
    ("adagrad-wd", AdaGrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01}, {}),
]

SHAPES = [(3, 4), (5,)]
K_STEPS = 10


def gradient_sequence(seed, k=K_STEPS):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * (1 + 0.5 * i) for s in SHAPES] for i in range(k)]


def start_params(seed=10):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def make_ours(cls, kwargs, params):
    grads = [np.zeros_like(p) for p in params]
    return cls(params, grads, **kwargs), grads


def run_ours(opt, grads, sequence):
    for gs in sequence:
        for g_arr, g in zip(grads, gs):
            g_arr[...] = g
        opt.step()


@pytest.mark.parametrize(("case", "ours_cls", "torch_cls", "kwargs", "torch_extra"), OPTIMIZER_CASES, ids=[c[0] for c in OPTIMIZER_CASES])
def test_optimizer_matches_torch(case, ours_cls, torch_cls, kwargs, torch_extra):
    sequence = gradient_sequence(11)
    params = start_params()
    start = [p.copy() for p in params]
    opt, grads = make_ours(ours_cls, kwargs, params)
    assert opt.params[0] is params[0] and opt.grads[0] is grads[0]

    tparams = [t64(p, requires_grad=True) for p in start]
    topt = torch_cls(tparams, **kwargs, **torch_extra)

    for step, gs in enumerate(sequence, 1):
        for g_arr, g in zip(grads, gs):
            g_arr[...] = g
        opt.step()
        for p, g in zip(tparams, gs):
            p.grad = t64(g)
        topt.step()
        for p, tp in zip(params, tparams):
            close(p, tp)  # after every step, not just the last
    assert opt.steps == K_STEPS
    # the parameters moved (so the comparison is not trivially of the start values)
    assert all(np.max(np.abs(p - s)) > 1e-3 for p, s in zip(params, start))


def _roundtrip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Through an .npz file in memory, as a checkpoint would."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize(("case", "ours_cls", "torch_cls", "kwargs", "torch_extra"), OPTIMIZER_CASES, ids=[c[0] for c in OPTIMIZER_CASES])
def test_optimizer_state_dict_roundtrip(case, ours_cls, torch_cls, kwargs, torch_extra):
    first, second = gradient_sequence(12, 5), gradient_sequence(13, 5)

    params_a = start_params()
    opt_a, grads_a = make_ours(ours_cls, kwargs, params_a)
    run_ours(opt_a, grads_a, first)

    state = _roundtrip(opt_a.state_dict())
    params_b = [p.copy() for p in params_a]
    opt_b, grads_b = make_ours(ours_cls, kwargs, params_b)
    opt_b.load_state_dict(state)
    assert opt_b.steps == opt_a.steps == 5
    # loading copies: b's state does not alias a's
    for sa, sb in zip(opt_a.state, opt_b.state):
        for slot in sa:
            assert not np.shares_memory(sa[slot], sb[slot])

    params_c = [p.copy() for p in params_a]  # a fresh optimizer without the state, for contrast
    opt_c, grads_c = make_ours(ours_cls, kwargs, params_c)

    run_ours(opt_a, grads_a, second)
    run_ours(opt_b, grads_b, second)
    run_ours(opt_c, grads_c, second)
    for pa, pb in zip(params_a, params_b):
        np.testing.assert_array_equal(pa, pb)
    stateless = ours_cls is SGD and not kwargs.get("momentum")
    if not stateless:
        assert any(not np.array_equal(pa, pc) for pa, pc in zip(params_a, params_c))


def test_optimizer_lr_attribute_is_used_like_torch_param_group_lr():
    """A schedule sets ``opt.lr`` between steps; torch sets param_groups[0]['lr']."""
    sequence = gradient_sequence(14, 6)
    params = start_params()
    tparams = [t64(p, requires_grad=True) for p in params]
    opt, grads = make_ours(Adam, {"lr": 0.01}, params)
    topt = torch.optim.Adam(tparams, lr=0.01)
    for i, gs in enumerate(sequence):
        lr = 0.01 * 0.5**i
        opt.lr = lr
        topt.param_groups[0]["lr"] = lr
        run_ours(opt, grads, [gs])
        for p, g in zip(tparams, gs):
            p.grad = t64(g)
        topt.step()
    for p, tp in zip(params, tparams):
        close(p, tp)


# ------------------------------------------------------------------------------------------------------ init

FAN_IN, FAN_OUT = 300, 200


def _bound_checks(w, bound):
    assert np.max(np.abs(w)) <= bound
    assert np.max(np.abs(w)) > 0.99 * bound  # 60 000 draws: the largest is within 1 % of the bound
    assert abs(np.mean(w)) < 0.02 * bound


@pytest.mark.parametrize(
    ("scheme", "act", "expected_bound"),
    [
        ("xavier_uniform", "identity", math.sqrt(6.0 / (FAN_IN + FAN_OUT))),
        ("he_uniform", "relu", math.sqrt(2.0) * math.sqrt(3.0 / FAN_IN)),
        ("he_uniform", "tanh", 5.0 / 3.0 * math.sqrt(3.0 / FAN_IN)),
        ("he_uniform", "identity", math.sqrt(3.0 / FAN_IN)),
        ("torch", "identity", 1.0 / math.sqrt(FAN_IN)),
    ],
)
def test_uniform_init_bounds(scheme, act, expected_bound):
    rng = np.random.default_rng(15)
    weight, bias = init_weights(scheme, FAN_IN, FAN_OUT, rng, activation_gain=gain(act), dtype=np.float64)
    assert weight.shape == (FAN_IN, FAN_OUT) and bias.shape == (FAN_OUT,)
    assert weight.dtype == np.float64 and bias.dtype == np.float64
    _bound_checks(weight, expected_bound)
    if scheme == "torch":
        assert np.max(np.abs(bias)) <= expected_bound and np.std(bias) > 0.3 * expected_bound
    else:
        np.testing.assert_array_equal(bias, 0.0)


def test_uniform_init_bounds_agree_with_torch_init():
    """The same bounds, from torch.nn.init on a (fan_out, fan_in) tensor."""
    w = torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)
    torch.nn.init.xavier_uniform_(w)
    _bound_checks(w.numpy(), math.sqrt(6.0 / (FAN_IN + FAN_OUT)))
    torch.nn.init.kaiming_uniform_(w, nonlinearity="relu")
    _bound_checks(w.numpy(), gain("relu") * math.sqrt(3.0 / FAN_IN))
    linear = torch.nn.Linear(FAN_IN, FAN_OUT, dtype=torch.float64)
    _bound_checks(linear.weight.detach().numpy(), 1.0 / math.sqrt(FAN_IN))
    assert linear.bias.abs().max().item() <= 1.0 / math.sqrt(FAN_IN)


@pytest.mark.parametrize(
    ("scheme", "act", "expected_std"),
    [
        ("xavier_normal", "identity", math.sqrt(2.0 / (FAN_IN + FAN_OUT))),
        ("he_normal", "relu", math.sqrt(2.0) / math.sqrt(FAN_IN)),
        ("he_normal", "tanh", 5.0 / 3.0 / math.sqrt(FAN_IN)),
    ],
)
def test_normal_init_std(scheme, act, expected_std):
    rng = np.random.default_rng(16)
    weight, bias = init_weights(scheme, FAN_IN, FAN_OUT, rng, activation_gain=gain(act), dtype=np.float64)
    assert abs(np.std(weight) / expected_std - 1) < 0.02
    np.testing.assert_array_equal(bias, 0.0)


@pytest.mark.parametrize(
    ("ours", "kwargs", "theirs", "param"),
    [
        ("relu", {}, "relu", None),
        ("tanh", {}, "tanh", None),
        ("leaky_relu", {"slope": 0.1}, "leaky_relu", 0.1),
        ("leaky_relu", {"slope": 0.2}, "leaky_relu", 0.2),
        ("leaky_relu", {}, "leaky_relu", None),  # both default to slope 0.01
        ("sigmoid", {}, "sigmoid", None),
        ("identity", {}, "linear", None),
        ("linear", {}, "linear", None),
    ],
)
def test_gain_matches_torch(ours, kwargs, theirs, param):
    expected = torch.nn.init.calculate_gain(theirs, param)
    assert gain(ours, **kwargs) == pytest.approx(expected, rel=1e-12, abs=1e-12)

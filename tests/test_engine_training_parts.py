"""Agreement with PyTorch of the training parts around the optimizer, in float64: learning-rate schedules
(``torch.optim.lr_scheduler``), L1/L2 weight penalties (autograd of the penalty), global-norm gradient
clipping (``torch.nn.utils.clip_grad_norm_``), and a few training steps that combine them all.

Epochs: nnctl's ``Schedule.lr(epoch)`` takes a 1-based epoch and gives the lr used during that epoch.
A PyTorch scheduler is stepped once at the end of each epoch, so nnctl's lr(e) is compared with
``optimizer.param_groups[0]["lr"]`` read at the start of epoch e (before that epoch's ``scheduler.step()``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import torch  # the test extra installs torch==2.13.0: a missing one must fail, not skip
from torch.optim import lr_scheduler  # noqa: E402

from nnctl.build import regularized_weights  # noqa: E402
from nnctl.engine.activations import Identity, Tanh  # noqa: E402
from nnctl.engine.layers import Dense  # noqa: E402
from nnctl.engine.losses import SoftmaxCrossEntropy  # noqa: E402
from nnctl.engine.model import Sequential  # noqa: E402
from nnctl.engine.optim import SGD  # noqa: E402
from nnctl.engine.regularization import add_penalty_gradient, clip_global_norm, penalty  # noqa: E402
from nnctl.engine.schedules import Constant, Cosine, Exponential, ReduceOnPlateau, Step  # noqa: E402

EPOCHS = 60
BASE_LR = 0.1


def t64(a, requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=requires_grad)


def torch_optimizer(lr=BASE_LR):
    """An optimizer over one dummy parameter: only its param_groups' lr matters to the schedulers."""
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    return torch.optim.SGD([param], lr=lr)


@pytest.fixture(autouse=True)
def _torch_seed():
    torch.manual_seed(0)
    yield


# ------------------------------------------------------------------------------------------- epoch schedules

SCHEDULE_CASES = [
    # (id, nnctl schedule, torch scheduler factory, rtol)
    ("constant", lambda: Constant(BASE_LR), lambda o: lr_scheduler.LambdaLR(o, lambda _: 1.0), 1e-9),
    ("step7_half", lambda: Step(BASE_LR, step_size=7, gamma=0.5), lambda o: lr_scheduler.StepLR(o, 7, gamma=0.5), 1e-9),
    ("step1_0.9", lambda: Step(BASE_LR, step_size=1, gamma=0.9), lambda o: lr_scheduler.StepLR(o, 1, gamma=0.9), 1e-9),
    ("step25_0.1", lambda: Step(BASE_LR, step_size=25, gamma=0.1), lambda o: lr_scheduler.StepLR(o, 25, gamma=0.1), 1e-9),
    ("exp0.95", lambda: Exponential(BASE_LR, gamma=0.95), lambda o: lr_scheduler.ExponentialLR(o, gamma=0.95), 1e-9),
    ("exp0.8", lambda: Exponential(BASE_LR, gamma=0.8), lambda o: lr_scheduler.ExponentialLR(o, gamma=0.8), 1e-9),
    # CosineAnnealingLR computes its lr recursively from the previous one: rounding may drift, hence rtol 1e-6.
    (
        "cosine60",
        lambda: Cosine(BASE_LR, period=60, min_lr=0.001),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=60, eta_min=0.001),
        1e-6,
    ),
    (
        "cosine60_min0",
        lambda: Cosine(BASE_LR, period=60),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=60, eta_min=0.0),
        1e-6,
    ),
    # Beyond T_max, CosineAnnealingLR does not stay at eta_min: it keeps following
    # eta_min + (lr0 - eta_min)(1 + cos(pi t / T_max)) / 2, which climbs back to lr0 at t = 2 T_max and
    # falls again (its recursion has a special case at t = T_max + 1 + 2k T_max to make that hold).
    # nnctl's closed form is the same cosine with t = epoch - 1, so the two agree over all 60 epochs
    # (three half-periods), not just the first 20; measured: within 1e-15 relative.
    (
        "cosine20",
        lambda: Cosine(BASE_LR, period=20, min_lr=0.001),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.001),
        1e-6,
    ),
    (
        "cosine7",
        lambda: Cosine(BASE_LR, period=7, min_lr=0.0),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.0),
        1e-6,
    ),
]


def torch_epoch_lrs(make_scheduler, epochs=EPOCHS):
    """lr during epochs 1..epochs: read at the start of each epoch, then optimizer.step(), scheduler.step()."""
    optimizer = torch_optimizer()
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs)


@pytest.mark.parametrize(("case", "make_ours", "make_torch", "rtol"), SCHEDULE_CASES, ids=[c[0] for c in SCHEDULE_CASES])
def test_schedule_matches_torch(case, make_ours, make_torch, rtol):
    ours = make_ours()
    ours_lrs = np.array([ours.lr(epoch) for epoch in range(1, EPOCHS + 1)])
    theirs = torch_epoch_lrs(make_torch)
    assert ours_lrs[0] == BASE_LR  # epoch 1 trains with the base lr: the schedule starts at 1, not 0
    np.testing.assert_allclose(ours_lrs, theirs, rtol=rtol, atol=1e-12)


def test_schedule_epochs_are_one_based():
    """An off-by-one (0-based epoch) would shift every decay by one epoch: pin the boundaries."""
    step = Step(BASE_LR, step_size=7, gamma=0.5)
    assert [step.lr(e) for e in (1, 7, 8, 14, 15)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert Exponential(BASE_LR, gamma=0.95).lr(2) == pytest.approx(0.095, rel=1e-15)
    cosine = Cosine(BASE_LR, period=20, min_lr=0.001)
    assert cosine.lr(1) == BASE_LR
    assert cosine.lr(21) == pytest.approx(0.001, rel=1e-12)  # the minimum is the lr of epoch period + 1
    assert cosine.lr(41) == pytest.approx(BASE_LR, rel=1e-12)  # and the cosine climbs back, as torch's does


# ----------------------------------------------------------------------------------------- reduce on plateau


def min_sequence():
    """60 positive losses: improve, plateau (with changes below the 1e-4 relative threshold and small rises),
    improve a bit, plateau again."""
    values = [1.0 * 0.8**i for i in range(10)]  # epochs 1-10: clear improvement
    flat = values[-1]
    wiggle = [0.0, -3e-5, 2e-3, -5e-5, 1e-3, 0.0, -2e-5, 4e-3, -8e-5, 0.0, 1e-3, -1e-5]
    values += [flat * (1 + w) for w in wiggle]  # epochs 11-22: plateau (no relative improvement >= 1e-4)
    values += [flat * 0.97**i for i in range(1, 9)]  # epochs 23-30: improves a bit (3 % a step)
    flat = values[-1]
    values += [flat * (1 + wiggle[i % len(wiggle)]) for i in range(30)]  # epochs 31-60: plateau again
    assert len(values) == EPOCHS
    return values


def max_sequence():
    """60 accuracies: increase, then flat with tiny wiggles (below 1e-4 relative), a small bump, flat."""
    values = [0.5 + 0.4 * (1 - 0.85**i) for i in range(1, 21)]
    top = values[-1]
    wiggle = [0.0, 2e-5, -1e-3, 5e-5, 0.0, -2e-3, 8e-5]
    values += [top * (1 + wiggle[i % len(wiggle)]) for i in range(20)]
    values += [top * 1.01, top * 1.02]
    top = values[-1]
    values += [top * (1 + wiggle[i % len(wiggle)]) for i in range(18)]
    assert len(values) == EPOCHS
    return values


PLATEAU_CASES = [
    ("min_f0.5_p3", "min", dict(factor=0.5, patience=3, threshold=1e-4, cooldown=0, min_lr=0.0), min_sequence),
    ("min_f0.1_p0_cd2_floor", "min", dict(factor=0.1, patience=0, threshold=1e-4, cooldown=2, min_lr=1e-4), min_sequence),
    ("min_f0.5_p2_thr1e-2_cd1", "min", dict(factor=0.5, patience=2, threshold=1e-2, cooldown=1, min_lr=0.0), min_sequence),
    ("max_f0.5_p3", "max", dict(factor=0.5, patience=3, threshold=1e-4, cooldown=0, min_lr=0.0), max_sequence),
    ("max_f0.1_p0_cd2_floor", "max", dict(factor=0.1, patience=0, threshold=1e-4, cooldown=2, min_lr=1e-4), max_sequence),
]


def plateau_lrs(mode, params, values, ours=None):
    """lr of epoch 1, then after each epoch's observe/step the lr of the next epoch, for nnctl and torch."""
    ours = ours or ReduceOnPlateau(BASE_LR, mode=mode, **params)
    optimizer = torch_optimizer()
    scheduler = lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=mode,
        factor=params["factor"],
        patience=params["patience"],
        threshold=params["threshold"],
        threshold_mode="rel",
        cooldown=params["cooldown"],
        min_lr=params["min_lr"],
    )
    ours_lrs, torch_lrs = [ours.lr(1)], [optimizer.param_groups[0]["lr"]]
    for epoch, value in enumerate(values, start=1):
        optimizer.step()
        ours.observe(value)
        scheduler.step(value)
        ours_lrs.append(ours.lr(epoch + 1))
        torch_lrs.append(optimizer.param_groups[0]["lr"])
    return np.array(ours_lrs), np.array(torch_lrs)


@pytest.mark.parametrize(("case", "mode", "params", "sequence"), PLATEAU_CASES, ids=[c[0] for c in PLATEAU_CASES])
def test_reduce_on_plateau_matches_torch(case, mode, params, sequence):
    ours, theirs = plateau_lrs(mode, params, sequence())
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    # the sequence must exercise the schedule: at least two reductions, none in the first (improving) epochs
    assert len(np.unique(theirs)) >= 3, theirs
    assert np.all(theirs[:6] == BASE_LR)
    if params["min_lr"]:
        assert theirs[-1] == pytest.approx(params["min_lr"], rel=1e-12)  # reached the floor and stays there
        assert np.all(ours >= params["min_lr"])


@pytest.mark.parametrize(("case", "mode", "params", "sequence"), PLATEAU_CASES, ids=[c[0] for c in PLATEAU_CASES])
def test_reduce_on_plateau_state_dict_roundtrip(case, mode, params, sequence):
    """A fresh ReduceOnPlateau loaded from another's state after k epochs continues exactly as the original."""
    values = sequence()
    full, theirs = plateau_lrs(mode, params, values)
    for k in (5, 14, 27, 40):
        original = ReduceOnPlateau(BASE_LR, mode=mode, **params)
        for value in values[:k]:
            original.observe(value)
        resumed = ReduceOnPlateau(BASE_LR, mode=mode, **params)
        resumed.load_state_dict(original.state_dict())
        assert resumed.state_dict() == original.state_dict()
        resumed_lrs = [resumed.lr(k + 1)]
        original_lrs = [original.lr(k + 1)]
        for epoch, value in enumerate(values[k:], start=k + 1):
            resumed.observe(value)
            original.observe(value)
            resumed_lrs.append(resumed.lr(epoch + 1))
            original_lrs.append(original.lr(epoch + 1))
        assert resumed_lrs == original_lrs
        assert resumed_lrs == list(full[k:])
        np.testing.assert_allclose(resumed_lrs, theirs[k:], rtol=1e-9, atol=1e-12)


def test_reduce_on_plateau_negative_values_match_torch():
    """Monitored values below zero (e.g. a negative log-likelihood-style metric): a slow creep below the
    relative threshold.  torch counts every step as an improvement and never reduces; nnctl reduces."""
    values = [-1.0 - 5e-5 * i for i in range(20)]
    params = dict(factor=0.5, patience=3, threshold=1e-3, cooldown=0, min_lr=0.0)
    ours, theirs = plateau_lrs("min", params, values)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------- L1/L2 penalty


def away_from_zero(rng, shape):
    """Entries with |w| in [0.1, 2]: |w| is differentiable there, so sign(w) is the true gradient."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


PENALTY_CASES = [(0.01, 0.0), (0.0, 0.01), (0.003, 0.02), (0.5, 1.5)]


def torch_penalty(weights, l1, l2):
    tensors = [t64(w, requires_grad=True) for w in weights]
    total = sum(l1 * w.abs().sum() + l2 * (w * w).sum() for w in tensors)
    total.backward()
    return float(total.detach()), [w.grad.numpy() for w in tensors]


@pytest.mark.parametrize(("l1", "l2"), PENALTY_CASES)
def test_penalty_and_gradient_match_torch_autograd(l1, l2):
    rng = np.random.default_rng(1)
    weights = [away_from_zero(rng, (4, 6)), away_from_zero(rng, (6, 3))]
    before = [w.copy() for w in weights]
    start = [rng.standard_normal(w.shape) for w in weights]  # an existing loss gradient, nonzero
    grads = [g.copy() for g in start]

    value = penalty(weights, l1, l2)
    add_penalty_gradient(weights, grads, l1, l2)
    expected_value, expected_grads = torch_penalty(weights, l1, l2)

    assert isinstance(value, float)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-12)
    for g, g0, expected in zip(grads, start, expected_grads):
        assert g.dtype == np.float64
        # the penalty gradient is ADDED to the existing one, not written over it
        np.testing.assert_allclose(g, g0 + expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g - g0, expected, rtol=1e-9, atol=1e-12)
    for w, w0 in zip(weights, before):
        np.testing.assert_array_equal(w, w0)  # weights untouched


def test_l1_gradient_at_zero_is_zero_like_torch():
    """At w = 0 exactly, torch's |w| backward gives 0 (sgn(0)); so does np.sign."""
    weights = [np.array([[0.0, 1.5], [-0.0, -0.25]])]
    grads = [np.ones((2, 2))]
    add_penalty_gradient(weights, grads, 0.1, 0.0)
    _, expected = torch_penalty(weights, 0.1, 0.0)
    np.testing.assert_allclose(grads[0] - 1.0, expected[0], rtol=0, atol=1e-15)
    assert grads[0][0, 0] == 1.0 and grads[0][1, 0] == 1.0


def test_zero_penalty_leaves_gradients_unchanged():
    rng = np.random.default_rng(2)
    weights = [away_from_zero(rng, (3, 5)), away_from_zero(rng, (5, 2))]
    grads = [rng.standard_normal(w.shape) for w in weights]
    before = [g.copy() for g in grads]
    add_penalty_gradient(weights, grads, 0.0, 0.0)
    for g, g0 in zip(grads, before):
        np.testing.assert_array_equal(g, g0)
    assert penalty(weights, 0.0, 0.0) == 0.0


# ---------------------------------------------------------------------------------------------- clipping


def clip_case(rng, target_norm):
    grads = [rng.standard_normal((4, 5)), rng.standard_normal(5), rng.standard_normal((5, 3)), rng.standard_normal(3)]
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    return [g * (target_norm / norm) for g in grads]


def torch_clip(grads, max_norm):
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = t64(g)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm, norm_type=2.0)
    return float(total), [p.grad.numpy() for p in params]


@pytest.mark.parametrize("target_norm", [3.7, 1.0 + 1e-3, 25.0])
def test_clip_global_norm_above_max_matches_torch(target_norm):
    rng = np.random.default_rng(3)
    grads = clip_case(rng, target_norm)
    arrays = list(grads)  # the same objects: clipping must work in place
    expected_norm, expected = torch_clip(grads, 1.0)

    norm = clip_global_norm(grads, 1.0)

    assert expected_norm == pytest.approx(target_norm, rel=1e-12)
    np.testing.assert_allclose(norm, expected_norm, rtol=1e-12, atol=1e-12)  # the norm BEFORE clipping
    for g, a, e in zip(grads, arrays, expected):
        assert g is a
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    clipped = math.sqrt(sum(float((g * g).sum()) for g in grads))
    assert clipped < 1.0 and clipped == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("target_norm", [0.3, 0.999])
def test_clip_global_norm_below_max_leaves_grads_unchanged(target_norm):
    rng = np.random.default_rng(4)
    grads = clip_case(rng, target_norm)
    before = [g.copy() for g in grads]
    expected_norm, expected = torch_clip(grads, 1.0)

    norm = clip_global_norm(grads, 1.0)

    np.testing.assert_allclose(norm, expected_norm, rtol=1e-12, atol=1e-12)
    for g, g0, e in zip(grads, before, expected):
        np.testing.assert_array_equal(g, g0)  # exactly unchanged
        np.testing.assert_array_equal(g, e)  # torch multiplies by a clamped coefficient of exactly 1.0


# ------------------------------------------------------------------------------------ k steps, end to end

L2 = 0.01
CLIP = 0.5
LR = 0.1
STEPS = 5


def test_training_steps_match_torch_end_to_end():
    """Dense(tanh) -> Dense(identity) -> softmax cross-entropy, + L2 on the weight matrices only, global-norm
    clipping and SGD(momentum 0.9, nesterov): 5 steps on fixed batches, against the same model in torch."""
    rng = np.random.default_rng(5)
    n_in, n_hidden, n_out, batch = 4, 6, 3, 8
    w1, b1 = rng.standard_normal((n_in, n_hidden)), 0.5 * rng.standard_normal(n_hidden)
    w2, b2 = rng.standard_normal((n_hidden, n_out)), 0.5 * rng.standard_normal(n_out)
    batches = [(2.0 * rng.standard_normal((batch, n_in)), rng.integers(0, n_out, size=batch)) for _ in range(STEPS)]

    # nnctl
    model = Sequential([Dense(w1.copy(), b1.copy(), Tanh()), Dense(w2.copy(), b2.copy(), Identity())])
    named = model.named_params()
    params, grads = [p for _, p, _ in named], [g for _, _, g in named]
    weights, weight_grads = regularized_weights(model)
    # the penalty applies to the two weight matrices, never to the biases
    assert [id(w) for w in weights] == [id(model.layers[0].params["weight"]), id(model.layers[1].params["weight"])]
    assert [id(g) for g in weight_grads] == [id(model.layers[0].grads["weight"]), id(model.layers[1].grads["weight"])]
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(params, grads, lr=LR, momentum=0.9, nesterov=True)

    # torch: nn.Linear stores the transpose of our (inputs, units) weight
    net = torch.nn.Sequential(
        torch.nn.Linear(n_in, n_hidden), torch.nn.Tanh(), torch.nn.Linear(n_hidden, n_out)
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(t64(w1.T))
        net[0].bias.copy_(t64(b1))
        net[2].weight.copy_(t64(w2.T))
        net[2].bias.copy_(t64(b2))
    torch_opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, nesterov=True)

    clipped_steps = 0
    for x, y in batches:
        loss = loss_fn.forward(model.forward(x, training=True), y)
        model.backward(loss_fn.backward())
        add_penalty_gradient(weights, weight_grads, 0.0, L2)
        norm = clip_global_norm(grads, CLIP)
        optimizer.step()

        torch_opt.zero_grad()
        data_loss = torch.nn.functional.cross_entropy(net(t64(x)), torch.tensor(y))
        total = data_loss + L2 * ((net[0].weight ** 2).sum() + (net[2].weight ** 2).sum())
        total.backward()
        torch_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=CLIP, norm_type=2.0))
        torch_opt.step()

        np.testing.assert_allclose(loss, float(data_loss.detach()), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(norm, torch_norm, rtol=1e-9, atol=1e-12)
        clipped_steps += norm > CLIP

    assert clipped_steps >= 1  # clipping was actually exercised
    theirs = {
        "layers.0.weight": net[0].weight.detach().numpy().T,
        "layers.0.bias": net[0].bias.detach().numpy(),
        "layers.1.weight": net[2].weight.detach().numpy().T,
        "layers.1.bias": net[2].bias.detach().numpy(),
    }
    for name, p, _ in model.named_params():
        np.testing.assert_allclose(p, theirs[name], rtol=1e-9, atol=1e-9, err_msg=name)
    # the parameters did move (so agreement is not trivially the initial values)
    assert not np.allclose(model.layers[0].params["weight"], w1)

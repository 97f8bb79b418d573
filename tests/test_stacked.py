"""A population trained stacked is each member trained alone, bit for bit: layer by layer, the loss, the penalty,
clipping and every optimizer, over several steps with different data, seeds and hyperparameters per member."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl import build
from nnctl.config import validate_config
from nnctl.engine import stacked as st
from nnctl.engine.layers import Dense
from nnctl.engine.losses import LOSSES
from nnctl.engine.model import Sequential
from nnctl.training import train_step
from nnctl.yamlio import Locations

MEMBERS = 4
BATCH, FEATURES = 10, 3


def config(seed: int, layers: list[dict], loss: str, optimizer: dict, l1: float, l2: float, classes: int):
    data = {"dataset": "circle"}
    return validate_config(
        {
            "seed": seed, "data": data,
            "model": {"layers": [*layers, {"type": "dense", "units": classes}], "regularization": {"l1": l1, "l2": l2}},
            "loss": loss, "optimizer": optimizer,
        },
        Locations("test"),
    ).config  # fmt: skip


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


LAYERS = {
    "dense": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 5, "activation": "relu"}],
    "dropout": [{"type": "dense", "units": 8, "activation": "sigmoid"}, {"type": "dropout", "rate": 0.3}, {"type": "dense", "units": 6, "activation": "elu"}],
    "batchnorm": [{"type": "dense", "units": 8}, {"type": "batchnorm"}, {"type": "activation", "name": "leaky_relu"}, {"type": "dense", "units": 4, "activation": "softplus"}],
}
# members with different activations, in the order a sweep may give them (equal ones not side by side)
MIXED_DENSE = ["tanh", "relu", "tanh", {"name": "leaky_relu", "slope": 0.2}]
MIXED_AFTER_BATCHNORM = ["elu", {"name": "leaky_relu", "slope": 0.05}, "sigmoid", "elu"]


def member_layers(name: str, p: int) -> list[dict]:
    if name != "mixed":
        return LAYERS[name]
    after = MIXED_AFTER_BATCHNORM[p]
    return [
        {"type": "dense", "units": 8, "activation": MIXED_DENSE[p]}, {"type": "batchnorm"},
        {"type": "activation", **({"name": after} if isinstance(after, str) else after)}, {"type": "dense", "units": 5, "activation": MIXED_DENSE[-1 - p]},
    ]  # fmt: skip


OPTIMIZERS = {
    "sgd": lambda p: {"name": "sgd", "lr": 0.05 * (p + 1)},
    "momentum": lambda p: {"name": "sgd", "lr": 0.02 + 0.01 * p, "momentum": 0.5 + 0.1 * p},
    "nesterov": lambda p: {"name": "sgd", "lr": 0.03, "momentum": 0.9 - 0.1 * p, "nesterov": True, "weight_decay": 1e-3 * (p + 1)},
    "adam": lambda p: {"name": "adam", "lr": 0.001 * (p + 1), "betas": [0.9 - 0.05 * p, 0.999 - 0.001 * p], "weight_decay": 1e-4},
    "adamw": lambda p: {"name": "adamw", "lr": 0.003, "weight_decay": 0.01 * (p + 1)},
    "rmsprop": lambda p: {"name": "rmsprop", "lr": 0.001 * (p + 1), "momentum": 0.3, "alpha": 0.9 + 0.02 * p},
    "adagrad": lambda p: {"name": "adagrad", "lr": 0.01 * (p + 1), "lr_decay": 0.01 * p},
}


@pytest.mark.parametrize(
    "layers, loss, optimizer, penalty, clip",
    [
        ("dense", "cross_entropy", "sgd", (0.0, 0.0), None),
        ("dense", "mse", "momentum", (1e-3, 0.0), None),
        ("dropout", "cross_entropy", "nesterov", (0.0, 1e-3), 0.5),
        ("batchnorm", "cross_entropy", "adam", (1e-3, 1e-3), None),
        ("dropout", "mse", "adamw", (0.0, 0.0), 1.0),
        ("batchnorm", "mse", "rmsprop", (0.0, 2e-3), None),
        ("dense", "cross_entropy", "adagrad", (1e-4, 0.0), 0.1),
        ("mixed", "cross_entropy", "momentum", (0.0, 1e-3), None),
        ("mixed", "mse", "adam", (0.0, 0.0), None),
    ],
)
def test_a_stacked_population_is_each_member_alone_bit_for_bit(layers, loss, optimizer, penalty, clip):
    classes = 3 if loss == "cross_entropy" else 2
    configs = [
        config(100 + p, member_layers(layers, p), loss, OPTIMIZERS[optimizer](p), penalty[0] * (p + 1), penalty[1] * (p + 1), classes)
        for p in range(MEMBERS)
    ]
    # each member alone, as nnctl train builds it
    alone = [build.build_model(c, FEATURES, c.seed) for c in configs]
    alone_optimizers = [build.build_optimizer(c, *[[v] for v in model.flatten_parameters()]) for c, model in zip(configs, alone)]
    # the same members stacked (built from the same seeds, so the same initial weights and dropout streams)
    members = [build.build_model(c, FEATURES, c.seed) for c in configs]
    population = Sequential(st.stack_layers(members))
    params, grads = st.population_view(population, members)
    optimizer_specs = [c.optimizer.model_dump() for c in configs]
    stacked_optimizer = st.stack_optimizer(optimizer_specs, params, grads)
    stacked_loss = st.STACKED_LOSSES[loss]()
    weights = [layer.params["weight"] for layer in population.layers if isinstance(layer, st.StackedDense)]
    weight_grads = [layer.grads["weight"] for layer in population.layers if isinstance(layer, st.StackedDense)]
    l1 = np.array([c.model.regularization.l1 for c in configs]) if penalty[0] else None
    l2 = np.array([c.model.regularization.l2 for c in configs]) if penalty[1] else None
    stacked_penalty = st.StackedPenalty(l1, l2, weights[0].dtype)

    rng = np.random.default_rng(7)
    for step in range(6):
        x = rng.standard_normal((MEMBERS, BATCH, FEATURES)).astype(np.float32) * 2
        if loss == "cross_entropy":
            targets = rng.integers(0, classes, (MEMBERS, BATCH))
        else:
            targets = rng.standard_normal((MEMBERS, BATCH, classes)).astype(np.float32)
        if step == 3:  # the learning rate of each member changes, as a schedule would change it
            for member_optimizer in alone_optimizers:
                member_optimizer.lr *= 0.5
            stacked_optimizer.lr = stacked_optimizer.lr * 0.5
        losses = []
        for p, (c, model, member_optimizer) in enumerate(zip(configs, alone, alone_optimizers)):
            regularization = c.model.regularization
            member_weights, member_grads = build.regularized_weights(model)
            terms = (regularization.l1, regularization.l2) if regularization.l1 or regularization.l2 else None
            _, member_loss = train_step(model, LOSSES[loss](), member_optimizer, x[p], targets[p], terms, member_weights, member_grads, clip)
            losses.append(member_loss)
        output = population.forward(x, training=True)
        stacked_losses = stacked_loss.forward(output, targets)
        population.backward(stacked_loss.backward(), input_grad=False)
        if l1 is not None or l2 is not None:
            stacked_penalty.add_gradient(weights, weight_grads)
        if clip:
            st.clip_global_norm([grads], clip)
        stacked_optimizer.step()
        for p in range(MEMBERS):
            assert float(stacked_losses[p]) == losses[p], (step, p)
            for name, value in alone[p].state_dict().items():
                assert same_bits(members[p].state_dict()[name], value), (step, p, name)
            for slot, value in alone_optimizers[p].state[0].items():
                assert same_bits(stacked_optimizer.state[0][slot][p], value), (step, p, slot)
    # and evaluation (batch norm's running statistics, dropout off) agrees too
    x = rng.standard_normal((MEMBERS, 50, FEATURES)).astype(np.float32)
    evaluated = population.forward(x)
    for p in range(MEMBERS):
        assert same_bits(evaluated[p], alone[p].forward(x[p]))


def test_members_that_differ_in_a_switch_cannot_share_an_optimizer():
    params, grads = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="nesterov"):
        st.stack_optimizer([{"name": "sgd", "lr": 0.1, "nesterov": True}, {"name": "sgd", "lr": 0.1, "nesterov": False}], params, grads)


def test_the_members_own_models_see_the_stacked_arrays():
    configs = [config(s, LAYERS["batchnorm"], "cross_entropy", {"name": "sgd", "lr": 0.1}, 0.0, 0.0, 2) for s in (1, 2)]
    members = [build.build_model(c, FEATURES, c.seed) for c in configs]
    before = [m.state_dict()["layers.0.weight"].copy() for m in members]
    population = Sequential(st.stack_layers(members))
    params, _ = st.population_view(population, members)
    for p, member in enumerate(members):
        assert same_bits(member.state_dict()["layers.0.weight"], before[p])
    params[1] += 1  # a change to the population is a change to member 1's own arrays, and only to its
    assert same_bits(members[0].state_dict()["layers.0.weight"], before[0])
    assert same_bits(members[1].state_dict()["layers.0.weight"], before[1] + np.float32(1))
    population.forward(np.ones((2, 4, FEATURES), np.float32), training=True)  # batch norm's running statistics
    assert not same_bits(members[0].state_dict()["layers.1.running_mean"], np.zeros(8, np.float32))
    assert isinstance(members[0].layers[0], Dense)

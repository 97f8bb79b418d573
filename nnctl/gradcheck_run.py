"""``nnctl gradcheck``: the config's model, rebuilt in float64, its backpropagated gradients compared with
finite differences (five-point stencil) on a small batch of its training data (every layer, every parameter array).

Each array passes or fails by ``nnctl.engine.gradcheck.compare_gradients``: per entry
|analytic - numeric| <= atol + rtol |numeric|,  atol = rtol * (the array's largest |numeric|) + delta,
delta = the finite differences' noise floor at the loss (or the caller's ``atol``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from nnctl import build
from nnctl.config import LoadedConfig
from nnctl.data import load_data
from nnctl.data.preprocess import fit_preprocessor
from nnctl.engine.gradcheck import RTOL, compare_gradients, noise_floor, numerical_gradient
from nnctl.engine.layers import Dropout
from nnctl.engine.regularization import add_penalty_gradient, penalty
from nnctl.errors import NnctlError
from nnctl.metrics import Head

#: entries checked per parameter array (a random sample of them when the array is larger)
MAX_ENTRIES = 40


@dataclass
class GradRow:
    name: str
    shape: tuple
    checked: int
    abs_error: float  #: max |analytic - numeric| over the checked entries
    scale: float  #: the array's gradient scale, max |numeric|
    rel_error: float  #: abs_error / scale
    atol: float  #: the absolute tolerance it was held to: rtol * scale + delta
    delta: float  #: the absolute floor: the finite-difference noise floor at the loss, or the caller's atol
    below_noise: bool  #: the gradient is zero to the resolution of finite differences (scale <= delta)
    passed: bool

    @property
    def error(self) -> float:
        """The relative error (kept for callers of the first version)."""
        return self.rel_error


def gradcheck(
    loaded: LoadedConfig, batch: int = 8, seed: int = 0, rtol: float = RTOL, atol: float | None = None, entries: int = MAX_ENTRIES
) -> list[GradRow]:
    """One row per parameter array (``entries`` of its entries, at random, checked); ``atol=None`` takes the noise floor
    of the finite differences at the loss."""
    config = loaded.config
    if config.is_classic:
        raise NnctlError(f"model type {config.model.type!r} has no gradients to check (threshold units are not trained by backpropagation)")
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    x = fit_preprocessor(config.data.normalize, data.train.x).apply(data.train.x)[:batch].astype(np.float64)
    model = build.build_model(config, data.n_features, config.seed, dtype=np.float64)
    head = Head(data.task, config.loss, build.output_units(config.model, data.n_features))
    targets = head.targets(data.train.y[:batch])
    if targets.dtype != np.int64:
        targets = targets.astype(np.float64)
    weights, weight_grads = build.regularized_weights(model)
    l1, l2 = config.model.regularization.l1, config.model.regularization.l2
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    dropout_state = [layer.rng.bit_generator.state for layer in dropouts]

    def loss() -> float:
        for layer, state in zip(dropouts, dropout_state):  # the same dropout mask at every evaluation
            layer.rng.bit_generator.state = state
        return head.loss.forward(model.forward(x, training=True), targets) + penalty(weights, l1, l2)

    # a few rows: one BLAS thread is fastest (several spin against each other on a busy machine)
    with threadpool_limits(1):
        value = loss()
        delta = noise_floor(value) if atol is None else atol
        model.backward(head.loss.backward())
        add_penalty_gradient(weights, weight_grads, l1, l2)
        analytic = {name: grad.copy() for name, _, grad in model.named_params()}
        rng = np.random.default_rng(seed)
        rows = []
        for name, param, _ in model.named_params():
            flat_indices = rng.permutation(param.size)[:entries]
            numeric = np.zeros(len(flat_indices))
            view = param.reshape(-1)
            for k, index in enumerate(flat_indices):
                numeric[k] = numerical_gradient(loss, view[index : index + 1])[0]
            c = compare_gradients(analytic[name].reshape(-1)[flat_indices], numeric, delta, rtol)
            rows.append(
                GradRow(name, param.shape, len(flat_indices), c.abs_error, c.scale, c.rel_error, c.atol, delta, c.below_noise, c.passed)
            )
    return rows

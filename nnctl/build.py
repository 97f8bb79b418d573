"""Build the engine's objects (model, loss, optimizer) from a validated config and the data's shape."""

from __future__ import annotations

import numpy as np

from nnctl.config import LoadedConfig
from nnctl.data import Dataset
from nnctl.engine import init as initializers
from nnctl.engine.activations import make_activation
from nnctl.engine.layers import Dense, Layer
from nnctl.engine.losses import LOSSES, Loss
from nnctl.engine.model import Sequential
from nnctl.engine.optim import OPTIMIZERS, Optimizer
from nnctl.seeding import generator


def check_model_fits_data(loaded: LoadedConfig, data: Dataset) -> None:
    """The last layer must give one output per class (cross-entropy; mse with one-hot targets),
    a single output (regression; mse on -1/+1 targets for two classes)."""
    config = loaded.config
    last = len(config.model.layers) - 1
    units = getattr(config.model.layers[last], "units", None)
    if units is None:
        return
    where = ("model", "layers", last, "units")
    if data.task == "regression":
        if units != 1:
            raise loaded.error(where, f"a regression model needs 1 output unit in its last layer (got {units})")
    elif config.loss == "cross_entropy" and units != data.n_classes:
        raise loaded.error(
            where, f"the data has {data.n_classes} classes, so the last layer needs units: {data.n_classes} (got {units})"
        )
    elif config.loss == "mse" and units not in (data.n_classes, 1 if data.n_classes == 2 else data.n_classes):
        allowed = f"{data.n_classes} (one-hot targets)" + (" or 1 (-1/+1 targets)" if data.n_classes == 2 else "")
        raise loaded.error(where, f"with loss mse and {data.n_classes} classes, the last layer needs units: {allowed} (got {units})")


def build_model(config, n_features: int, seed: int, dtype=np.float32) -> Sequential:
    rng = generator(seed, "init")
    layers: list[Layer] = []
    width = n_features
    for spec in config.model.layers:
        activation = make_activation(spec.activation.name, **spec.activation.params)
        gain = initializers.gain(spec.activation.name, spec.activation.params.get("slope", 0.01))
        weight, bias = initializers.init_weights(spec.init or config.model.init, width, spec.units, rng, gain, dtype)
        layers.append(Dense(weight, bias, activation))
        width = spec.units
    return Sequential(layers)


def build_loss(config) -> Loss:
    return LOSSES[config.loss]()


def build_optimizer(config, model: Sequential) -> Optimizer:
    options = config.optimizer.model_dump()
    name = options.pop("name")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    params = [p for _, p, _ in model.named_params()]
    grads = [g for _, _, g in model.named_params()]
    return OPTIMIZERS[name](params, grads, **options)

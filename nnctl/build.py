"""Build the engine's objects (model, loss, optimizer, schedule) from a validated config and the data's shape."""

from __future__ import annotations

import numpy as np

from nnctl import config as cfg
from nnctl import resources
from nnctl.config import LoadedConfig
from nnctl.data import Dataset
from nnctl.engine import init as initializers
from nnctl.engine import schedules
from nnctl.engine.activations import make_activation
from nnctl.engine.classic import Threshold
from nnctl.engine.layers import ActivationLayer, BatchNorm, Dense, Dropout, Layer, Maxout
from nnctl.engine.losses import LOSSES, Loss
from nnctl.engine.model import Sequential
from nnctl.engine.optim import OPTIMIZERS, Optimizer
from nnctl.seeding import generator


def output_units(model: cfg.ModelConfig, n_features: int) -> int:
    """The width of the network's output."""
    if isinstance(model, (cfg.McCullochPittsModel, cfg.PerceptronModel)):
        return 1
    if isinstance(model, cfg.ThresholdNetworkModel):
        return len(model.layers[-1].thresholds)
    width = n_features
    for layer in model.layers:
        width = getattr(layer, "units", width)
    return width


def check_model_fits_data(loaded: LoadedConfig, data: Dataset) -> None:
    """Checks that need the data: input widths of fixed-weight models, and the output width against the
    classes -- one output per class (cross-entropy; mse with one-hot targets), a single output
    (regression; mse on -1/+1 targets for two classes; threshold models' 0/1 output)."""
    config = loaded.config
    model = config.model
    n_in = data.n_features
    if isinstance(model, cfg.McCullochPittsModel) and len(model.weights) != n_in:
        raise loaded.error(("model", "weights"), f"{len(model.weights)} weights but the data has {n_in} inputs")
    if isinstance(model, cfg.ThresholdNetworkModel):
        width = n_in
        for i, layer in enumerate(model.layers):
            if len(layer.weights[0]) != width:
                raise loaded.error(
                    ("model", "layers", i, "weights"),
                    f"each unit needs {width} weights (one per input of this layer), got {len(layer.weights[0])}",
                )
            width = len(layer.thresholds)
    units = output_units(model, n_in)
    if config.is_classic:
        if data.n_classes != 2 or units != 1:
            where = ("model", "type") if units == 1 else ("model", "layers", len(model.layers) - 1, "thresholds")
            raise loaded.error(
                where, f"a threshold model has one 0/1 output for two classes (the data has {data.n_classes}, the model {units} outputs)"
            )
        return
    last = max(i for i, layer in enumerate(model.layers) if hasattr(layer, "units"))
    where = ("model", "layers", last, "units")
    if data.task == "regression":
        if units != 1:
            raise loaded.error(where, f"a regression model needs 1 output unit in its last layer (got {units})")
    elif config.loss == "cross_entropy" and units != data.n_classes:
        raise loaded.error(
            where, f"the data has {data.n_classes} classes, so the last layer needs units: {data.n_classes} (got {units})"
        )
    elif config.loss == "mse" and units != data.n_classes and not (units == 1 and data.n_classes == 2):
        allowed = f"{data.n_classes} (one-hot targets)" + (" or 1 (-1/+1 targets)" if data.n_classes == 2 else "")
        raise loaded.error(where, f"with loss mse and {data.n_classes} classes, the last layer needs units: {allowed} (got {units})")


def count_parameters(model: cfg.ModelConfig, n_features: int) -> int:
    """Trainable values of an MLP, from the config alone (before anything is allocated)."""
    if not isinstance(model, cfg.MLPModel):
        return 0
    total, width = 0, n_features
    for layer in model.layers:
        if isinstance(layer, cfg.DenseLayer):
            total, width = total + (width + 1) * layer.units, layer.units
        elif isinstance(layer, cfg.MaxoutLayer):
            total, width = total + (width + 1) * layer.units * layer.pieces, layer.units
        elif isinstance(layer, cfg.BatchNormLayer):
            total += 4 * width
    return total


def largest_layer_product(model: cfg.ModelConfig, n_features: int) -> int:
    """fan_in x fan_out of the widest dense or maxout layer (0 for threshold models)."""
    if not isinstance(model, cfg.MLPModel):
        return 0
    largest, width = 0, n_features
    for layer in model.layers:
        if isinstance(layer, (cfg.DenseLayer, cfg.MaxoutLayer)):
            pieces = getattr(layer, "pieces", 1)
            largest, width = max(largest, width * layer.units * pieces), layer.units
    return largest


def check_model_size(loaded: LoadedConfig, n_features: int) -> None:
    problem = resources.check_fits(
        count_parameters(loaded.config.model, n_features) * resources.BYTES_PER_PARAMETER, "training this model"
    )
    if problem:
        widest = max(
            (i for i, layer in enumerate(loaded.config.model.layers) if hasattr(layer, "units")),
            key=lambda i: loaded.config.model.layers[i].units,
        )
        raise loaded.error(("model", "layers", widest, "units"), problem)


def build_model(config: cfg.ExperimentConfig, n_features: int, seed: int, dtype=np.float32) -> Sequential:
    model = config.model
    if isinstance(model, cfg.McCullochPittsModel):
        return Sequential([Threshold(np.array(model.weights, dtype).reshape(-1, 1), np.array([model.threshold], dtype))])
    if isinstance(model, cfg.ThresholdNetworkModel):
        return Sequential(
            [Threshold(np.array(layer.weights, dtype).T.copy(), np.array(layer.thresholds, dtype)) for layer in model.layers]
        )
    if isinstance(model, cfg.PerceptronModel):
        # Rosenblatt's perceptron starts from zero weights and threshold
        return Sequential([Threshold(np.zeros((n_features, 1), dtype), np.zeros(1, dtype))])
    return Sequential(build_layers(model, n_features, seed, dtype))


def build_layers(model: cfg.MLPModel, n_features: int, seed: int, dtype) -> list[Layer]:
    init_rng = generator(seed, "init")
    dropout_rng = generator(seed, "dropout")
    layers: list[Layer] = []
    width = n_features
    for spec in model.layers:
        if isinstance(spec, cfg.DenseLayer):
            activation = spec.activation
            gain = initializers.gain(activation.name, activation.params.get("slope", 0.01))
            weight, bias = initializers.init_weights(spec.init or model.init, width, spec.units, init_rng, gain, dtype)
            layers.append(Dense(weight, bias, make_activation(activation.name, **activation.params)))
            width = spec.units
        elif isinstance(spec, cfg.MaxoutLayer):
            weight, bias = initializers.init_weights(spec.init or model.init, width, spec.units * spec.pieces, init_rng, 1.0, dtype)
            layers.append(Maxout(weight, bias, spec.pieces))
            width = spec.units
        elif isinstance(spec, cfg.DropoutLayer):
            layers.append(Dropout(spec.rate, dropout_rng))
        elif isinstance(spec, cfg.BatchNormLayer):
            layers.append(BatchNorm(width, spec.momentum, spec.eps, dtype))
        elif isinstance(spec, cfg.ActivationLayer):
            layers.append(ActivationLayer(make_activation(spec.name, **spec.params)))
        else:  # pragma: no cover - the config's union lists every layer type
            raise TypeError(type(spec))
    return layers


def regularized_weights(model: Sequential) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weight matrices (not biases, not batch-norm parameters) and their gradients."""
    layers = [layer for layer in model.layers if isinstance(layer, (Dense, Maxout))]
    return [layer.params["weight"] for layer in layers], [layer.grads["weight"] for layer in layers]


def build_loss(config: cfg.ExperimentConfig) -> Loss:
    return LOSSES[config.loss]()


def build_optimizer(config: cfg.ExperimentConfig, params: list[np.ndarray], grads: list[np.ndarray]) -> Optimizer:
    options = config.optimizer.model_dump()
    name = options.pop("name")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return OPTIMIZERS[name](params, grads, **options)


def build_schedule(config: cfg.ExperimentConfig) -> schedules.Schedule:
    spec = config.training.lr_schedule
    lr = config.optimizer.lr
    if isinstance(spec, cfg.StepLR):
        return schedules.Step(lr, spec.step_size, spec.gamma)
    if isinstance(spec, cfg.ExponentialLR):
        return schedules.Exponential(lr, spec.gamma)
    if isinstance(spec, cfg.CosineLR):
        return schedules.Cosine(lr, spec.period or config.training.epochs, spec.min_lr)
    if isinstance(spec, cfg.ReduceOnPlateau):
        return schedules.ReduceOnPlateau(
            lr, spec.factor, spec.patience, spec.threshold, spec.cooldown, spec.min_lr, cfg.monitor_mode(spec.monitor)
        )
    return schedules.Constant(lr)

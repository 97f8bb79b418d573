"""The Playground's controls, and the nnctl experiment config they stand for.

``PlaygroundOptions`` is what both front ends change (the terminal's flags and keys, the web page's controls
and URL hash); ``to_config_dict`` turns it into the config that ``nnctl train`` would train, and
``options_from_config`` reads a config back (the web page's Import), refusing what the page cannot show.

Two losses:

- ``cross_entropy`` (the terminal's default): one logit per class and softmax cross-entropy; regression uses
  nnctl's ``mse``. The learning rate and the regularization rate are nnctl's ``optimizer.lr`` and
  ``l1``/``l2`` as they are.
- ``squared`` (the web page's default, the TensorFlow Playground's model): one ``tanh`` output for
  classification (targets -1/+1), a linear one for regression, and the loss 1/2 (o - t)^2 averaged over the
  batch, with the penalty ``rate * R(w)``, R = sum |w| (L1) or 1/2 sum w^2 (L2).  nnctl's ``mse`` is
  (o - t)^2, twice that, so the config gets ``l1 = 2 rate``, ``l2 = rate`` (the whole objective doubled) and,
  for SGD, whose steps scale with the gradient, ``lr / 2``: then every SGD step is the Playground's step.
  Adaptive optimizers (adam, rmsprop, adagrad) divide the gradient's scale away and keep ``lr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nnctl.config import (
    PLAYGROUND_CLASSIFICATION,
    PLAYGROUND_REGRESSION,
    ExperimentConfig,
    LoadedConfig,
    validate_config,
)
from nnctl.errors import NnctlError
from nnctl.yamlio import Locations

DATASETS = PLAYGROUND_CLASSIFICATION + PLAYGROUND_REGRESSION
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")
ACTIVATION_ALIASES = {"linear": "identity"}
#: the Playground's learning rates; + and - (and the page's select) move along this ladder
LR_LADDER = (0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
#: the Playground's regularization rates
RATE_LADDER = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
REGULARIZATIONS = ("none", "l1", "l2")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
LOSSES = ("squared", "cross_entropy")
INITS = ("uniform", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "torch", "zeros")
SCHEDULES = ("constant", "step", "exponential", "cosine")
#: a live playground stays responsive: at most this many hidden layers of this many units
MAX_LAYERS, MAX_UNITS = 10, 256
#: the cosine schedule's period when none is given
DEFAULT_PERIOD = 1000


@dataclass
class CsvUpload:
    """An uploaded CSV file: where the server keeps it, the name the user gave it, its target column."""

    path: Path
    name: str
    target: str
    classes: int  # the number of classes in the target column (0 for regression)


@dataclass
class PlaygroundOptions:
    """The Playground's controls; ``to_config_dict`` turns them into an nnctl experiment config."""

    dataset: str = "spiral"
    noise: float = 0.0
    layers: list[int] = field(default_factory=lambda: [8, 8])
    activation: str = "tanh"
    lr: float = 0.03
    batch_size: int = 10
    features: list[str] = field(default_factory=lambda: ["x1", "x2"])
    regularization: str = "none"
    rate: float = 0.0
    seed: int = 0
    momentum: float = 0.0
    epochs: int | None = None  # training.epochs of the saved config; None: the epochs trained so far
    # the web page's extras (the terminal keeps the defaults)
    loss: str = "cross_entropy"
    init: str = "xavier_uniform"
    optimizer: str = "sgd"
    nesterov: bool = False
    activations: list[str] | None = None  # per hidden layer; None: ``activation`` everywhere
    dropout: list[float] | None = None  # per hidden layer, the probability of dropping a unit
    batchnorm: list[bool] | None = None  # per hidden layer
    schedule: str = "constant"
    period: int | None = None  # the cosine schedule's period in epochs
    test_fraction: float = 0.5
    problem: str | None = None  # classification | regression; None: the dataset's
    csv: CsvUpload | None = None  # when set, the data is this file and ``dataset``/``features`` are not used

    @property
    def is_regression(self) -> bool:
        if self.csv is not None:
            return self.problem == "regression"
        return self.dataset in PLAYGROUND_REGRESSION

    def layer_activation(self, index: int) -> str:
        name = self.activations[index] if self.activations and index < len(self.activations) else self.activation
        return ACTIVATION_ALIASES.get(name, name)

    def layer_dropout(self, index: int) -> float:
        return self.dropout[index] if self.dropout and index < len(self.dropout) else 0.0

    def layer_batchnorm(self, index: int) -> bool:
        return bool(self.batchnorm[index]) if self.batchnorm and index < len(self.batchnorm) else False

    @property
    def objective_scale(self) -> float:
        """nnctl's objective over the Playground's: 2 with the Playground's squared error, else 1."""
        return 2.0 if self.loss == "squared" else 1.0

    def config_lr(self) -> float:
        return self.lr / self.objective_scale if self.optimizer == "sgd" else self.lr

    def penalty(self) -> dict[str, float]:
        l1 = l2 = 0.0
        if self.regularization == "l1":
            l1 = self.rate * self.objective_scale
        elif self.regularization == "l2":  # the Playground's L2 is 1/2 sum w^2 (doubled with its loss), nnctl's sum w^2
            l2 = self.rate
        return {"l1": l1, "l2": l2}

    def hidden_layers(self) -> list[dict]:
        """Each hidden layer as nnctl layers: dense, then batch norm and the activation, then dropout."""
        layers = []
        for i, units in enumerate(self.layers):
            activation = self.layer_activation(i)
            if self.layer_batchnorm(i):
                layers += [{"type": "dense", "units": units}, {"type": "batchnorm"}, {"type": "activation", "name": activation}]
            else:
                layers.append({"type": "dense", "units": units, "activation": activation})
            if self.layer_dropout(i) > 0:
                layers.append({"type": "dropout", "rate": self.layer_dropout(i)})
        return layers

    def output_layer(self) -> dict:
        if self.is_regression:
            return {"type": "dense", "units": 1}
        if self.loss == "squared":
            return {"type": "dense", "units": 1, "activation": "tanh"}
        return {"type": "dense", "units": 2 if self.csv is None else self.csv.classes}

    def data_section(self) -> dict:
        if self.csv is not None:
            return {
                "dataset": "csv", "path": str(self.csv.path), "target": self.csv.target, "test_fraction": self.test_fraction,
                "normalize": "standard", "task": "regression" if self.is_regression else "classification",
            }  # fmt: skip
        return {"dataset": self.dataset, "noise": self.noise, "features": list(self.features), "test_fraction": self.test_fraction}

    def schedule_section(self) -> dict:
        if self.schedule == "cosine":
            return {"type": "cosine", "period": self.period or DEFAULT_PERIOD}
        return {"type": self.schedule}

    def optimizer_section(self) -> dict:
        section = {"name": self.optimizer, "lr": self.config_lr()}
        if self.optimizer in ("sgd", "rmsprop"):
            section["momentum"] = self.momentum
        if self.optimizer == "sgd" and self.nesterov and self.momentum > 0:
            section["nesterov"] = True
        return section

    def to_config_dict(self, epochs: int = 100) -> dict:
        name = f"playground-{self.dataset if self.csv is None else Path(self.csv.name).stem[:40]}"
        config = {
            "name": name,
            "seed": self.seed,
            "data": self.data_section(),
            "model": {
                "type": "mlp", "init": self.init, "layers": [*self.hidden_layers(), self.output_layer()],
                "regularization": self.penalty(),
            },  # fmt: skip
            "loss": "mse" if self.is_regression or self.loss == "squared" else "cross_entropy",
            "optimizer": self.optimizer_section(),
            "training": {"epochs": self.epochs or epochs, "batch_size": self.batch_size, "threads": 1},
        }
        if self.schedule != "constant":
            config["training"]["lr_schedule"] = self.schedule_section()
        return config


def validate_options(options: PlaygroundOptions, epochs: int = 100) -> LoadedConfig:
    """The options as a validated nnctl config (the same checks as a YAML file gets)."""
    return validate_config(options.to_config_dict(epochs), Locations("playground options"))


# ------------------------------------------------------------------------------------ a config read back


def options_from_config(config: ExperimentConfig) -> PlaygroundOptions:
    """The options that give ``config`` (the web page's Import); a config the page cannot show is refused
    with what does not fit.  ``to_config_dict`` of the result validates to the same model and training."""

    def refuse(what: str) -> NnctlError:
        return NnctlError(f"this config does not fit the playground page: {what}")

    data, model, optimizer = config.data, config.model, config.optimizer
    if data.dataset not in DATASETS:
        raise refuse(f"data.dataset {data.dataset!r}; the page trains {', '.join(DATASETS)} or an uploaded CSV")
    if getattr(model, "type", None) != "mlp":
        raise refuse(f"model.type {model.type!r}; the page trains an mlp")
    if optimizer.name not in OPTIMIZERS:
        raise refuse(f"optimizer {optimizer.name!r}; the page offers {', '.join(OPTIMIZERS)}")
    if getattr(optimizer, "weight_decay", 0.0):
        raise refuse("optimizer.weight_decay; the page offers L1 or L2 regularization")
    if data.normalize != "none" or data.augment.noise_std or data.augment.for_images:
        raise refuse("data.normalize or data.augment, which the page does not set")
    if getattr(data, "val_fraction", 0.0):
        raise refuse("data.val_fraction; the page splits into training and test data only")
    training = config.training
    if training.early_stopping or training.select_best or training.grad_clip or not training.shuffle:
        raise refuse("training.early_stopping, select_best, grad_clip or shuffle: false, which the page does not set")
    schedule = training.lr_schedule
    if schedule.type not in SCHEDULES:
        raise refuse(f"training.lr_schedule {schedule.type!r}; the page offers {', '.join(SCHEDULES)}")
    if schedule.type == "step" and (schedule.step_size, schedule.gamma) != (30, 0.1) or (
        schedule.type == "exponential" and schedule.gamma != 0.99
    ) or (schedule.type == "cosine" and schedule.min_lr):
        raise refuse("the schedule's parameters; the page uses the schedules' defaults")
    layers, hidden = list(model.layers), []
    output = layers.pop()
    if output.type != "dense" or any(getattr(layer, "init", None) for layer in model.layers):
        raise refuse("the last layer must be dense, and no layer may set its own init")
    while layers:
        dense = layers.pop(0)
        if dense.type != "dense":
            raise refuse(f"a {dense.type} layer where a hidden dense layer should start")
        block = {"units": dense.units, "activation": dense.activation.name, "batchnorm": False, "dropout": 0.0}
        if dense.activation.params:
            raise refuse("activation parameters (slope, alpha); the page uses their defaults")
        if layers and layers[0].type == "batchnorm" and dense.activation.name == "identity":
            bn = layers.pop(0)
            if (bn.momentum, bn.eps) != (0.1, 1e-5) or not layers or layers[0].type != "activation" or layers[0].params:
                raise refuse("batch norm must be followed by an activation layer, with its default momentum and eps")
            block.update(batchnorm=True, activation=layers.pop(0).name)
        if layers and layers[0].type == "dropout":
            block["dropout"] = layers.pop(0).rate
        hidden.append(block)
    if len(hidden) > MAX_LAYERS or any(block["units"] > MAX_UNITS for block in hidden):
        raise refuse(f"at most {MAX_LAYERS} hidden layers of {MAX_UNITS} units")
    # mse on a Playground dataset is the page's squared error (its learning rate is twice the config's)
    squared = config.loss == "mse"
    if data.dataset in PLAYGROUND_CLASSIFICATION:
        if config.loss == "mse" and (output.units, output.activation.name) != (1, "tanh"):
            raise refuse(
                f"with loss mse the page's output is one tanh unit (the Playground's), not {output.units} {output.activation.name} units"
            )
        if config.loss == "cross_entropy" and output.activation.name != "identity":
            raise refuse("with cross_entropy the output layer has no activation (logits)")
    elif output.activation.name != "identity" or config.loss != "mse":
        raise refuse("a regression output is one linear unit with loss mse")
    activations = [block["activation"] for block in hidden]
    options = PlaygroundOptions(
        dataset=data.dataset,
        noise=data.noise,
        layers=[block["units"] for block in hidden],
        activation=activations[0] if activations else "tanh",
        activations=activations if len(set(activations)) > 1 else None,
        dropout=[block["dropout"] for block in hidden] if any(block["dropout"] for block in hidden) else None,
        batchnorm=[block["batchnorm"] for block in hidden] if any(block["batchnorm"] for block in hidden) else None,
        batch_size=training.batch_size,
        features=list(data.features),
        seed=config.seed,
        loss="squared" if squared else "cross_entropy",
        init=model.init,
        optimizer=optimizer.name,
        momentum=getattr(optimizer, "momentum", 0.0) if optimizer.name in ("sgd", "rmsprop") else 0.0,
        nesterov=getattr(optimizer, "nesterov", False),
        schedule=schedule.type,
        period=getattr(schedule, "period", None),
        test_fraction=data.test_fraction,
    )
    options.lr = optimizer.lr * (options.objective_scale if optimizer.name == "sgd" else 1.0)
    l1, l2 = model.regularization.l1, model.regularization.l2
    if l1 and l2:
        raise refuse("both l1 and l2; the page has one penalty at a time")
    if l1 or l2:
        options.regularization = "l1" if l1 else "l2"
        options.rate = l1 / options.objective_scale if l1 else l2
    return options

"""The experiment config: its schema (pydantic), defaults, and errors that point into the YAML file.

``load_config("configs/spiral.yaml", overrides=["optimizer.lr=0.1"])`` returns a ``LoadedConfig``:
the validated ``ExperimentConfig`` plus where each key came from, so that later checks (for example
the last layer's size against the data's number of classes) can also name the file, line and column.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
    Field,
    GetPydanticSchema,
    PositiveInt,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nnctl.errors import ConfigError
from nnctl.yamlio import KeyPath, Locations, apply_override, parse_yaml, read_yaml

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # pydantic's own admits infinity
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


def did_you_mean(word: Any, options: list[str]) -> str:
    near = difflib.get_close_matches(str(word), options, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


class Strict(BaseModel):
    """A config section: unknown keys are errors that list the allowed keys."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            unknown = [key for key in data if key not in allowed]
            if unknown:
                key = unknown[0]
                hint = did_you_mean(key, allowed)
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key '{key}'{hint}; allowed: {allowed}",
                    {"key": key, "hint": hint, "allowed": ", ".join(allowed)},
                )
        return data


# ----------------------------------------------------------------------------------------------- data

PLAYGROUND_CLASSIFICATION = ("circle", "xor", "gauss", "spiral")
PLAYGROUND_REGRESSION = ("reg-plane", "reg-gauss")
FEATURES = ("x1", "x2", "x1_sq", "x2_sq", "x1_x2", "sin_x1", "sin_x2")
LOGIC_FUNCTIONS = ("and", "or", "nand", "nor", "xor", "not")
FUNCTIONS = ("sin", "cos", "abs", "step", "square", "cube", "sinc", "gauss", "sawtooth")


class Augment(Strict):
    """Training-time augmentation (slide 13), drawn from the run's seeded generator, training batches only.
    ``noise_std`` applies to any data; the others to images (mnist, fashion-mnist, digits, image npz)."""

    noise_std: NonNegativeFloat = Field(0.0, description="std of Gaussian noise added to the (normalized) inputs")
    shift: Annotated[int, Field(ge=0)] = Field(0, description="images: random shift by up to this many pixels")
    rotate: Annotated[float, Field(ge=0, le=180)] = Field(0.0, description="images: random rotation by up to this many degrees")
    flip: bool = Field(False, description="images: mirror left-right with probability 1/2")
    cutout: Annotated[int, Field(ge=0)] = Field(0, description="images: blank a random square of this side")

    @property
    def for_images(self) -> bool:
        return bool(self.shift or self.rotate or self.flip or self.cutout)


class DataCommon(Strict):
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = Field(None, description="seed of data generation and split; default: the run's seed")
    normalize: Literal["none", "standard", "minmax", "pca_whiten"] = Field(
        "none", description="input normalization, fitted on the training split only, stored in the checkpoint (slide 8)"
    )
    augment: Augment = Field(
        Augment(), description="training batches only: noise_std for any data; shift, rotate, flip, cutout for images"
    )


class SplitFractions(Strict):
    test_fraction: Fraction = Field(0.5, description="fraction of all samples held out as the test set")
    val_fraction: Fraction = Field(0.0, description="fraction of all samples held out for validation, carved out of the training part")

    @model_validator(mode="after")
    def _leave_training_rows(self):
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"test_fraction + val_fraction must be below 1 to leave training data "
                f"(got {self.test_fraction} + {self.val_fraction})"
            )
        return self


class PlaygroundData(DataCommon, SplitFractions):
    """The TensorFlow Playground's six datasets (shared/reference/playground.md)."""

    dataset: Literal["circle", "xor", "gauss", "spiral", "reg-plane", "reg-gauss"] = Field(
        description="the Playground's six: circle, xor, gauss, spiral (classes 0/1); reg-plane, reg-gauss (regression)"
    )
    samples: PositiveInt | None = Field(None, description="number of points; default: 500 for classification, 1200 for regression")
    noise: Annotated[float, Field(ge=0, le=0.5)] = Field(0.0, description="the Playground's noise, 0 to 0.5")
    features: Annotated[list[Literal[FEATURES]], Field(min_length=1)] = Field(  # type: ignore[valid-type]
        ["x1", "x2"], description="the inputs computed from each point (x1, x2), each at most once"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.samples is None:
            self.samples = 1200 if self.dataset in PLAYGROUND_REGRESSION else 500
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: each feature may appear once")
        return self

    @property
    def is_regression(self) -> bool:
        return self.dataset in PLAYGROUND_REGRESSION


class LogicData(DataCommon):
    """Every row of a truth table (inputs 0/1).  The table is both the training and the test set."""

    dataset: Literal["logic"] = Field(description="every row of a truth table, both the training and the test set")
    function: Literal[LOGIC_FUNCTIONS] = Field(description="the truth table; xor of more than 2 inputs is parity")  # type: ignore[valid-type]
    inputs: Annotated[int, Field(ge=1, le=16)] | None = Field(None, description="number of inputs; default 2 (1 for not)")
    repeat: PositiveInt = Field(1, description="copies of the table in the training set")

    @model_validator(mode="after")
    def _check(self):
        if self.inputs is None:
            self.inputs = 1 if self.function == "not" else 2
        if self.function == "not" and self.inputs != 1:
            raise ValueError("not takes exactly 1 input")
        if self.function != "not" and self.inputs < 2:
            raise ValueError(f"{self.function} needs at least 2 inputs")
        return self

    is_regression: ClassVar[bool] = False


class FunctionData(DataCommon, SplitFractions):
    """Samples of a fixed 1-D function y = f(x), x ~ U(range) (slide 6, universal approximation)."""

    dataset: Literal["function"] = Field(description="samples of a 1-D function y = f(x), for regression")
    fn: Literal[FUNCTIONS] = Field(description="the function, from a fixed menu (no user code is evaluated)")  # type: ignore[valid-type]
    range: tuple[Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)], Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]] = Field(
        (-3.14159, 3.14159), description="[low, high]: x is drawn uniformly from this interval"
    )
    samples: PositiveInt = Field(256, description="number of samples")
    noise: NonNegativeFloat = Field(0.0, description="std of Gaussian noise added to the targets")
    test_fraction: Fraction = Field(0.25, description="fraction of all samples held out as the test set")

    @model_validator(mode="after")
    def _check(self):
        if not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high (got {list(self.range)})")
        return self

    is_regression: ClassVar[bool] = True


TaskName = Literal["auto", "classification", "regression"]


class CsvData(DataCommon, SplitFractions):
    """A CSV file with a header row: numeric feature columns and a target column (class names or numbers)."""

    dataset: Literal["csv"] = Field(description="a CSV file with a header row")
    path: str = Field(description="the CSV file, relative to the config file")
    target: str = Field(description="the target column: class names, or numbers for regression")
    columns: Annotated[list[str], Field(min_length=1)] | None = Field(None, description="the feature columns; default: every column but the target")
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = Field(",", description="the column separator, one character")
    test_path: str | None = Field(None, description="a separate test file; then test_fraction is not used")
    task: TaskName = Field("auto", description="auto: regression with loss mse, else classification")

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"


class NpzData(DataCommon, SplitFractions):
    """NumPy arrays in an .npz file: features ``x`` (rows, features) or images (rows, height, width), targets ``y``."""

    dataset: Literal["npz"] = Field(description="NumPy arrays in an .npz file, read without unpickling")
    path: str | None = Field(None, description="one file to split, relative to the config file; or train_path (+ test_path)")
    train_path: str | None = Field(None, description="the training file of an existing split, relative to the config file")
    test_path: str | None = Field(None, description="the test file of an existing split (with train_path)")
    x: str = Field("x", description="the features array: (rows, features) or images (rows, height, width)")
    y: str = Field("y", description="the targets array")
    task: TaskName = Field("auto", description="auto: regression with loss mse, else classification")

    @model_validator(mode="after")
    def _check(self):
        if (self.path is None) == (self.train_path is None):
            raise ValueError("give either path (one file, split by the fractions) or train_path (and test_path)")
        if self.test_path is not None and self.train_path is None:
            raise ValueError("test_path goes with train_path")
        return self

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"


class ImageData(DataCommon):
    """MNIST or Fashion-MNIST from the four standard IDX files; the standard 60 000 / 10 000 split is kept."""

    dataset: Literal["mnist", "fashion-mnist"] = Field(description="MNIST or Fashion-MNIST (download with nnctl data fetch)")
    path: str | None = Field(None, description="folder of the IDX files; default: the cache of `nnctl data fetch`")
    val_fraction: Fraction = Field(0.0, description="fraction of the training images held out for validation")
    train_samples: PositiveInt | None = Field(None, description="use only this many training images (a seeded sample)")
    test_samples: PositiveInt | None = Field(None, description="use only the first this many test images")

    is_regression: ClassVar[bool] = False


class DigitsData(DataCommon, SplitFractions):
    """The UCI optical-recognition handwritten digits: 1 797 images of 8x8 pixels, 10 classes, shipped with nnctl."""

    dataset: Literal["digits"] = Field(description="the UCI handwritten digits shipped with nnctl: 8x8 images, 10 classes")
    test_fraction: Fraction = Field(0.25, description="fraction of all samples held out as the test set")

    is_regression: ClassVar[bool] = False


DataConfig = Annotated[
    Union[PlaygroundData, LogicData, FunctionData, CsvData, NpzData, ImageData, DigitsData],
    Field(discriminator="dataset"),
]
PATH_KEYS = ("path", "train_path", "test_path")



# ---------------------------------------------------------------------------------------------- model

ActivationName = Literal["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "heaviside"]
InitName = Literal["xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "uniform", "torch", "zeros"]


class ActivationParams(Strict):
    name: ActivationName = Field(
        description="the activation function; heaviside is a step, for threshold units (its derivative is zero)"
    )
    slope: PositiveFloat | None = Field(None, description="leaky_relu only; default 0.1 (the lecture's slide)")
    alpha: PositiveFloat | None = Field(None, description="elu only; default 1.0")

    @model_validator(mode="after")
    def _defaults(self):
        if self.slope is not None and self.name != "leaky_relu":
            raise ValueError(f"'slope' is a parameter of leaky_relu, not of {self.name}")
        if self.alpha is not None and self.name != "elu":
            raise ValueError(f"'alpha' is a parameter of elu, not of {self.name}")
        if self.name == "leaky_relu" and self.slope is None:
            self.slope = 0.1
        if self.name == "elu" and self.alpha is None:
            self.alpha = 1.0
        return self

    @property
    def params(self) -> dict[str, float]:
        return {k: v for k in ("slope", "alpha") if (v := getattr(self, k)) is not None}


class ActivationConfig(ActivationParams):
    """``relu``, or with a parameter: ``{name: leaky_relu, slope: 0.2}``, ``{name: elu, alpha: 0.5}``."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_serializer
    def _dump(self):
        return {"name": self.name, **self.params} if self.params else self.name

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler) -> dict:
        """The JSON Schema (``nnctl schema``) of what ``_from_name`` accepts: a bare name, or the mapping."""
        return {"anyOf": [{"type": "string", "enum": list(get_args(ActivationName))}, handler(core_schema)]}


class DenseLayer(Strict):
    """y = f(x W + b)."""

    type: Literal["dense"] = Field(description="dense: a fully connected layer, y = f(x W + b)")
    units: PositiveInt = Field(description="number of outputs")
    activation: ActivationConfig = Field(
        ActivationConfig(name="identity"), description="f: a name (relu) or a name with a parameter ({name: leaky_relu, slope: 0.2})"
    )
    init: InitName | None = Field(None, description="overrides model.init for this layer")


class MaxoutLayer(Strict):
    """y_j = max_k (x W_k + b_k)_j over k pieces (slide 5)."""

    type: Literal["maxout"] = Field(description="maxout: y = max over k pieces of x W_k + b_k")
    units: PositiveInt = Field(description="number of outputs")
    pieces: Annotated[int, Field(ge=2)] = Field(2, description="number of linear pieces k")
    init: InitName | None = Field(None, description="overrides model.init for this layer")


class DropoutLayer(Strict):
    """Inverted dropout (slide 11); ``rate`` is the probability of dropping a unit."""

    type: Literal["dropout"] = Field(
        description="dropout: drops units at random and scales the rest by 1/(1 - rate) in training; identity in evaluation"
    )
    rate: Annotated[float, Field(ge=0, lt=1)] = Field(0.5, description="probability of dropping a unit")


class BatchNormLayer(Strict):
    """Batch normalization (slide 12) with PyTorch's running-statistics update."""

    type: Literal["batchnorm"] = Field(description="batchnorm: batch statistics in training, running statistics in evaluation")
    momentum: Annotated[float, Field(gt=0, le=1)] = Field(0.1, description="weight of each batch in the running statistics")
    eps: PositiveFloat = Field(1e-5, description="added to the variance before the square root")


class ActivationLayer(ActivationParams):
    """An activation as a layer of its own, e.g. after batch norm: ``{type: activation, name: relu}``."""

    type: Literal["activation"] = Field(description="activation: an activation function as a layer of its own")


LayerConfig = Annotated[
    Union[DenseLayer, MaxoutLayer, DropoutLayer, BatchNormLayer, ActivationLayer], Field(discriminator="type")
]


class Regularization(Strict):
    """Penalties on the weights (not the biases) added to the training loss: l1 sum|w| + l2 sum w^2."""

    l1: NonNegativeFloat = Field(0.0, description="rate of the penalty l1 sum|w|")
    l2: NonNegativeFloat = Field(0.0, description="rate of the penalty l2 sum w^2")


class MLPModel(Strict):
    """A multilayer network trained by backpropagation (slide 6)."""

    type: Literal["mlp"] = Field("mlp", description="mlp: a network trained by backpropagation")
    init: InitName = Field(
        "xavier_uniform", description="every layer's initialisation; uniform: the Playground's U(-0.5, 0.5); torch: nn.Linear's default"
    )
    layers: Annotated[list[LayerConfig], Field(min_length=1)] = Field(description="the layers, from the inputs to the outputs")
    regularization: Regularization = Field(
        Regularization(), description="penalties on the weight matrices (not the biases) added to the training loss"
    )

    @model_validator(mode="after")
    def _check(self):
        if not isinstance(self.layers[-1], (DenseLayer, MaxoutLayer)) and not any(
            isinstance(layer, (DenseLayer, MaxoutLayer)) for layer in self.layers
        ):
            raise ValueError("the model needs at least one dense or maxout layer")
        return self


class McCullochPittsModel(Strict):
    """One threshold unit with fixed weights (slide 2): y = H(w.x - threshold)."""

    type: Literal["mcculloch_pitts"] = Field(description="mcculloch_pitts: one threshold unit with fixed weights")
    weights: Annotated[list[FiniteFloat], Field(min_length=1)] = Field(description="one weight per input")
    threshold: FiniteFloat = Field(description="the unit outputs 1 when w.x reaches it")


class ThresholdLayerSpec(Strict):
    """A layer of McCulloch-Pitts units: ``weights`` has one row per unit (its input weights)."""

    weights: Annotated[list[Annotated[list[FiniteFloat], Field(min_length=1)]], Field(min_length=1)] = Field(
        description="one row per unit: its input weights"
    )
    thresholds: Annotated[list[FiniteFloat], Field(min_length=1)] = Field(description="one threshold per unit")

    @model_validator(mode="after")
    def _check(self):
        if len({len(row) for row in self.weights}) != 1:
            raise ValueError("every row of weights (one row per unit) needs the same number of input weights")
        if len(self.thresholds) != len(self.weights):
            raise ValueError(f"{len(self.weights)} units (rows of weights) but {len(self.thresholds)} thresholds")
        return self


class ThresholdNetworkModel(Strict):
    """Layers of McCulloch-Pitts units, e.g. XOR = AND(OR, NAND)."""

    type: Literal["threshold_network"] = Field(description="threshold_network: layers of McCulloch-Pitts units")
    layers: Annotated[list[ThresholdLayerSpec], Field(min_length=1)] = Field(description="the layers, from the inputs to the output")


class PerceptronModel(Strict):
    """Rosenblatt's perceptron (slide 4): one threshold unit trained by the perceptron rule."""

    type: Literal["perceptron"] = Field(description="perceptron: trained by optimizer {name: perceptron}")


def _model_type(data: Any) -> str:
    if isinstance(data, dict):
        return data.get("type", "mlp")
    return getattr(data, "type", "mlp")


ModelConfig = Annotated[
    Union[
        Annotated[MLPModel, Tag("mlp")],
        Annotated[McCullochPittsModel, Tag("mcculloch_pitts")],
        Annotated[ThresholdNetworkModel, Tag("threshold_network")],
        Annotated[PerceptronModel, Tag("perceptron")],
    ],
    Discriminator(_model_type),
]

CLASSIC_MODELS = (McCullochPittsModel, ThresholdNetworkModel, PerceptronModel)


# ------------------------------------------------------------------------------------------ optimizer


class SGDConfig(Strict):
    """Slide 10: v <- momentum v + grad; w <- w - lr v."""

    name: Literal["sgd"] = Field(description="sgd: stochastic gradient descent, with momentum")
    lr: PositiveFloat = Field(0.01, description="learning rate")
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="momentum rho of v <- rho v + grad")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")
    weight_decay: NonNegativeFloat = Field(0.0, description="adds weight_decay w to the gradient")

    @model_validator(mode="after")
    def _check(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class AdamConfig(Strict):
    """Adam (Kingma & Ba 2015), and AdamW with decoupled weight decay (Loshchilov & Hutter 2019)."""

    name: Literal["adam", "adamw"] = Field(description="adam, or adamw: Adam with decoupled weight decay")
    lr: PositiveFloat = Field(0.001, description="learning rate")
    betas: tuple[Fraction, Fraction] = Field((0.9, 0.999), description="decay rates of the gradient's first and second moment averages")
    eps: PositiveFloat = Field(1e-8, description="added to the denominator")
    weight_decay: NonNegativeFloat = Field(0.0, description="adam: adds weight_decay w to the gradient; adamw: decoupled")


class RMSPropConfig(Strict):
    """RMSProp: v <- alpha v + (1 - alpha) grad^2; w <- w - lr grad / (sqrt(v) + eps)."""

    name: Literal["rmsprop"] = Field(description="rmsprop: steps scaled by a moving average of squared gradients")
    lr: PositiveFloat = Field(0.01, description="learning rate")
    alpha: Fraction = Field(0.99, description="decay rate of the squared-gradient average")
    eps: PositiveFloat = Field(1e-8, description="added to the denominator")
    momentum: Fraction = Field(0.0, description="momentum of the scaled steps")
    weight_decay: NonNegativeFloat = Field(0.0, description="adds weight_decay w to the gradient")


class AdaGradConfig(Strict):
    """AdaGrad: s <- s + grad^2; w <- w - lr_t grad / (sqrt(s) + eps), lr_t = lr / (1 + (t - 1) lr_decay)."""

    name: Literal["adagrad"] = Field(description="adagrad: steps scaled by the sum of squared gradients")
    lr: PositiveFloat = Field(0.01, description="learning rate")
    lr_decay: NonNegativeFloat = Field(0.0, description="step t uses lr / (1 + (t - 1) lr_decay)")
    eps: PositiveFloat = Field(1e-10, description="added to the denominator")
    weight_decay: NonNegativeFloat = Field(0.0, description="adds weight_decay w to the gradient")


class PerceptronRuleConfig(Strict):
    """Rosenblatt's rule for ``model: {type: perceptron}``: w += lr (t - y) x."""

    name: Literal["perceptron"] = Field(description="perceptron: Rosenblatt's rule, for model {type: perceptron}")
    lr: PositiveFloat = Field(1.0, description="learning rate")


OptimizerConfig = Annotated[
    Union[SGDConfig, AdamConfig, RMSPropConfig, AdaGradConfig, PerceptronRuleConfig], Field(discriminator="name")
]


# ------------------------------------------------------------------------------------------- training


class ConstantLR(Strict):
    """The optimizer's lr, unchanged."""

    type: Literal["constant"] = Field(description="constant: the optimizer's lr throughout")


class StepLR(Strict):
    """lr = lr0 * gamma^floor((epoch - 1) / step_size)."""

    type: Literal["step"] = Field(description="step: multiply the lr by gamma every step_size epochs")
    step_size: PositiveInt = Field(30, description="epochs between two multiplications")
    gamma: PositiveFloat = Field(0.1, description="multiply the lr by this")


class ExponentialLR(Strict):
    """lr = lr0 * gamma^(epoch - 1)."""

    type: Literal["exponential"] = Field(description="exponential: multiply the lr by gamma every epoch")
    gamma: PositiveFloat = Field(0.99, description="multiply the lr by this")


class CosineLR(Strict):
    """lr = min_lr + (lr0 - min_lr) (1 + cos(pi (epoch - 1) / period)) / 2; period defaults to the epochs."""

    type: Literal["cosine"] = Field(description="cosine: from the lr down to min_lr along a half cosine")
    min_lr: NonNegativeFloat = Field(0.0, description="the lr at the end of the period")
    period: PositiveInt | None = Field(None, description="epochs of the half cosine; default: training.epochs")


class ReduceOnPlateau(Strict):
    """lr *= factor when ``monitor`` has not improved for ``patience`` epochs (PyTorch's ReduceLROnPlateau)."""

    type: Literal["reduce_on_plateau"] = Field(description="reduce_on_plateau: multiply the lr by factor when monitor stops improving")
    monitor: str = Field("val_loss", description="a per-epoch metric, e.g. val_loss, val_accuracy, train_loss")
    factor: Annotated[float, Field(gt=0, lt=1)] = Field(0.1, description="multiply the lr by this")
    patience: Annotated[int, Field(ge=0)] = Field(10, description="epochs without improvement before the lr is reduced")
    threshold: NonNegativeFloat = Field(1e-4, description="relative change that counts as an improvement")
    cooldown: Annotated[int, Field(ge=0)] = Field(0, description="epochs to wait after a reduction before watching again")
    min_lr: NonNegativeFloat = Field(0.0, description="the lr is never reduced below this")


LRSchedule = Annotated[
    Union[ConstantLR, StepLR, ExponentialLR, CosineLR, ReduceOnPlateau], Field(discriminator="type")
]


def _or_a_bare_tag(core_schema, handler) -> dict:
    """The JSON Schema (``nnctl schema``) of a discriminated union that a before-validator also accepts as just
    its tag: ``lr_schedule: cosine`` for ``{type: cosine}``."""
    return {"anyOf": [{"type": "string", "enum": list(core_schema["choices"])}, handler(core_schema)]}


MonitorMode = Literal["auto", "min", "max"]


class EarlyStopping(Strict):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (Keras's EarlyStopping).
    ``restore_best`` (Keras's ``restore_best_weights``, off by default as there) scores the test set with the
    best epoch's weights instead of the final ones."""

    monitor: str = Field("val_loss", description="a per-epoch metric, e.g. val_loss, val_accuracy, train_loss")
    mode: MonitorMode = Field("auto", description="min or max; auto: max for *accuracy and *r2, else min")
    patience: PositiveInt = Field(20, description="epochs without improvement before training stops")
    min_delta: NonNegativeFloat = Field(0.0, description="smallest change that counts as an improvement")
    restore_best: bool = Field(False, description="score the test set with the best epoch's weights (checkpoints/best.npz)")


class SelectBest(Strict):
    """Model selection: keep the weights of the epoch with the best ``monitor`` (checkpoints/best.npz) and score
    the test set with them (Keras's ModelCheckpoint(save_best_only=True) followed by evaluate on that file)."""

    monitor: str = Field("val_loss", description="a per-epoch metric, e.g. val_loss, val_accuracy, train_loss")
    mode: MonitorMode = Field("auto", description="min or max; auto: max for *accuracy and *r2, else min")


class TrainingConfig(Strict):
    """The training loop: epochs, minibatches, the learning-rate schedule, stopping, checkpoints."""

    epochs: PositiveInt = Field(100, description="number of passes over the training data")
    batch_size: PositiveInt = Field(32, description="rows per minibatch")
    shuffle: bool = Field(True, description="a new seeded order of the training rows every epoch")
    checkpoint_every: PositiveInt = Field(10, description="write checkpoints/last.npz every N epochs (and at the end)")
    lr_schedule: Annotated[LRSchedule, GetPydanticSchema(get_pydantic_json_schema=_or_a_bare_tag)] = Field(
        ConstantLR(type="constant"), description="stepped once per epoch: a type (cosine) or a mapping with its parameters"
    )
    early_stopping: EarlyStopping | None = Field(None, description="stop when a metric stops improving; default: train every epoch")
    select_best: SelectBest | None = Field(
        None, description="score the test set with the best epoch by this monitor; default: the final weights"
    )
    grad_clip: PositiveFloat | None = Field(None, description="clip the global gradient norm to this value")
    threads: Literal["auto"] | PositiveInt = Field(
        "auto", description="BLAS threads while training: a number, or auto (follows the machine's load; 1 for small models)"
    )
    plots: bool = Field(False, description="write curves.png (and boundary.png / function.png) into the run folder")
    loggers: list[Literal["tensorboard"]] = Field(
        [], description="also log every epoch to: tensorboard (event files in the run folder's tensorboard/)"
    )
    on_nonfinite: Literal["stop", "rollback"] = Field(
        "stop", description="a NaN/inf loss: stop (status diverged), or roll back to the last good epoch with a lower lr"
    )
    lr_factor: Annotated[float, Field(gt=0, lt=1)] = Field(0.5, description="rollback: multiply the lr by this")
    max_rollbacks: Annotated[int, Field(ge=1)] = Field(3, description="rollback: at most this many times, then stop (status diverged)")

    @model_validator(mode="before")
    @classmethod
    def _schedule_by_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("lr_schedule"), str):
            data = {**data, "lr_schedule": {"type": data["lr_schedule"]}}
        return data


class ExperimentConfig(Strict):
    """An nnctl experiment: the data, the model, the loss, the optimizer and how to train."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)] = Field(
        "experiment", description="the run's name: its folder is <name>-<YYYYmmdd-HHMMSS>"
    )
    seed: Annotated[int, Field(ge=0, lt=2**32)] = Field(0, description="seed of every random draw (data, split, init, shuffle, dropout, augment)")
    data: DataConfig = Field(description="the data: dataset picks the source")
    model: ModelConfig = Field(description="the model: type mlp (the default) or a threshold model")
    loss: Literal["cross_entropy", "mse"] = Field(
        "cross_entropy", description="cross_entropy: softmax cross-entropy on raw scores; mse: mean squared error"
    )
    optimizer: OptimizerConfig = Field(SGDConfig(name="sgd"), description="the update rule (PyTorch's, with its defaults)")
    training: TrainingConfig = Field(TrainingConfig(), description="epochs, batches, schedule, stopping, checkpoints")

    def data_seed(self) -> int:
        return self.seed if self.data.seed is None else self.data.seed

    @property
    def is_classic(self) -> bool:
        """A threshold model: McCulloch-Pitts, a network of them, or a perceptron (no backpropagation)."""
        return isinstance(self.model, CLASSIC_MODELS)

    def to_dict(self) -> dict:
        return _tag_first(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}``: the dotted key paths ``--set`` uses."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat if flat or not prefix else {prefix: value}


def config_differences(old: "ExperimentConfig", new: "ExperimentConfig") -> list[tuple[str, Any, Any]]:
    """(key path, old value, new value) for every key that differs between two resolved configs."""
    a, b = flatten(old.to_dict()), flatten(new.to_dict())
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def resume_safe_keys(config: "ExperimentConfig") -> set[str]:
    """Keys that may change on ``resume --force`` without breaking "bit-identical to an uninterrupted run"
    up to the old end: more (or fewer) epochs, checkpoint frequency, the run's name, what is logged.  Not the
    epochs when a cosine schedule's period is the number of epochs, since that reshapes the whole schedule."""
    safe = {"name", "training.checkpoint_every", "training.epochs", "training.loggers"}
    schedule = config.training.lr_schedule
    if getattr(schedule, "type", None) == "cosine" and schedule.period is None:
        safe.discard("training.epochs")
    return safe


def is_resume_safe(key: str, safe: set[str]) -> bool:
    """Whether a key path of ``config_differences`` is one of the ``safe`` keys or lies under one (a list's
    items are keys of their own: training.loggers.0)."""
    return any(key == name or key.startswith(f"{name}.") for name in safe)


def _tag_first(value: Any) -> Any:
    """Put the key that says what a section is (dataset, type, name) first, as a user would write it."""
    if isinstance(value, list):
        return [_tag_first(v) for v in value]
    if not isinstance(value, dict):
        return value
    tags = [key for key in ("dataset", "type", "name") if key in value]
    return {key: _tag_first(value[key]) for key in [*tags, *(k for k in value if k not in tags)]}


# ------------------------------------------------------------------------------------ loading, errors


@dataclass
class LoadedConfig:
    config: ExperimentConfig
    locations: Locations

    def error(self, path: KeyPath, message: str) -> ConfigError:
        """A ConfigError located at ``path`` (e.g. ``("model", "layers", 2, "units")``)."""
        return ConfigError([f"{self.locations.place(path)}: {_dotted(path)}: {message}"])


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    data, locations = read_yaml(path)
    return validate_config(data, locations, overrides, base_dir=Path(path).parent)


def config_from_text(text: str, source: str, overrides=()) -> LoadedConfig:
    data, locations = parse_yaml(text, source)
    return validate_config(data, locations, overrides)


def validate_config(data: Any, locations: Locations, overrides=(), base_dir: Path | None = None) -> LoadedConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{locations.source}: a config must be a mapping of keys (name, data, model, ...)"])
    for override in overrides:
        apply_override(data, override, locations)
    loaded = LoadedConfig(validate_section(ExperimentConfig, data, locations), locations)
    _make_paths_absolute(loaded, base_dir)
    _check_across_sections(loaded)
    return loaded


def validate_section(model: type[BaseModel], data: Any, locations: Locations):
    """``model.model_validate(data)`` with every error turned into a line that points into the file."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_format_error(err, data, locations) for err in exc.errors()]) from None


def _make_paths_absolute(loaded: LoadedConfig, base_dir: Path | None) -> None:
    """Data paths in a file are relative to that file, paths given with --set to the current folder; the
    resolved config (saved in the run folder) holds absolute paths, so it works from anywhere."""
    data = loaded.config.data
    for key in PATH_KEYS:
        value = getattr(data, key, None)
        if value is None:
            continue
        from_command_line = loaded.locations.place(("data", key)).startswith("--set")
        base = Path.cwd() if from_command_line or base_dir is None else base_dir
        setattr(data, key, str((base / Path(value).expanduser()).resolve()))


def _check_across_sections(loaded: LoadedConfig) -> None:
    """Rules that tie sections together; those that need the data (the number of classes) are in data."""
    config = loaded.config
    model, training = config.model, config.training
    if getattr(config.data, "task", None) == "auto":
        config.data.task = "regression" if config.loss == "mse" and not config.is_classic else "classification"
    if config.data.is_regression and config.loss != "mse" and not config.is_classic:
        raise loaded.error(("loss",), f"{config.data.dataset} is a regression dataset: use loss: mse")
    if config.is_classic and config.data.is_regression:
        raise loaded.error(("model", "type"), f"a {model.type} model gives 0/1 outputs: it needs a classification dataset")
    if isinstance(model, PerceptronModel) and config.optimizer.name != "perceptron":
        raise loaded.error(("optimizer", "name"), "a perceptron is trained by the perceptron rule: use optimizer: {name: perceptron, lr: 1.0}")
    if not isinstance(model, PerceptronModel) and config.optimizer.name == "perceptron":
        raise loaded.error(("optimizer", "name"), "the perceptron rule trains model: {type: perceptron} only")
    if isinstance(model, MLPModel) and training.batch_size == 1 and any(isinstance(l, BatchNormLayer) for l in model.layers):
        raise loaded.error(("training", "batch_size"), "batch norm needs batches of at least 2 rows to compute a variance")
    if config.data.augment.for_images and not _is_image_data(config.data):
        raise loaded.error(("data", "augment"), "shift, rotate, flip and cutout apply to images (mnist, fashion-mnist, digits, npz images); use noise_std for other data")
    if training.plots and importlib.util.find_spec("matplotlib") is None:
        raise loaded.error(("training", "plots"), "needs matplotlib: pip install 'nnctl[plot]'")
    metrics = available_metrics(config)
    for path, monitor in monitored_metrics(training):
        if monitor not in metrics:
            hint = " (set data.val_fraction to hold out validation data)" if monitor.startswith("val_") else ""
            raise loaded.error(path, f"{monitor!r} is not a metric of this run{hint}; available: {', '.join(metrics)}")


    stopping, select = training.early_stopping, training.select_best
    by = lambda watch: f"{watch.monitor} ({monitor_mode(watch.monitor, watch.mode)})"  # noqa: E731
    if stopping and stopping.restore_best and select and by(stopping) != by(select):
        raise loaded.error(
            ("training", "select_best"), f"selects by {by(select)} while early_stopping.restore_best selects by {by(stopping)}: keep one of them"
        )
    if training.loggers and isinstance(model, (McCullochPittsModel, ThresholdNetworkModel)):
        raise loaded.error(("training", "loggers"), f"a {model.type} model has fixed weights and no epochs to log")
    if config.is_classic:
        kept = "the perceptron keeps its best weights itself (pocket algorithm)" if isinstance(model, PerceptronModel) else "its weights are fixed"
        for key in ("select_best", "early_stopping"):
            if getattr(training, key) is not None:
                raise loaded.error(("training", key), f"does not apply to a {model.type} model: {kept}")


def _is_image_data(data) -> bool:
    # npz images are known only once the file is read; data.load_data checks those
    return isinstance(data, (ImageData, DigitsData, NpzData))


def monitored_metrics(training: TrainingConfig) -> list[tuple[KeyPath, str]]:
    """(key path, metric) of every per-epoch metric the training section watches: early stopping, best-epoch
    selection, a plateau schedule."""
    watched = [
        (("training", "early_stopping", "monitor"), training.early_stopping and training.early_stopping.monitor),
        (("training", "select_best", "monitor"), training.select_best and training.select_best.monitor),
        (("training", "lr_schedule", "monitor"), getattr(training.lr_schedule, "monitor", None)),
    ]
    return [(path, monitor) for path, monitor in watched if monitor]


def monitor_mode(metric: str, mode: str = "auto") -> str:
    """Whether a metric improves going down ("min": losses, mae) or up ("max": accuracy, r2); ``mode`` min or
    max overrides the guess from the name."""
    if mode != "auto":
        return mode
    return "max" if metric.endswith(("accuracy", "r2")) else "min"


def available_metrics(config: ExperimentConfig) -> list[str]:
    """The per-epoch metrics a run of this config records (what early stopping and schedules may monitor)."""
    kinds = ["loss", "mae", "r2"] if config.data.is_regression else ["loss", "accuracy"]
    metrics = ["train_loss"] + ([] if config.data.is_regression else ["train_accuracy"])
    if getattr(config.data, "val_fraction", 0) > 0:
        metrics += [f"val_{kind}" for kind in kinds]
    return metrics


def _format_error(err: dict, data: Any, locations: Locations) -> str:
    kind = err["type"]
    path = _data_path(err["loc"], data, keep_missing_key=kind == "missing")
    ctx = err.get("ctx", {})
    if kind == "unknown_key":
        path = path + (ctx["key"],)
        message = err["msg"]
    elif kind == "union_tag_invalid":
        key = ctx["discriminator"].strip("'")
        path = path + ("type" if key.endswith("()") else key,)  # a callable discriminator picks the model type
        tag = ctx["tag"]
        allowed = [t.strip("'") for t in ctx["expected_tags"].split(", ")]
        hint = did_you_mean(tag, allowed)
        message = f"unknown {path[-1]} {tag!r}{hint}; allowed: {', '.join(allowed)}"
    elif kind == "union_tag_not_found":
        key = ctx["discriminator"].strip("'")
        message = f"missing required key {key!r}"
    elif kind == "literal_error":
        allowed = [a.strip().strip("'") for a in ctx["expected"].replace(" or ", ", ").split(", ")]
        got = err["input"]
        hint = did_you_mean(got, allowed)
        message = f"{got!r} is not allowed{hint}; allowed: {', '.join(allowed)}"
    elif kind == "missing":
        message = "missing required key"
    else:
        message = re.sub(r" or instance of \w+", "", err["msg"].removeprefix("Value error, "))
        if not isinstance(err.get("input"), (dict, list)) and kind not in {"model_type"}:
            message += f" (got {err['input']!r})"
    return f"{locations.place(path)}: {_dotted(path) or '(top level)'}: {message}"


def _data_path(loc: tuple, data: Any, keep_missing_key: bool) -> KeyPath:
    """The key path in the user's data of a pydantic error location, which also holds union tags
    (``("model", "layers", 0, "dense", "units")``): keep the parts that index into the data."""
    path: list = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path.append(part)
        elif keep_missing_key and index == len(loc) - 1:
            path.append(part)  # point at the parent, name the key
    return tuple(path)


def _dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path)


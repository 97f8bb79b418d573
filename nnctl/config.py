"""The experiment config: its schema (pydantic), defaults, and errors that point into the YAML file.

``load_config("configs/spiral.yaml", overrides=["optimizer.lr=0.1"])`` returns a ``LoadedConfig``:
the validated ``ExperimentConfig`` plus where each key came from, so that later checks (for example
the last layer's size against the data's number of classes) can also name the file, line and column.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nnctl.errors import ConfigError
from nnctl.yamlio import KeyPath, Locations, apply_override, parse_yaml, read_yaml

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


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
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
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


class PlaygroundData(Strict):
    """The TensorFlow Playground's six datasets (shared/reference/playground.md)."""

    dataset: Literal["circle", "xor", "gauss", "spiral", "reg-plane", "reg-gauss"]
    samples: PositiveInt | None = Field(None, description="default: 500 for classification, 1200 for regression")
    noise: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    test_fraction: Fraction = 0.5
    val_fraction: Fraction = 0.0
    features: Annotated[list[Literal[FEATURES]], Field(min_length=1)] = ["x1", "x2"]  # type: ignore[valid-type]
    seed: int | None = Field(None, description="seed of data generation and split; default: the run's seed")

    @model_validator(mode="after")
    def _check(self):
        if self.samples is None:
            self.samples = 1200 if self.dataset in PLAYGROUND_REGRESSION else 500
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"test_fraction + val_fraction must be below 1 to leave training data "
                f"(got {self.test_fraction} + {self.val_fraction})"
            )
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: each feature may appear once")
        return self

    @property
    def is_regression(self) -> bool:
        return self.dataset in PLAYGROUND_REGRESSION


DataConfig = Annotated[Union[PlaygroundData], Field(discriminator="dataset")]


# ---------------------------------------------------------------------------------------------- model

ActivationName = Literal["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "heaviside"]
InitName = Literal["xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "uniform", "torch", "zeros"]


class ActivationConfig(Strict):
    """``relu``, or with a parameter: ``{name: leaky_relu, slope: 0.2}``, ``{name: elu, alpha: 0.5}``."""

    name: ActivationName
    slope: PositiveFloat | None = Field(None, description="leaky_relu only; default 0.1 (the lecture's slide)")
    alpha: PositiveFloat | None = Field(None, description="elu only; default 1.0")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

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

    @model_serializer
    def _dump(self):
        return {"name": self.name, **self.params} if self.params else self.name


class DenseLayer(Strict):
    """y = f(x W + b)."""

    type: Literal["dense"]
    units: PositiveInt
    activation: ActivationConfig = ActivationConfig(name="identity")
    init: InitName | None = Field(None, description="overrides model.init for this layer")


LayerConfig = Annotated[Union[DenseLayer], Field(discriminator="type")]


class ModelConfig(Strict):
    init: InitName = "xavier_uniform"
    layers: Annotated[list[LayerConfig], Field(min_length=1)]


# ------------------------------------------------------------------------------------------ optimizer


class SGDConfig(Strict):
    """Slide 10: v <- momentum v + grad; w <- w - lr v."""

    name: Literal["sgd"]
    lr: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _check(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class AdamConfig(Strict):
    name: Literal["adam", "adamw"]
    lr: PositiveFloat = 0.001
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.0


class RMSPropConfig(Strict):
    name: Literal["rmsprop"]
    lr: PositiveFloat = 0.01
    alpha: Fraction = 0.99
    eps: PositiveFloat = 1e-8
    momentum: Fraction = 0.0
    weight_decay: NonNegativeFloat = 0.0


class AdaGradConfig(Strict):
    name: Literal["adagrad"]
    lr: PositiveFloat = 0.01
    lr_decay: NonNegativeFloat = 0.0
    eps: PositiveFloat = 1e-10
    weight_decay: NonNegativeFloat = 0.0


OptimizerConfig = Annotated[
    Union[SGDConfig, AdamConfig, RMSPropConfig, AdaGradConfig], Field(discriminator="name")
]


# ------------------------------------------------------------------------------------------- training


class TrainingConfig(Strict):
    epochs: PositiveInt = 100
    batch_size: PositiveInt = 32
    shuffle: bool = True
    checkpoint_every: PositiveInt = Field(10, description="write checkpoints/last.npz every N epochs")


class ExperimentConfig(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)] = "experiment"
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    data: DataConfig
    model: ModelConfig
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    optimizer: OptimizerConfig = SGDConfig(name="sgd")
    training: TrainingConfig = TrainingConfig()

    def data_seed(self) -> int:
        return self.seed if self.data.seed is None else self.data.seed

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


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
    return validate_config(data, locations, overrides)


def config_from_text(text: str, source: str, overrides=()) -> LoadedConfig:
    data, locations = parse_yaml(text, source)
    return validate_config(data, locations, overrides)


def validate_config(data: Any, locations: Locations, overrides=()) -> LoadedConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{locations.source}: a config must be a mapping of keys (name, data, model, ...)"])
    for override in overrides:
        apply_override(data, override, locations)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_format_error(err, data, locations) for err in exc.errors()]) from None
    loaded = LoadedConfig(config, locations)
    _check_across_sections(loaded)
    return loaded


def _check_across_sections(loaded: LoadedConfig) -> None:
    """Rules that tie sections together; those that need the data (the number of classes) are in data."""
    config = loaded.config
    if config.data.is_regression and config.loss != "mse":
        raise loaded.error(("loss",), f"{config.data.dataset} is a regression dataset: use loss: mse")


def _format_error(err: dict, data: Any, locations: Locations) -> str:
    kind = err["type"]
    path = _data_path(err["loc"], data, keep_missing_key=kind == "missing")
    ctx = err.get("ctx", {})
    if kind == "unknown_key":
        path = path + (ctx["key"],)
        message = err["msg"]
    elif kind == "union_tag_invalid":
        path = path + (ctx["discriminator"].strip("'"),)
        tag = ctx["tag"]
        allowed = [t.strip("'") for t in ctx["expected_tags"].split(", ")]
        near = difflib.get_close_matches(str(tag), allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        message = f"unknown {path[-1]} {tag!r}{hint}; allowed: {', '.join(allowed)}"
    elif kind == "union_tag_not_found":
        key = ctx["discriminator"].strip("'")
        message = f"missing required key {key!r}"
    elif kind == "literal_error":
        allowed = [a.strip().strip("'") for a in ctx["expected"].replace(" or ", ", ").split(", ")]
        got = err["input"]
        near = difflib.get_close_matches(str(got), allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
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


def read_config_file(path: str | os.PathLike) -> LoadedConfig:
    """Load a run folder's saved ``config.yaml`` (no overrides)."""
    return load_config(Path(path))

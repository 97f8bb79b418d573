"""The web page's state in its URL hash: the TensorFlow Playground's keys, plus nnctl's own.

A link copied from the TensorFlow Playground (``#activation=tanh&batchSize=10&dataset=circle&...``, its
``src/state.ts``) opens the same experiment: the same dataset, noise, split, features, network, activation,
learning rate, regularization and batch size, on the Playground's model (one tanh output, the squared error
1/2 (o - t)^2, weights U(-0.5, 0.5) and biases 0.1; see ``options.py``).  Its random numbers are nnctl's:
the seed string is read as a number (or hashed), so the same link always gives the same run.

As in the Playground, a value that cannot be read leaves the default; here the page also says so
(``PageState.notes``).  nnctl's extras have keys of their own (``EXTRA_KEYS``); ``to_hash`` writes every
Playground key and the extras that differ from their defaults.
"""

from __future__ import annotations

import math
import secrets
import zlib
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

from nnctl.config import PLAYGROUND_CLASSIFICATION, PLAYGROUND_REGRESSION
from nnctl.playground.options import (
    ACTIVATIONS,
    INITS,
    LOSSES,
    MAX_LAYERS,
    MAX_UNITS,
    OPTIMIZERS,
    SCHEDULES,
    PlaygroundOptions,
)

#: the hash's boolean feature keys and nnctl's feature names, in the Playground's order
FEATURE_KEYS = {"x": "x1", "y": "x2", "xSquared": "x1_sq", "ySquared": "x2_sq", "xTimesY": "x1_x2", "sinX": "sin_x1", "sinY": "sin_x2"}
#: the Playground's activations ("linear" is nnctl's identity) and nnctl's others
HASH_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "linear": "identity"} | {
    name: name for name in ACTIVATIONS if name != "identity"
}
REGULARIZATION_KEYS = {"none": "none", "L1": "l1", "L2": "l2"}
REGULARIZATION_NAMES = {name: key for key, name in REGULARIZATION_KEYS.items()}
#: keys of the Playground nnctl reads but does not use (they change nothing that nnctl trains or shows)
IGNORED_KEYS = {"collectStats", "tutorial", "hideText"}
#: the Playground's features and datasets nnctl does not have
MISSING = {"cosX": "the feature cos(x1)", "cosY": "the feature cos(x2)", "reg-maximum": "the dataset reg-maximum", "reg-argmax": "the dataset reg-argmax"}
#: the Playground's keys nnctl reads
PLAYGROUND_KEYS = (
    "activation", "regularization", "batchSize", "dataset", "regDataset", "learningRate", "regularizationRate", "noise",
    "networkShape", "seed", "showTestData", "discretize", "percTrainData", *FEATURE_KEYS, "cosX", "cosY", "problem", "initZero",
)  # fmt: skip
EXTRA_KEYS = ("optimizer", "momentum", "nesterov", "loss", "init", "activations", "dropout", "batchnorm", "schedule", "period")


def page_defaults() -> PlaygroundOptions:
    """The TensorFlow Playground's defaults, on its model."""
    return PlaygroundOptions(
        dataset="circle", noise=0.0, layers=[4, 2], activation="tanh", lr=0.03, batch_size=10, features=["x1", "x2"],
        regularization="none", rate=0.0, loss="squared", init="uniform", test_fraction=0.5,
    )  # fmt: skip


@dataclass
class PageState:
    """Everything the hash holds: the options, the page's display switches, and which dataset each problem
    type had (the Playground keeps both ``dataset`` and ``regDataset``)."""

    options: PlaygroundOptions = field(default_factory=page_defaults)
    show_test: bool = False
    discretize: bool = False
    classification_dataset: str = "circle"
    regression_dataset: str = "reg-plane"
    seed_text: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str:
        return "regression" if self.options.is_regression else "classification"


def split_hash(text: str) -> dict[str, str]:
    """``a=1&b=2`` (with or without the leading '#') -> {"a": "1", "b": "2"}; later keys win."""
    pairs = {}
    for part in text.lstrip("#").split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs[unquote(name)] = unquote(value)
    return pairs


def seed_from_text(text: str) -> int:
    """The Playground's seed is any string (it picks ``Math.random().toFixed(5)``); nnctl needs an integer:
    a whole number is used as it is, anything else is hashed (CRC-32), so the same link gives the same run."""
    text = text.strip()
    if text.isdigit() and int(text) < 2**32:
        return int(text)
    return zlib.crc32(text.encode("utf-8"))


def parse_hash(text: str, base: PageState | None = None) -> PageState:
    """The page state a hash describes: ``base`` (default: the Playground's defaults) with the hash's values."""
    return parse_pairs(split_hash(text), base)


def parse_pairs(pairs: dict[str, str], base: PageState | None = None) -> PageState:
    """``base`` (default: the Playground's defaults) with the values of the hash's ``pairs``."""
    base = base or PageState()
    state = replace(base, options=replace(base.options, layers=list(base.options.layers), features=list(base.options.features)), notes=[])
    options = state.options
    notes = state.notes

    def bad(key: str, value: str, allowed: str) -> None:
        notes.append(f"{key}={value} is not something nnctl reads ({allowed}); kept {key} as it was")

    def number(key: str, low: float, high: float, whole: bool = False) -> float | None:
        if key not in pairs or pairs[key].strip() == "":
            return None
        try:
            value = float(pairs[key])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high) or (whole and value != int(value)):
            bad(key, pairs[key], f"{'a whole number' if whole else 'a number'} from {low:g} to {high:g}")
            return None
        return int(value) if whole else value

    def boolean(key: str) -> bool | None:
        if key not in pairs or pairs[key].strip() == "":
            return None
        return pairs[key] != "false"  # the Playground's rule: anything but "false" is true

    def choice(key: str, allowed: dict[str, str]) -> str | None:
        if key not in pairs:
            return None
        if pairs[key] in MISSING:
            notes.append(f"nnctl has no {MISSING[pairs[key]].removeprefix('the ')}; kept {key} as it was")
            return None
        if pairs[key] not in allowed:
            bad(key, pairs[key], ", ".join(allowed))
            return None
        return allowed[pairs[key]]

    def number_list(key: str, low: float, high: float, whole: bool = False) -> list | None:
        if key not in pairs:
            return None
        parts = [p for p in pairs[key].split(",") if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = [math.nan]
        if not all(math.isfinite(v) and low <= v <= high and (not whole or v == int(v)) for v in values):
            bad(key, pairs[key], f"numbers from {low:g} to {high:g} separated by commas")
            return None
        return [int(v) for v in values] if whole else values

    # the Playground's keys
    if (value := choice("activation", HASH_ACTIVATIONS)) is not None:
        options.activation = value
    if (value := choice("regularization", REGULARIZATION_KEYS)) is not None:
        options.regularization = value
    if (value := number("batchSize", 1, 100_000, whole=True)) is not None:
        options.batch_size = value
    if (value := choice("dataset", {name: name for name in PLAYGROUND_CLASSIFICATION})) is not None:
        state.classification_dataset = value
    if (value := choice("regDataset", {name: name for name in PLAYGROUND_REGRESSION})) is not None:
        state.regression_dataset = value
    if (value := number("learningRate", 1e-12, 1e6)) is not None:
        options.lr = value
    if (value := number("regularizationRate", 0, 1e6)) is not None:
        options.rate = value
    if (value := number("noise", 0, 50)) is not None:
        options.noise = value / 100
    if (value := number_list("networkShape", 1, MAX_UNITS, whole=True)) is not None:
        if len(value) > MAX_LAYERS:
            bad("networkShape", pairs["networkShape"], f"at most {MAX_LAYERS} layers of {MAX_UNITS} units")
        else:
            options.layers = value
    if "seed" in pairs and pairs["seed"].strip():
        state.seed_text = pairs["seed"].strip()
        options.seed = seed_from_text(state.seed_text)
    elif not state.seed_text:
        options.seed = secrets.randbelow(100_000)  # as the Playground: a link without a seed gets a new one
        state.seed_text = str(options.seed)
    if (value := boolean("showTestData")) is not None:
        state.show_test = value
    if (value := boolean("discretize")) is not None:
        state.discretize = value
    if (value := number("percTrainData", 1, 99)) is not None:
        options.test_fraction = round(1 - value / 100, 6)
    features = list(options.features)
    for key, name in FEATURE_KEYS.items():
        on = boolean(key)
        if on is True and name not in features:
            features.append(name)
        elif on is False and name in features:
            features.remove(name)
    for key in ("cosX", "cosY"):
        if boolean(key):
            notes.append(f"nnctl has no {MISSING[key].removeprefix('the ')}; left it out")
    if features:
        options.features = [name for name in FEATURE_KEYS.values() if name in features]
    else:
        notes.append("no input feature was on; kept the features as they were")
    problem = choice("problem", {"classification": "classification", "regression": "regression"}) or base.problem
    if options.csv is None:
        options.dataset = state.regression_dataset if problem == "regression" else state.classification_dataset
    else:
        options.problem = problem
    if boolean("initZero"):
        options.init = "zeros"
    unknown = sorted(set(pairs) - set(PLAYGROUND_KEYS) - IGNORED_KEYS - set(EXTRA_KEYS) - {key for key in pairs if key.endswith("_hide")})
    if unknown:
        notes.append(f"unknown keys left out: {', '.join(unknown)}")

    # nnctl's keys
    if (value := choice("optimizer", {name: name for name in OPTIMIZERS})) is not None:
        options.optimizer = value
    if (value := number("momentum", 0, 0.999)) is not None:
        options.momentum = value
    if (value := boolean("nesterov")) is not None:
        options.nesterov = value
    if (value := choice("loss", {name: name for name in LOSSES})) is not None:
        options.loss = value
    if (value := choice("init", {name: name for name in INITS})) is not None:
        options.init = value
    if (value := choice("schedule", {name: name for name in SCHEDULES})) is not None:
        options.schedule = value
    if (value := number("period", 1, 10_000_000, whole=True)) is not None:
        options.period = value
    if "activations" in pairs:
        names = [HASH_ACTIVATIONS.get(name.strip()) for name in pairs["activations"].split(",") if name.strip()]
        if None in names:
            bad("activations", pairs["activations"], ", ".join(HASH_ACTIVATIONS))
        else:
            options.activations = names or None
    if (value := number_list("dropout", 0, 0.95)) is not None:
        options.dropout = value or None
    if (value := number_list("batchnorm", 0, 1, whole=True)) is not None:
        options.batchnorm = [bool(v) for v in value] or None
    fit_per_layer(options)
    if options.is_regression:  # a regression's loss is the squared error, and the page's rate is the Playground's
        options.loss = "squared"
    if options.csv is not None and options.csv.classes > 2:  # the Playground's squared error has one output, for two classes
        options.loss = "cross_entropy"
    return state


def fit_per_layer(options: PlaygroundOptions) -> None:
    """Per-layer lists follow the number of hidden layers (a new layer gets the defaults)."""
    n = len(options.layers)
    if options.activations is not None:
        options.activations = (options.activations + [options.activation] * n)[:n] or None
    if options.dropout is not None:
        options.dropout = (options.dropout + [0.0] * n)[:n] or None
    if options.batchnorm is not None:
        options.batchnorm = (options.batchnorm + [False] * n)[:n] or None


def _text(value: float) -> str:
    return f"{value:g}"


def hash_pairs(state: PageState, every_key: bool = False) -> dict[str, str]:
    """The hash's keys and values: the Playground's, then nnctl's extras that differ from the defaults (with
    ``every_key``, all of them: what the page's controls show)."""
    options = state.options
    activation = next(key for key, name in HASH_ACTIVATIONS.items() if name == options.activation)
    pairs = {
        "activation": activation,
        "batchSize": str(options.batch_size),
        "dataset": state.classification_dataset,
        "regDataset": state.regression_dataset,
        "learningRate": _text(options.lr),
        "regularizationRate": _text(options.rate),
        "noise": _text(round(options.noise * 100, 6)),
        "networkShape": ",".join(map(str, options.layers)),
        "seed": state.seed_text or str(options.seed),
        "showTestData": str(state.show_test).lower(),
        "discretize": str(state.discretize).lower(),
        "percTrainData": _text(round((1 - options.test_fraction) * 100, 6)),
        **{key: str(name in options.features).lower() for key, name in FEATURE_KEYS.items()},
        "problem": state.problem,
    }
    if options.regularization != "none" or every_key:
        pairs["regularization"] = REGULARIZATION_NAMES[options.regularization]
    defaults = page_defaults()
    extras = {
        "optimizer": options.optimizer,
        "momentum": _text(options.momentum),
        "nesterov": str(options.nesterov).lower(),
        "loss": options.loss,
        "init": options.init,
        "schedule": options.schedule,
    }
    default_extras = {"optimizer": defaults.optimizer, "momentum": "0", "nesterov": "false", "loss": defaults.loss, "init": defaults.init, "schedule": "constant"}
    pairs.update({key: value for key, value in extras.items() if every_key or value != default_extras[key]})
    if options.period or every_key:
        pairs["period"] = str(options.period or "")
    if options.activations:
        pairs["activations"] = ",".join(next(k for k, v in HASH_ACTIVATIONS.items() if v == name) for name in options.activations)
    if options.dropout:
        pairs["dropout"] = ",".join(_text(rate) for rate in options.dropout)
    if options.batchnorm:
        pairs["batchnorm"] = ",".join("1" if on else "0" for on in options.batchnorm)
    return pairs


def to_hash(state: PageState) -> str:
    """The hash text, each value quoted (a seed may hold any character); commas stay readable."""
    return "&".join(f"{key}={quote(value, safe=',.-_')}" for key, value in hash_pairs(state).items())

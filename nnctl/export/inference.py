"""What an exported model computes: the whole path ``nnctl predict`` takes from raw input columns to its answer.

    raw columns (float32) --features--> the Playground's x1, x2, x1², x2², x1·x2, sin x1, sin x2 (computed in float64)
                          --normalize-> x' = (x - shift) @ rotation * scale  (rotation for pca_whiten only)
                          --layers----> the network's output
                          --decision--> a class (and probabilities) or a value

Every exporter reads this one description, so ONNX and PyTorch agree with ``predict`` by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

import nnctl
from nnctl.data import playground
from nnctl.engine.layers import Layer
from nnctl.errors import NnctlError
from nnctl.evaluation import Restored

#: How ``nnctl predict`` turns the network's output into an answer (``metrics.Head.predict``):
SOFTMAX = "softmax"  # logits of a cross-entropy classifier: the class of the largest; probabilities by softmax
ARGMAX = "argmax"  # one output per class (mse on one-hot targets): the class of the largest output
SIGN = "sign"  # one output trained on -1/+1 targets (the Playground's tanh output): class 1 where output >= 0
STEP = "step"  # a threshold unit's 0/1 output: class 1 where output >= 0.5
VALUE = "value"  # regression: the output itself

#: the output a single-output classifier's class 1 begins at, by decision
CLASS_ONE_FROM = {SIGN: 0.0, STEP: 0.5}


@dataclass
class Inference:
    input_columns: list[str]  # the raw columns, in the order the model reads them
    features: list[str] | None  # the Playground's features computed from x1, x2; None: the columns are the features
    normalize: str  # none | standard | minmax | pca_whiten
    preprocess: dict[str, np.ndarray]  # shift, scale and (pca_whiten) rotation, float32
    layers: list[Layer]  # the engine's layers, in evaluation mode
    task: str  # classification | regression
    class_names: list[str]
    decision: str  # SOFTMAX, ARGMAX, SIGN, STEP or VALUE
    image_shape: tuple[int, int] | None  # (height, width) when the columns are an image's pixels, row by row
    name: str  # the run's config name
    epoch: int  # the checkpoint's epoch
    trained_with: str  # the nnctl version that wrote the checkpoint


def describe(restored: Restored) -> Inference:
    """The restored checkpoint as an ``Inference``, refusing metadata that ``predict`` would refuse."""
    meta, head, checkpoint = restored.meta, restored.head, restored.checkpoint
    invalid = f"{checkpoint}: not a valid checkpoint:"
    features = meta.get("playground_features")
    columns = meta.get("input_columns")
    if not columns:
        raise NnctlError(f"{checkpoint}: the checkpoint does not list the columns its model reads, so an export could not name its inputs")
    if features is not None:
        unknown = sorted(set(features) - set(playground.FEATURE_FUNCTIONS))
        if unknown:
            raise NnctlError(f"{invalid} unknown Playground feature {unknown[0]!r}")
        if columns != ["x1", "x2"]:
            raise NnctlError(f"{invalid} a Playground model reads the columns x1, x2, not {', '.join(columns)}")
        if len(features) != meta["n_features"]:
            raise NnctlError(f"{invalid} {len(features)} Playground features for a model of {meta['n_features']} inputs")
    elif len(columns) != meta["n_features"]:
        raise NnctlError(f"{invalid} it lists {len(columns)} input columns for a model of {meta['n_features']} inputs")
    class_names = list(meta.get("class_names") or [])
    if head.task == "classification":
        outputs = head.output_units if head.output_units > 1 else 2  # one output: two classes
        if len(class_names) != outputs:
            raise NnctlError(f"{invalid} it names {len(class_names)} classes for a model of {outputs} class outputs")
    return Inference(
        input_columns=list(columns),
        features=list(features) if features is not None and features != columns else None,  # x1, x2 alone: nothing to compute
        normalize=restored.preprocessor.kind,
        preprocess={name: value.astype(np.float32) for name, value in restored.preprocessor.arrays.items()},  # as training writes them
        layers=restored.model.layers,
        task=head.task,
        class_names=class_names,
        decision=decision(restored),
        image_shape=tuple(meta["image_shape"]) if meta.get("image_shape") else None,
        name=restored.loaded.config.name,
        epoch=int(meta.get("epoch", 0)),
        trained_with=str(meta.get("nnctl_version", "unknown")),
    )


def decision(restored: Restored) -> str:
    head = restored.head
    if head.task == "regression":
        return VALUE
    if head.output_units > 1:
        return SOFTMAX if restored.loaded.config.loss == "cross_entropy" else ARGMAX
    return STEP if head.classic else SIGN


def describe_decision(inference: Inference) -> str:
    """One line saying what the network's output means, for the exported files' metadata."""
    if inference.decision == VALUE:
        return "the predicted value"
    names = inference.class_names
    if inference.decision in CLASS_ONE_FROM:
        return f"one output: class {names[1]} where it is >= {CLASS_ONE_FROM[inference.decision]:g}, else class {names[0]}"
    if inference.decision == ARGMAX:
        return f"one score per class ({', '.join(names)}): the largest is the class"
    return f"logits of the classes {', '.join(names)}: their softmax is the probabilities; the largest is the class"


def describe_input(inference: Inference) -> str:
    """One line saying what the network's input is made of."""
    steps = [f"float32 rows of the columns {', '.join(inference.input_columns)}"]
    if inference.features is not None:
        steps.append(f"the Playground's features {', '.join(inference.features)} (in float64, then float32)")
    if inference.normalize != "none":
        rotation = " @ rotation" if "rotation" in inference.preprocess else ""
        steps.append(f"{inference.normalize} normalization x' = (x - shift){rotation} * scale")
    return " -> ".join(steps)


def metadata(inference: Inference) -> dict[str, str]:
    """What both exported files say about themselves, as strings (lists as JSON)."""
    props = {
        "nnctl_version": nnctl.__version__,
        "trained_with_nnctl_version": inference.trained_with,
        "run_name": inference.name,
        "epoch": str(inference.epoch),
        "task": inference.task,
        "input_columns": json.dumps(inference.input_columns),
        "input_meaning": describe_input(inference),
        "output_meaning": describe_decision(inference),
    }
    if inference.features is not None:
        props["features"] = json.dumps(inference.features)
    if inference.image_shape is not None:
        props["image_shape"] = json.dumps(list(inference.image_shape))
    if inference.task == "classification":
        props["class_names"] = json.dumps(inference.class_names)
    return props

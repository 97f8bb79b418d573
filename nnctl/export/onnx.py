"""An ``Inference`` as an ONNX graph (opset 17), built node by node with ``onnx.helper``.

The graph takes the raw columns ``nnctl predict`` reads, as one float32 tensor ``input`` of shape (rows, columns),
and gives what ``predict`` prints: ``label``, the class names (strings), with ``probabilities`` (softmax of the
logits, cross-entropy classifiers) or ``scores`` (the network's output, other classifiers); or ``prediction``,
the value (regression).  Every tensor is named after the nnctl array it holds (``layers.0.weight``).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nnctl
from nnctl.engine.activations import Activation
from nnctl.engine.classic import Threshold
from nnctl.engine.layers import ActivationLayer, BatchNorm, Dense, Dropout, Layer, Maxout
from nnctl.export.inference import ARGMAX, CLASS_ONE_FROM, SOFTMAX, VALUE, Inference, describe_decision, metadata

OPSET = 17
#: the IR version of onnx 1.12, the release that brought opset 17: a runtime that runs opset 17 reads it
IR_VERSION = 8
INPUT = "input"
ROWS = "rows"  # the symbolic batch dimension


class Graph:
    """Nodes and constants in the order they are added; every tensor name is unique."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.names: set[str] = {INPUT}

    def unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.names:
            n += 1
            candidate = f"{name}.{n}"
        self.names.add(candidate)
        return candidate

    def constant(self, name: str, value) -> str:
        name = self.unique(name)
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attributes) -> str:
        output = self.unique(name)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output


# ------------------------------------------------------------------------------------- input side


def playground_features(graph: Graph, x: str, features: list[str]) -> str:
    """The Playground's features of the columns x1, x2, in float64 as ``predict`` computes them
    (``data.playground.make_features``), then float32."""
    points = graph.op("Cast", [x], "points", to=TensorProto.DOUBLE)
    x1, x2 = graph.unique("x1"), graph.unique("x2")
    graph.nodes.append(helper.make_node("Split", [points], [x1, x2], name="x1_x2_columns", axis=1))
    formulas = {
        "x1": lambda: x1,
        "x2": lambda: x2,
        "x1_sq": lambda: graph.op("Mul", [x1, x1], "x1_sq"),
        "x2_sq": lambda: graph.op("Mul", [x2, x2], "x2_sq"),
        "x1_x2": lambda: graph.op("Mul", [x1, x2], "x1_x2"),
        "sin_x1": lambda: graph.op("Sin", [x1], "sin_x1"),
        "sin_x2": lambda: graph.op("Sin", [x2], "sin_x2"),
    }
    columns = graph.op("Concat", [formulas[name]() for name in features], "features64", axis=1)
    return graph.op("Cast", [columns], "features", to=TensorProto.FLOAT)


def normalization(graph: Graph, x: str, kind: str, arrays: dict[str, np.ndarray]) -> str:
    """x' = (x - shift) @ rotation * scale, with the constants fitted on the training split (``data.preprocess``)."""
    if kind == "none":
        return x
    x = graph.op("Sub", [x, graph.constant("preprocess.shift", arrays["shift"])], "centred")
    if "rotation" in arrays:
        x = graph.op("MatMul", [x, graph.constant("preprocess.rotation", arrays["rotation"])], "rotated")
    return graph.op("Mul", [x, graph.constant("preprocess.scale", arrays["scale"])], "normalized")


# ------------------------------------------------------------------------------------------ layers


def activation(graph: Graph, f: Activation, z: str, prefix: str) -> str:
    """y = f(z) for each of nnctl's activations (``engine.activations``), by its formula there."""
    name = f"{prefix}.{f.name}"
    if f.name == "identity":
        return z
    if f.name in ("sigmoid", "tanh", "relu"):
        return graph.op({"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[f.name], [z], name)
    if f.name == "leaky_relu":  # max(slope x, x)
        return graph.op("LeakyRelu", [z], name, alpha=float(f.slope))
    if f.name == "elu":  # x if x > 0 else alpha (e^x - 1)
        return graph.op("Elu", [z], name, alpha=float(f.alpha))
    if f.name == "softplus":  # log(1 + e^x), and x itself above PyTorch's threshold 20
        threshold = graph.constant(f"{prefix}.threshold", np.float32(f.threshold))
        exp = graph.op("Exp", [graph.op("Min", [z, threshold], f"{prefix}.clipped")], f"{prefix}.exp")
        one_plus_exp = graph.op("Add", [exp, graph.constant(f"{prefix}.one", np.float32(1))], f"{prefix}.one_plus_exp")
        above = graph.op("Greater", [z, threshold], f"{prefix}.above")
        return graph.op("Where", [above, z, graph.op("Log", [one_plus_exp], f"{prefix}.log")], name)
    if f.name == "heaviside":  # H(x) = 1 if x >= 0 else 0
        return step(graph, z, graph.constant(f"{prefix}.zero", np.float32(0)), name)
    raise ValueError(f"no ONNX form for the activation {f.name!r}")  # pragma: no cover - every activation has one above


def step(graph: Graph, z: str, threshold: str, name: str) -> str:
    """1.0 where z >= threshold, else 0.0."""
    return graph.op("Cast", [graph.op("GreaterOrEqual", [z, threshold], f"{name}.on")], name, to=TensorProto.FLOAT)


def affine(graph: Graph, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str) -> str:
    """z = x W + b (W of shape (inputs, units), as nnctl stores it)."""
    product = graph.op("MatMul", [x, graph.constant(f"{prefix}.weight", weight)], f"{prefix}.xW")
    return graph.op("Add", [product, graph.constant(f"{prefix}.bias", bias)], f"{prefix}.z")


def layer_nodes(graph: Graph, layer: Layer, x: str, prefix: str) -> str:
    if isinstance(layer, Dense):  # y = f(x W + b)
        return activation(graph, layer.activation, affine(graph, x, layer.params["weight"], layer.params["bias"], prefix), prefix)
    if isinstance(layer, ActivationLayer):
        return activation(graph, layer.activation, x, prefix)
    if isinstance(layer, Maxout):  # y_j = max over k of (x W_k + b_k)_j; column j * pieces + k is piece k of unit j
        z = affine(graph, x, layer.params["weight"], layer.params["bias"], prefix)
        units = layer.params["weight"].shape[1] // layer.pieces
        pieces = graph.op("Reshape", [z, graph.constant(f"{prefix}.shape", np.array([-1, units, layer.pieces], np.int64))], f"{prefix}.pieces")
        return graph.op("ReduceMax", [pieces], f"{prefix}.max", axes=[2], keepdims=0)
    if isinstance(layer, BatchNorm):  # evaluation: gamma (x - running_mean) / sqrt(running_var + eps) + beta
        inputs = [
            x,
            graph.constant(f"{prefix}.gamma", layer.params["gamma"]),
            graph.constant(f"{prefix}.beta", layer.params["beta"]),
            graph.constant(f"{prefix}.running_mean", layer.buffers["running_mean"]),
            graph.constant(f"{prefix}.running_var", layer.buffers["running_var"]),
        ]
        return graph.op("BatchNormalization", inputs, f"{prefix}.batchnorm", epsilon=float(layer.eps))
    if isinstance(layer, Dropout):  # the identity in evaluation
        return x
    if isinstance(layer, Threshold):  # McCulloch-Pitts units: y = H(x W - theta)
        product = graph.op("MatMul", [x, graph.constant(f"{prefix}.weight", layer.buffers["weight"])], f"{prefix}.xW")
        return step(graph, product, graph.constant(f"{prefix}.threshold", layer.buffers["threshold"]), f"{prefix}.heaviside")
    raise ValueError(f"no ONNX form for the layer {type(layer).__name__}")  # pragma: no cover - every engine layer has one above


# ------------------------------------------------------------------------------------- output side


def outputs(graph: Graph, inference: Inference, y: str) -> list[onnx.ValueInfoProto]:
    """The answer as ``predict`` gives it (``metrics.Head.predict``): a value, or a class name and the scores."""
    if inference.decision == VALUE:
        graph.op("Squeeze", [y, graph.constant("column_axis", np.array([1], np.int64))], "prediction")
        return [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [ROWS])]
    if inference.decision in (SOFTMAX, ARGMAX):
        width = len(inference.class_names)
        index = graph.op("ArgMax", [y], "class_index", axis=1, keepdims=0)
    else:  # one output, and class 1 from a threshold on
        width = 1
        output = graph.op("Squeeze", [y, graph.constant("column_axis", np.array([1], np.int64))], "output")
        threshold = graph.constant("class_one_from", np.float32(CLASS_ONE_FROM[inference.decision]))
        index = graph.op("Cast", [graph.op("GreaterOrEqual", [output, threshold], "is_class_one")], "class_index", to=TensorProto.INT64)
    graph.op("Gather", [graph.constant("class_names", np.array(inference.class_names, dtype=object)), index], "label", axis=0)
    if inference.decision == SOFTMAX:
        scores = graph.op("Softmax", [y], "probabilities", axis=1)
    else:
        scores = graph.op("Identity", [y], "scores")
    return [
        helper.make_tensor_value_info("label", TensorProto.STRING, [ROWS]),
        helper.make_tensor_value_info(scores, TensorProto.FLOAT, [ROWS, width]),
    ]


def onnx_model(inference: Inference) -> onnx.ModelProto:
    graph = Graph()
    x = INPUT
    if inference.features is not None:
        x = playground_features(graph, x, inference.features)
    x = normalization(graph, x, inference.normalize, inference.preprocess)
    for i, layer in enumerate(inference.layers):
        x = layer_nodes(graph, layer, x, f"layers.{i}")
    answer = outputs(graph, inference, x)
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [ROWS, len(inference.input_columns)])]
    body = helper.make_graph(graph.nodes, inference.name, inputs, answer, initializer=graph.constants)
    model = helper.make_model(
        body,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="nnctl",
        producer_version=nnctl.__version__,
        doc_string=f"nnctl run {inference.name!r}, epoch {inference.epoch}: {describe_decision(inference)}",
    )
    helper.set_model_props(model, {**metadata(inference), "input": INPUT, "outputs": json.dumps([value.name for value in answer])})
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_bytes(inference: Inference) -> bytes:
    return onnx_model(inference).SerializeToString()

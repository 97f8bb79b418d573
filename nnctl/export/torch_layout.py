"""An ``Inference``'s network as the state dict of a ``torch.nn.Sequential``, with that Sequential's source.

Each nnctl layer becomes the torch.nn modules that compute it, numbered in order as ``nn.Sequential`` numbers
them, so the tensors carry PyTorch's names and layouts:

    dense       y = f(x W + b)      Linear(inputs, units) (``i.weight`` = W transposed: (units, inputs),
                                    ``i.bias``), then f's module at i + 1 unless f is the identity
    maxout      y_j = max_k (x W_k + b_k)_j
                                    Linear(inputs, units * pieces), Unflatten(1, (units, pieces)),
                                    MaxPool1d(pieces): each unit's pieces, Flatten()
    batchnorm   gamma (x - mean) / sqrt(var + eps) + beta
                                    BatchNorm1d: ``weight`` = gamma, ``bias`` = beta, ``running_mean``,
                                    ``running_var``, ``num_batches_tracked``
    dropout                         Dropout(rate)
    activation                      its module (Identity() for the identity)

Activations: Sigmoid, Tanh, ReLU, LeakyReLU(slope), ELU(alpha), Softplus (threshold 20, as nnctl's).
torch.nn has no step function, so a Heaviside activation and the classic threshold units have no module:
such a model is refused with the reason (ONNX exports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnctl.engine.activations import Activation
from nnctl.engine.classic import Threshold
from nnctl.engine.layers import ActivationLayer, BatchNorm, Dense, Dropout, Layer, Maxout
from nnctl.errors import NnctlError


@dataclass
class Module:
    source: str  # e.g. "torch.nn.Linear(2, 16)"
    state: dict[str, np.ndarray] = field(default_factory=dict)  # by the module's own names: weight, bias, ...


def activation_module(f: Activation, where: str) -> Module:
    simple = {"identity": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU"}
    if f.name in simple:
        return Module(f"torch.nn.{simple[f.name]}()")
    if f.name == "leaky_relu":
        return Module(f"torch.nn.LeakyReLU(negative_slope={f.slope!r})")
    if f.name == "elu":
        return Module(f"torch.nn.ELU(alpha={f.alpha!r})")
    if f.name == "softplus":
        return Module(f"torch.nn.Softplus(beta=1.0, threshold={f.threshold!r})")
    if f.name == "heaviside":
        raise NnctlError(f"{where}: the Heaviside step has no torch.nn module, so this network is no plain torch.nn.Sequential; export it with --format onnx")
    raise ValueError(f"no torch.nn module for the activation {f.name!r}")  # pragma: no cover - every activation is above


def layer_modules(layer: Layer, where: str) -> list[Module]:
    if isinstance(layer, Dense):
        weight = layer.params["weight"]
        linear = Module(f"torch.nn.Linear({weight.shape[0]}, {weight.shape[1]})", {"weight": weight.T.copy(), "bias": layer.params["bias"]})
        return [linear] if layer.activation.name == "identity" else [linear, activation_module(layer.activation, where)]
    if isinstance(layer, ActivationLayer):
        return [activation_module(layer.activation, where)]
    if isinstance(layer, Maxout):
        weight, pieces = layer.params["weight"], layer.pieces
        units = weight.shape[1] // pieces
        return [
            Module(f"torch.nn.Linear({weight.shape[0]}, {weight.shape[1]})", {"weight": weight.T.copy(), "bias": layer.params["bias"]}),
            Module(f"torch.nn.Unflatten(1, ({units}, {pieces}))"),
            Module(f"torch.nn.MaxPool1d({pieces})"),
            Module("torch.nn.Flatten()"),
        ]
    if isinstance(layer, BatchNorm):
        state = {
            "weight": layer.params["gamma"],
            "bias": layer.params["beta"],
            "running_mean": layer.buffers["running_mean"],
            "running_var": layer.buffers["running_var"],
            # nnctl does not count batches; PyTorch reads the count only when momentum is None (never here)
            "num_batches_tracked": np.array(0, dtype=np.int64),
        }
        return [Module(f"torch.nn.BatchNorm1d({len(layer.params['gamma'])}, eps={layer.eps!r}, momentum={layer.momentum!r})", state)]
    if isinstance(layer, Dropout):
        return [Module(f"torch.nn.Dropout(p={layer.rate!r})")]
    if isinstance(layer, Threshold):
        raise NnctlError(
            f"{where}: McCulloch-Pitts threshold units compute a Heaviside step, which has no torch.nn module, "
            "so this model is no plain torch.nn.Sequential; export it with --format onnx"
        )
    raise ValueError(f"no torch.nn module for the layer {type(layer).__name__}")  # pragma: no cover - every engine layer is above


def sequential(layers: list[Layer]) -> tuple[str, dict[str, np.ndarray]]:
    """The source of the ``torch.nn.Sequential`` expression, and its state dict (``<index>.<name>``)."""
    modules = [module for i, layer in enumerate(layers) for module in layer_modules(layer, f"layer {i}")]
    lines = [f"    {module.source},  # {i}" for i, module in enumerate(modules)]
    state = {f"{i}.{name}": value for i, module in enumerate(modules) for name, value in module.state.items()}
    return "torch.nn.Sequential(\n" + "\n".join(lines) + "\n)", state

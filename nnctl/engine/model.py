"""A feed-forward network: layers applied in order, gradients passed back in reverse order."""

from __future__ import annotations

import numpy as np

from nnctl.engine.layers import Layer


class Sequential:
    def __init__(self, layers: list[Layer]):
        self.layers = layers

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def named_params(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, array, gradient) for every trainable array; names are ``layers.<i>.<param>``."""
        return [
            (f"layers.{i}.{name}", layer.params[name], layer.grads[name])
            for i, layer in enumerate(self.layers)
            for name in layer.params
        ]

    def num_params(self) -> int:
        return sum(p.size for _, p, _ in self.named_params())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array that defines the model: parameters and buffers, by ``layers.<i>.<name>``."""
        state = {}
        for i, layer in enumerate(self.layers):
            for name, value in {**layer.params, **layer.buffers}.items():
                state[f"layers.{i}.{name}"] = value
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the model in place; the caller has checked names and shapes."""
        for name, target in self.state_dict().items():
            target[...] = state[name]

"""A feed-forward network: layers applied in order, gradients passed back in reverse order."""

from __future__ import annotations

import numpy as np

from nnctl.engine.layers import Layer


class Sequential:
    def __init__(self, layers: list[Layer]):
        self.layers = layers
        #: the first layer with parameters: backward can stop there when the input needs no gradient
        self.first_trainable = next((i for i, layer in enumerate(layers) if layer.params), 0)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate dL/d(output) through every layer, filling each layer's parameter gradients.

        Returns dL/d(input); with ``input_grad=False`` (training, where the input is data) the pass stops at
        the first trainable layer and skips its input gradient -- for a first dense layer on MNIST that is
        a third of the backward pass's multiply-adds."""
        for i in range(len(self.layers) - 1, -1, -1):
            if not input_grad and i == self.first_trainable:
                self.layers[i].backward(grad, input_grad=False)
                return None
            grad = self.layers[i].backward(grad)
        return grad

    def flatten_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """Move every parameter and gradient into one contiguous vector each, leaving views in the layers.

        An optimizer given these two vectors updates the whole network with a handful of NumPy calls per
        step instead of a handful per array: on a Playground-sized network, where each call costs more than
        its arithmetic, that is most of a step's time."""
        named = self.named_params()
        dtype = named[0][1].dtype if named else np.float32
        params = np.empty(sum(p.size for _, p, _ in named), dtype=dtype)
        grads = np.zeros_like(params)
        offset = 0
        for i, layer in enumerate(self.layers):
            for name in list(layer.params):
                value = layer.params[name]
                size = value.size
                params[offset : offset + size] = value.reshape(-1)
                layer.params[name] = params[offset : offset + size].reshape(value.shape)
                layer.grads[name] = grads[offset : offset + size].reshape(value.shape)
                offset += size
        return params, grads

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

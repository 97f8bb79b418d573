"""Layers: each keeps what its backward pass needs from the forward pass (CS231n's "cache").

A layer has
- ``params``: trainable arrays by name, and ``grads``: their gradients, same names and shapes,
  filled by ``backward``;
- ``buffers``: arrays that are state but not trained (batch norm's running statistics);
- ``forward(x, training)`` and ``backward(grad_y) -> grad_x``.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.activations import Activation


class Layer:
    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _add_param(self, name: str, value: np.ndarray) -> None:
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)


class Dense(Layer):
    """Fully connected layer with an activation: y = f(x W + b).

    W has shape (inputs, units), so a batch x of shape (N, inputs) multiplies from the left
    (PyTorch's ``nn.Linear`` stores the transpose, (units, inputs)).
    Backward: with g = f'(z) * dy,  dW = x^T g,  db = sum over the batch of g,  dx = g W^T.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, activation: Activation):
        super().__init__()
        self._add_param("weight", weight)
        self._add_param("bias", bias)
        self.activation = activation

    def forward(self, x, training=False):
        z = x @ self.params["weight"]
        z += self.params["bias"]
        y = self.activation.forward(z)
        self._cache = (x, z, y)
        return y

    def backward(self, grad_y):
        x, z, y = self._cache
        g = self.activation.backward(z, y, grad_y)
        np.matmul(x.T, g, out=self.grads["weight"])
        np.sum(g, axis=0, out=self.grads["bias"])
        return g @ self.params["weight"].T

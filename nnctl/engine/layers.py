"""Layers: each keeps what its backward pass needs from the forward pass (CS231n's "cache").

A layer has
- ``params``: trainable arrays by name, and ``grads``: their gradients, same names and shapes,
  filled by ``backward``;
- ``buffers``: arrays that are state but not trained (batch norm's running statistics);
- ``forward(x, training)`` and ``backward(grad_y, input_grad=True) -> grad_x``; with ``input_grad=False``
  (the first trainable layer, whose input is the data) only the parameter gradients are computed.
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

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
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
        # tanh and relu overwrite z (their derivatives need only y): one array less per layer and step
        y = self.activation.forward_(z)
        self._cache = (x, z, y)
        return y

    def backward(self, grad_y, input_grad=True):
        x, z, y = self._cache
        g = self.activation.backward(z, y, grad_y)
        np.matmul(x.T, g, out=self.grads["weight"])
        np.add.reduce(g, axis=0, out=self.grads["bias"])
        return g @ self.params["weight"].T if input_grad else None


class ActivationLayer(Layer):
    """An activation on its own, e.g. after batch normalization: y = f(x)."""

    def __init__(self, activation: Activation):
        super().__init__()
        self.activation = activation

    def forward(self, x, training=False):
        y = self.activation.forward(x)
        self._cache = (x, y)
        return y

    def backward(self, grad_y, input_grad=True):
        x, y = self._cache
        return self.activation.backward(x, y, grad_y)


class Maxout(Layer):
    """Maxout (Goodfellow et al. 2013; slide 5): y_j = max over k pieces of (x W_k + b_k)_j.

    The pieces are stored side by side: weight (inputs, units * pieces), column j * pieces + k is piece k
    of unit j.  The gradient flows only into the piece that was the maximum.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, pieces: int):
        super().__init__()
        self._add_param("weight", weight)
        self._add_param("bias", bias)
        self.pieces = pieces

    def forward(self, x, training=False):
        z = x @ self.params["weight"] + self.params["bias"]
        z = z.reshape(len(x), -1, self.pieces)
        winner = z.argmax(axis=2)
        self._cache = (x, winner, z.shape)
        return np.take_along_axis(z, winner[..., None], axis=2)[..., 0]

    def backward(self, grad_y, input_grad=True):
        x, winner, shape = self._cache
        grad_z = np.zeros(shape, dtype=grad_y.dtype)
        np.put_along_axis(grad_z, winner[..., None], grad_y[..., None], axis=2)
        grad_z = grad_z.reshape(len(x), -1)
        np.matmul(x.T, grad_z, out=self.grads["weight"])
        np.add.reduce(grad_z, axis=0, out=self.grads["bias"])
        return grad_z @ self.params["weight"].T if input_grad else None


class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014; slide 11).  ``rate`` is the probability of dropping a unit,
    as in PyTorch and Keras.  Training: y = x * m / (1 - rate), m ~ Bernoulli(1 - rate), so the expected
    activation is unchanged and evaluation is the identity."""

    def __init__(self, rate: float, rng: np.random.Generator):
        super().__init__()
        self.rate = rate
        self.rng = rng

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32) >= self.rate
        self._mask = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * self._mask

    def backward(self, grad_y, input_grad=True):
        return grad_y if self._mask is None else grad_y * self._mask


class BatchNorm(Layer):
    """Batch normalization (Ioffe & Szegedy 2015, Algorithm 1; slide 12), over the batch for each feature.

    Training:   mu, var = mean and biased variance of the batch;  x_hat = (x - mu) / sqrt(var + eps);
                y = gamma * x_hat + beta;  running stats r <- (1 - momentum) r + momentum * stat, where the
                running variance takes the unbiased batch variance (var * n / (n - 1)), as PyTorch does.
    Evaluation: the same with the running mean and variance.
    Backward (training): dx = (1/n) / sqrt(var + eps) * (n dx_hat - sum dx_hat - x_hat * sum(dx_hat * x_hat)).
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self._add_param("gamma", np.ones(features, dtype=dtype))
        self._add_param("beta", np.zeros(features, dtype=dtype))
        self.buffers["running_mean"] = np.zeros(features, dtype=dtype)
        self.buffers["running_var"] = np.ones(features, dtype=dtype)
        self.momentum = momentum
        self.eps = eps

    def forward(self, x, training=False):
        t = x.dtype.type
        if training:
            n = len(x)
            mean = x.mean(axis=0)
            var = x.var(axis=0)
            m = t(self.momentum)
            self.buffers["running_mean"] *= 1 - m
            self.buffers["running_mean"] += m * mean
            self.buffers["running_var"] *= 1 - m
            self.buffers["running_var"] += m * var * t(n / (n - 1))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        inv_std = 1 / np.sqrt(var + t(self.eps))
        x_hat = (x - mean) * inv_std
        self._cache = (x_hat, inv_std, training)
        return self.params["gamma"] * x_hat + self.params["beta"]

    def backward(self, grad_y, input_grad=True):
        x_hat, inv_std, training = self._cache
        np.add.reduce(grad_y * x_hat, axis=0, out=self.grads["gamma"])
        np.add.reduce(grad_y, axis=0, out=self.grads["beta"])
        if not input_grad:
            return None
        grad_x_hat = grad_y * self.params["gamma"]
        if not training:
            return grad_x_hat * inv_std
        n = len(grad_y)
        return (inv_std / n) * (
            n * grad_x_hat - grad_x_hat.sum(axis=0) - x_hat * (grad_x_hat * x_hat).sum(axis=0)
        )


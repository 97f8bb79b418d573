"""Activation functions (lecture slides 3 and 5), each a forward/backward pair.

``forward(x)`` returns y = f(x); ``backward(x, y, grad_y)`` returns dL/dx = f'(x) * grad_y.
Both ``x`` and ``y`` are passed to ``backward`` because some derivatives are cheapest in terms
of the output (sigmoid: y(1 - y), tanh: 1 - y^2).  Derivatives at kinks follow PyTorch
(ReLU'(0) = 0, LeakyReLU'(0) = slope) so that gradients agree with it exactly.
"""

from __future__ import annotations

import numpy as np


class Activation:
    """Base class: the identity, f(x) = x."""

    name = "identity"
    #: ``forward_(z)`` may overwrite z with f(z): backward then needs only y (a dense layer's own buffer)
    inplace = False

    def forward_(self, z: np.ndarray) -> np.ndarray:
        return self.forward(z)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, x: np.ndarray, y: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
        return grad_y


Identity = Activation


class Sigmoid(Activation):
    """sigma(x) = 1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2, which never overflows."""

    name = "sigmoid"

    def forward(self, x):
        return 0.5 * np.tanh(0.5 * x) + 0.5

    def backward(self, x, y, grad_y):
        return grad_y * y * (1 - y)


class Tanh(Activation):
    """tanh(x); tanh'(x) = 1 - tanh(x)^2."""

    name = "tanh"
    inplace = True

    def forward(self, x):
        return np.tanh(x)

    def forward_(self, z):
        return np.tanh(z, out=z)

    def backward(self, x, y, grad_y):
        return grad_y * (1 - y * y)


class ReLU(Activation):
    """max(0, x); derivative 1 where x > 0, else 0 (0 at the kink, as PyTorch)."""

    name = "relu"
    inplace = True

    def forward(self, x):
        return np.maximum(x, 0)

    def forward_(self, z):
        return np.maximum(z, 0, out=z)

    def backward(self, x, y, grad_y):
        return grad_y * (y > 0)  # y > 0 exactly where x > 0


class LeakyReLU(Activation):
    """max(slope*x, x) for 0 < slope < 1.  The lecture's slide uses slope 0.1 (PyTorch's default is 0.01)."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.1):
        self.slope = slope

    def forward(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.slope))

    def backward(self, x, y, grad_y):
        return np.where(x > 0, grad_y, grad_y * grad_y.dtype.type(self.slope))


class ELU(Activation):
    """x if x > 0 else alpha*(e^x - 1); derivative 1 or alpha*e^x."""

    name = "elu"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, x):
        alpha = x.dtype.type(self.alpha)
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))

    def backward(self, x, y, grad_y):
        alpha = x.dtype.type(self.alpha)
        return np.where(x > 0, grad_y, grad_y * alpha * np.exp(np.minimum(x, 0)))


class Softplus(Activation):
    """log(1 + e^x), and x itself where x > 20 (PyTorch's threshold); derivative sigma(x)."""

    name = "softplus"
    threshold = 20.0

    def forward(self, x):
        return np.where(x > self.threshold, x, np.log1p(np.exp(np.minimum(x, self.threshold))))

    def backward(self, x, y, grad_y):
        sigma = 0.5 * np.tanh(0.5 * x) + 0.5
        return np.where(x > self.threshold, grad_y, grad_y * sigma)


class Heaviside(Activation):
    """H(x) = 1 if x >= 0 else 0 (slide 3).  Its derivative is 0 almost everywhere, so a network of
    Heaviside units gets no gradient: it is for classic threshold neurons, not for gradient training."""

    name = "heaviside"

    def forward(self, x):
        return (x >= 0).astype(x.dtype)

    def backward(self, x, y, grad_y):
        return np.zeros_like(grad_y)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Identity, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, Softplus, Heaviside)
}


def make_activation(name: str, **params) -> Activation:
    """Build an activation by name, e.g. ``make_activation("leaky_relu", slope=0.2)``."""
    return ACTIVATIONS[name](**params)

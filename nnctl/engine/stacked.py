"""A population: P networks of one shape trained side by side, every array with a leading member axis.

Each stacked layer does what its single form in ``layers.py`` does, per member, with the same NumPy operations
in the same order, so that member p's numbers are bit for bit those of the single network (``np.matmul`` on
(P, N, inputs) @ (P, inputs, units) calls the same BLAS product for each member as ``x @ W`` does; a sum over
a member's batch is the same sequence of additions as the single layer's sum over axis 0).  One NumPy call then
does the work of P: on a Playground-size network, where a call costs more than its arithmetic, that is most
of the time of training P networks one by one.

Shapes: a batch is x (P, N, features); dense weights (P, inputs, units), biases and batch-norm parameters (P,
units).  Activations work on any shape and are shared with the single layers; members with different
activations get theirs on their own rows (``MemberActivations``).  Per-member hyperparameters
(a dropout rate, L1/L2 strengths) are arrays of P values.  Optimizers (``optim.py``) update flat vectors
elementwise, so a population's parameters as one (P, n) array, with hyperparameters as (P, 1) columns, are
updated exactly as each member's vector would be (``population_view`` builds the (P, n) array and points
every member's layers at its row).

What members must share to be stacked (the sweep groups trials by it): the layers (types, sizes,
batch-norm momentum and eps; not their activations), the batch size and the data's shape; and, because a single
network skips the work of a zero rate (no random draw for dropout 0, no penalty term for l1 = 0, no momentum
buffer for momentum 0), whether each such rate is zero.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.activations import Activation
from nnctl.engine.layers import ActivationLayer, BatchNorm, Dense, Dropout, Layer
from nnctl.engine.losses import MeanSquaredError, SoftmaxCrossEntropy
from nnctl.engine.model import Sequential


def _transpose(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 1)


class StackedDense(Layer):
    """P dense layers: y_p = f(x_p W_p + b_p); backward as ``Dense``: dW_p = x_p^T g_p, db_p = sum g_p, dx_p = g_p W_p^T."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, activation: Activation):
        super().__init__()
        self._add_param("weight", weight)
        self._add_param("bias", bias)
        self.activation = activation

    def forward(self, x, training=False):
        z = x @ self.params["weight"]
        z += self.params["bias"][:, None, :]
        y = self.activation.forward_(z)
        self._cache = (x, z, y)
        return y

    def backward(self, grad_y, input_grad=True):
        x, z, y = self._cache
        g = self.activation.backward(z, y, grad_y)
        np.matmul(_transpose(x), g, out=self.grads["weight"])
        np.add.reduce(g, axis=1, out=self.grads["bias"])
        return g @ _transpose(self.params["weight"]) if input_grad else None


class StackedDropout(Layer):
    """P inverted dropouts, each with its own rate and its own random generator (the member's "dropout"
    stream): member p draws the same mask as its single ``Dropout`` would.  The rates are all above 0 or all 0."""

    def __init__(self, rates: np.ndarray, rngs: list[np.random.Generator]):
        super().__init__()
        self.rates = np.asarray(rates, dtype=np.float64)
        self.rngs = rngs

    def forward(self, x, training=False):
        if not training or not self.rates.any():  # a rate of 0 draws nothing, as ``Dropout``
            self._mask = None
            return x
        t = x.dtype.type
        draw = np.float64 if x.dtype == np.float64 else np.float32
        self._mask = np.empty_like(x)
        for p, (rate, rng) in enumerate(zip(self.rates, self.rngs)):
            keep = rng.random(x.shape[1:], dtype=draw) >= rate
            np.divide(keep.astype(x.dtype), t(1 - rate), out=self._mask[p])
        return x * self._mask

    def backward(self, grad_y, input_grad=True):
        return grad_y if self._mask is None else grad_y * self._mask


class StackedBatchNorm(Layer):
    """P batch normalizations (``BatchNorm``'s formulas per member, over the member's batch); the momentum and
    eps are shared."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray, momentum: float, eps: float):
        super().__init__()
        self._add_param("gamma", gamma)
        self._add_param("beta", beta)
        self.buffers["running_mean"] = running_mean
        self.buffers["running_var"] = running_var
        self.momentum = momentum
        self.eps = eps

    def forward(self, x, training=False):
        t = x.dtype.type
        if training:
            n = x.shape[1]
            mean = x.mean(axis=1)
            var = x.var(axis=1)
            m = t(self.momentum)
            self.buffers["running_mean"] *= 1 - m
            self.buffers["running_mean"] += m * mean
            self.buffers["running_var"] *= 1 - m
            self.buffers["running_var"] += m * var * t(n / (n - 1))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        inv_std = (1 / np.sqrt(var + t(self.eps)))[:, None, :]
        x_hat = (x - mean[:, None, :]) * inv_std
        self._cache = (x_hat, inv_std, training)
        return self.params["gamma"][:, None, :] * x_hat + self.params["beta"][:, None, :]

    def backward(self, grad_y, input_grad=True):
        x_hat, inv_std, training = self._cache
        np.add.reduce(grad_y * x_hat, axis=1, out=self.grads["gamma"])
        np.add.reduce(grad_y, axis=1, out=self.grads["beta"])
        if not input_grad:
            return None
        grad_x_hat = grad_y * self.params["gamma"][:, None, :]
        if not training:
            return grad_x_hat * inv_std
        n = grad_y.shape[1]
        return (inv_std / n) * (
            n * grad_x_hat - grad_x_hat.sum(axis=1, keepdims=True) - x_hat * (grad_x_hat * x_hat).sum(axis=1, keepdims=True)
        )


class MemberActivations(Activation):
    """Members of one stacked layer with different activations (a sweep over ``activation``): each part, a
    slice of members, gets its own, on its own rows of z, as its single layer would.  Members sorted by
    activation make few parts; any order is right."""

    def __init__(self, parts: list[tuple[slice, Activation]]):
        self.parts = parts

    def forward_(self, z):
        y = np.empty_like(z)
        for members, activation in self.parts:
            y[members] = activation.forward_(z[members])  # an in-place activation overwrites its rows of z, as alone
        return y

    def forward(self, x):
        y = np.empty_like(x)
        for members, activation in self.parts:
            y[members] = activation.forward(x[members])
        return y

    def backward(self, x, y, grad_y):
        grad_x = np.empty_like(grad_y)
        for members, activation in self.parts:
            grad_x[members] = activation.backward(x[members], y[members], grad_y[members])
        return grad_x


def same_activation(a: Activation, b: Activation) -> bool:
    return type(a) is type(b) and vars(a) == vars(b)


def stack_activations(activations: list[Activation]) -> Activation:
    """The members' activations of one layer: the shared one, or the runs of equal ones as parts."""
    parts, start = [], 0
    for p in range(1, len(activations) + 1):
        if p == len(activations) or not same_activation(activations[p], activations[start]):
            parts.append((slice(start, p), activations[start]))
            start = p
    return activations[0] if len(parts) == 1 else MemberActivations(parts)


def stack_layers(members: list[Sequential]) -> list[Layer]:
    """The stacked layers of P single networks of one shape, holding copies of their parameters and buffers
    (``population_view`` then makes the members' own arrays views of the stacked ones)."""
    first, layers = members[0], []
    for i, layer in enumerate(first.layers):
        same = [member.layers[i] for member in members]
        if isinstance(layer, Dense):
            weight = np.stack([m.params["weight"] for m in same])
            bias = np.stack([m.params["bias"] for m in same])
            layers.append(StackedDense(weight, bias, stack_activations([m.activation for m in same])))
        elif isinstance(layer, BatchNorm):
            stacked = [np.stack([m.params[k] if k in m.params else m.buffers[k] for m in same]) for k in ("gamma", "beta", "running_mean", "running_var")]
            layers.append(StackedBatchNorm(*stacked, layer.momentum, layer.eps))
        elif isinstance(layer, Dropout):
            layers.append(StackedDropout(np.array([m.rate for m in same]), [m.rng for m in same]))
        elif isinstance(layer, ActivationLayer):
            layers.append(ActivationLayer(stack_activations([m.activation for m in same])))  # elementwise: any shape
        else:
            raise TypeError(f"a population has no stacked form of {type(layer).__name__}")
    return layers


def population_view(stacked: Sequential, members: list[Sequential]) -> tuple[np.ndarray, np.ndarray]:
    """Move the stacked model's parameters and gradients into one (P, n) array each, member p's row laid out as
    ``members[p].flatten_parameters()`` lays out its vector, and point every member's layer arrays (parameters,
    gradients, buffers) at its share of the stacked ones.  Returns (params, grads): an optimizer given these
    updates the whole population; each member's own model, state_dict and checkpoints see the same numbers."""
    named = stacked.named_params()
    population = len(members)
    dtype = named[0][1].dtype if named else np.float32
    size = sum(p[0].size for _, p, _ in named)
    params = np.empty((population, size), dtype=dtype)
    grads = np.zeros_like(params)
    offset = 0
    for i, layer in enumerate(stacked.layers):
        for name in list(layer.params):
            value = layer.params[name]
            shape, width = value.shape[1:], value[0].size
            params[:, offset : offset + width] = value.reshape(population, -1)
            layer.params[name] = params[:, offset : offset + width].reshape(value.shape)
            layer.grads[name] = grads[:, offset : offset + width].reshape(value.shape)
            for p, member in enumerate(members):
                member.layers[i].params[name] = params[p, offset : offset + width].reshape(shape)
                member.layers[i].grads[name] = grads[p, offset : offset + width].reshape(shape)
            offset += width
        for name, value in layer.buffers.items():
            for p, member in enumerate(members):
                member.layers[i].buffers[name] = value[p]
    return params, grads


class StackedCrossEntropy(SoftmaxCrossEntropy):
    """``SoftmaxCrossEntropy`` per member: logits (P, N, classes), targets (P, N); the losses are a (P,) array."""

    def forward(self, logits, target):
        members, n = target.shape
        rows = self._rows.get((members, n))
        if rows is None:  # the index of each (member, row): the same two arrays batch after batch
            rows = self._rows[(members, n)] = (np.arange(members)[:, None], np.arange(n)[None, :])
        shifted = logits - np.maximum.reduce(logits, axis=2, keepdims=True)
        probabilities = np.exp(shifted)
        total = np.add.reduce(probabilities, axis=2, keepdims=True)
        loss = (np.add.reduce(np.log(total)[:, :, 0], axis=1) - np.add.reduce(shifted[rows[0], rows[1], target], axis=1)) / n
        probabilities /= total
        self._cache = (probabilities, rows, target)
        return loss

    def backward(self):
        grad, rows, target = self._cache
        grad[rows[0], rows[1], target] -= 1
        grad *= grad.dtype.type(1 / target.shape[1])
        return grad


class StackedMeanSquaredError(MeanSquaredError):
    """``MeanSquaredError`` per member: outputs (P, N, K); the losses are a (P,) array."""

    def forward(self, output, target):
        diff = output - target.reshape(output.shape)
        self._cache = diff
        size = diff[0].size
        return np.add.reduce((diff * diff).reshape(len(diff), -1), axis=1) / size

    def backward(self):
        diff = self._cache
        return diff * diff.dtype.type(2.0 / diff[0].size)


STACKED_LOSSES = {"cross_entropy": StackedCrossEntropy, "mse": StackedMeanSquaredError}


class StackedPenalty:
    """``regularization.add_penalty_gradient`` per member: ``l1``, ``l2`` hold the P strengths (None: no member
    has that term), made once into (P, 1, 1) columns of the weights' dtype."""

    def __init__(self, l1: np.ndarray | None, l2: np.ndarray | None, dtype):
        def column(values: np.ndarray) -> np.ndarray:
            return np.asarray(values, dtype=np.float64).astype(dtype).reshape(-1, 1, 1)

        self.l1 = None if l1 is None else column(l1)
        self.twice_l2 = None if l2 is None else column(2 * np.asarray(l2, dtype=np.float64))

    def add_gradient(self, weights: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for w, g in zip(weights, grads):
            if self.l1 is not None:
                g += self.l1 * np.sign(w)
            if self.twice_l2 is not None:
                g += self.twice_l2 * w


def clip_global_norm(grads: list[np.ndarray], max_norm: float) -> np.ndarray:
    """``regularization.clip_global_norm`` per member; returns the (P,) norms before clipping."""
    population = len(grads[0])
    squares = np.zeros(population)
    for g in grads:
        squares = squares + (g * g).reshape(population, -1).sum(axis=1).astype(np.float64)
    norms = np.sqrt(squares)
    scale = max_norm / (norms + 1e-6)
    for p in np.flatnonzero(scale < 1):
        for g in grads:
            g[p] *= g.dtype.type(scale[p])
    return norms


def stack_optimizer(specs: list[dict], params: np.ndarray, grads: np.ndarray):
    """One optimizer for a population: ``specs`` are the members' optimizer settings (``build_optimizer``'s
    keyword arguments, with ``name``), numbers becoming (P, 1) columns; the name and the switches (nesterov)
    must be the same for all."""
    from nnctl.engine.optim import OPTIMIZERS

    def column(values) -> np.ndarray:
        return np.array(values, dtype=np.float64).reshape(-1, 1)

    first, kwargs = specs[0], {}
    for key, value in first.items():
        values = [spec[key] for spec in specs]
        if key == "name" or isinstance(value, bool):
            if any(v != value for v in values):
                raise ValueError(f"the members of a population differ in optimizer {key}: {sorted(set(map(str, values)))}")
            if key != "name":
                kwargs[key] = value
        elif isinstance(value, (tuple, list)):
            kwargs[key] = tuple(column([v[i] for v in values]) for i in range(len(value)))
        else:
            kwargs[key] = column(values)
    return OPTIMIZERS[first["name"]]([params], [grads], **kwargs)

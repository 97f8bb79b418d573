"""Optimizers with the update rules of ``torch.optim`` (see shared/reference/formulas.md).

An optimizer updates a list of parameter arrays in place from the matching gradient arrays.
Its state (velocities, moments, step count) is a dict of arrays, so a checkpoint can hold it.
``lr`` is a plain attribute: a learning-rate schedule sets it before each epoch.

Every update is elementwise, so a population (``stacked.py``: P networks' parameters as one (P, n) array)
is updated by the same code with its hyperparameters as (P, 1) columns, each member exactly as alone;
whether a term is used at all (momentum, weight decay) is decided once, and is the same for all members.
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    name = ""
    #: names of the per-parameter state arrays, e.g. ("momentum_buffer",)
    slots: tuple[str, ...] = ()
    #: False: weight decay adds wd * x to the gradient (PyTorch's coupled form);
    #: True: the weights shrink by (1 - lr wd) before the step (AdamW).
    decoupled_weight_decay = False

    def __init__(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float, weight_decay: float = 0.0):
        self.params = params
        self.grads = grads
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.state = [{slot: np.zeros_like(p) for slot in self.slots} for p in params]
        self.decays = bool(np.any(weight_decay))

    def step(self) -> None:
        self.steps += 1
        for param, grad, state in zip(self.params, self.grads, self.state):
            if self.decays and self.decoupled_weight_decay:
                param *= param.dtype.type(1 - self.lr * self.weight_decay)
            elif self.decays:
                # the gradient of (weight_decay / 2) * ||x||^2
                grad = grad + param.dtype.type(self.weight_decay) * param
            self.update(param, grad, state)

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def scratch(self, param: np.ndarray) -> np.ndarray:
        """A work array shaped like ``param``, kept between steps (not state: it holds nothing to resume)."""
        buffers = self.__dict__.setdefault("_scratch", {})
        buffer = buffers.get(id(param))
        if buffer is None or buffer.shape != param.shape:
            buffer = buffers[id(param)] = np.empty_like(param)
        return buffer

    def state_dict(self) -> dict[str, np.ndarray]:
        arrays = {"steps": np.array(self.steps, dtype=np.int64)}
        for i, state in enumerate(self.state):
            for slot, value in state.items():
                arrays[f"{i}.{slot}"] = value
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        self.steps = int(arrays["steps"])
        for i, state in enumerate(self.state):
            for slot in state:
                state[slot][...] = arrays[f"{i}.{slot}"]


class SGD(Optimizer):
    """Slide 10, SGD with momentum: v <- rho v + grad; x <- x - lr v (PyTorch's form).

    The velocity starts as the first gradient.  With ``nesterov``, the step uses grad + rho v
    (the gradient "looked ahead" along the velocity).  Without momentum: x <- x - lr grad.
    """

    name = "sgd"
    slots = ("momentum_buffer",)

    def __init__(self, params, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov
        self.uses_momentum = bool(np.any(momentum))

    def update(self, param, grad, state):
        lr = param.dtype.type(self.lr)
        step = self.scratch(param)  # lr * direction, computed into a reused buffer
        if not self.uses_momentum:
            param -= np.multiply(grad, lr, out=step)
            return
        velocity = state["momentum_buffer"]
        rho = param.dtype.type(self.momentum)
        if self.steps == 1:
            velocity[...] = grad
        else:
            velocity *= rho
            velocity += grad
        if self.nesterov:
            np.multiply(velocity, rho, out=step)
            step += grad
            step *= lr
        else:
            np.multiply(velocity, lr, out=step)
        param -= step


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
    x <- x - lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)."""

    name = "adam"
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.betas = betas
        self.eps = eps

    def update(self, param, grad, state):
        t = param.dtype.type
        beta1, beta2 = self.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= t(beta1)
        m += t(1 - beta1) * grad
        v *= t(beta2)
        v += t(1 - beta2) * grad * grad
        m_hat = m / t(1 - beta1**self.steps)
        v_hat = v / t(1 - beta2**self.steps)
        param -= t(self.lr) * m_hat / (np.sqrt(v_hat) + t(self.eps))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): x <- x (1 - lr wd) before the Adam step."""

    name = "adamw"
    decoupled_weight_decay = True


class RMSProp(Optimizer):
    """RMSProp (Hinton's lecture 6e): v <- a v + (1-a) g^2;  x <- x - lr g / (sqrt(v) + eps).
    With momentum m: b <- m b + g / (sqrt(v) + eps);  x <- x - lr b (PyTorch's form)."""

    name = "rmsprop"
    slots = ("square_avg", "momentum_buffer")

    def __init__(self, params, grads, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.alpha = alpha
        self.eps = eps
        self.momentum = momentum
        self.uses_momentum = bool(np.any(momentum))

    def update(self, param, grad, state):
        t = param.dtype.type
        v = state["square_avg"]
        v *= t(self.alpha)
        v += t(1 - self.alpha) * grad * grad
        step = grad / (np.sqrt(v) + t(self.eps))
        if self.uses_momentum:
            buffer = state["momentum_buffer"]
            buffer *= t(self.momentum)
            buffer += step
            step = buffer
        param -= t(self.lr) * step


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011): s <- s + g^2;  x <- x - lr_t g / (sqrt(s) + eps),
    lr_t = lr / (1 + (t - 1) lr_decay)."""

    name = "adagrad"
    slots = ("sum",)

    def __init__(self, params, grads, lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.lr_decay = lr_decay
        self.eps = eps

    def update(self, param, grad, state):
        t = param.dtype.type
        s = state["sum"]
        s += grad * grad
        lr = self.lr / (1 + (self.steps - 1) * self.lr_decay)
        param -= t(lr) * grad / (np.sqrt(s) + t(self.eps))


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSProp, AdaGrad)}

"""Learning-rate schedules, stepped once per epoch as PyTorch's ``torch.optim.lr_scheduler`` are.

``lr(epoch)`` gives the learning rate for a 1-based epoch; ``observe(value)`` feeds the monitored metric
at the end of an epoch (only ReduceOnPlateau uses it).  State is plain numbers, for checkpoints.
"""

from __future__ import annotations

import math


class Schedule:
    def __init__(self, base_lr: float):
        self.base_lr = base_lr

    def lr(self, epoch: int) -> float:
        return self.base_lr

    def observe(self, value: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


Constant = Schedule


class Step(Schedule):
    """lr0 * gamma^floor((epoch - 1) / step_size)  (StepLR)."""

    def __init__(self, base_lr, step_size: int, gamma: float):
        super().__init__(base_lr)
        self.step_size, self.gamma = step_size, gamma

    def lr(self, epoch):
        return self.base_lr * self.gamma ** ((epoch - 1) // self.step_size)


class Exponential(Schedule):
    """lr0 * gamma^(epoch - 1)  (ExponentialLR)."""

    def __init__(self, base_lr, gamma: float):
        super().__init__(base_lr)
        self.gamma = gamma

    def lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch - 1)


class Cosine(Schedule):
    """min_lr + (lr0 - min_lr) (1 + cos(pi (epoch - 1) / period)) / 2  (CosineAnnealingLR, T_max = period)."""

    def __init__(self, base_lr, period: int, min_lr: float = 0.0):
        super().__init__(base_lr)
        self.period, self.min_lr = period, min_lr

    def lr(self, epoch):
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * (epoch - 1) / self.period)) / 2


class ReduceOnPlateau(Schedule):
    """Multiply the lr by ``factor`` once the monitored value (lower is better) has not improved by the
    relative ``threshold`` for more than ``patience`` epochs; then wait ``cooldown`` epochs (ReduceLROnPlateau,
    mode "min", threshold_mode "rel")."""

    def __init__(self, base_lr, factor=0.1, patience=10, threshold=1e-4, cooldown=0, min_lr=0.0, mode="min"):
        super().__init__(base_lr)
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.cooldown, self.min_lr, self.mode = cooldown, min_lr, mode
        self.current = base_lr
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def lr(self, epoch):
        return self.current

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1 - self.threshold)
        return value > self.best * (1 + self.threshold)

    def observe(self, value):
        if self.improved(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            reduced = max(self.current * self.factor, self.min_lr)
            if self.current - reduced > 1e-8:
                self.current = reduced
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0

    def state_dict(self):
        best = self.best if math.isfinite(self.best) else None  # None: nothing observed yet (JSON has no infinity)
        return {"current": self.current, "best": best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state):
        self.current = state["current"]
        self.best = state["best"] if state["best"] is not None else (math.inf if self.mode == "min" else -math.inf)
        self.bad_epochs, self.cooldown_left = state["bad_epochs"], state["cooldown_left"]

"""The training loop, and a run from config to finished run folder.

``run_training(loaded, out_dir)`` is what ``nnctl train`` does: load the data, build the model,
create the run folder, train epoch by epoch (metrics, checkpoints), evaluate on the test split with
the weights that represent the run (the best by the monitored metric, else the last), and write
summary.json.  Networks learn by backpropagation in ``Trainer``; the classic threshold models of the
lecture's first slides are evaluated (McCulloch-Pitts) or trained by the perceptron rule in
``PerceptronTrainer``.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import nnctl
from nnctl import build
from nnctl.config import LoadedConfig, PerceptronModel, PlaygroundData, monitor_mode
from nnctl.data import Dataset, Split, load_data
from nnctl.data.augment import Augmenter
from nnctl.data.preprocess import fit_preprocessor
from nnctl.engine.classic import Pocket, perceptron_epoch
from nnctl.engine.layers import BatchNorm
from nnctl.engine.regularization import add_penalty_gradient, clip_global_norm
from nnctl.errors import EXIT_DIVERGED
from nnctl.metrics import Head
from nnctl.runs import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RunFolder, create_run_dir, save_checkpoint, write_json
from nnctl.seeding import generator


class Reporter:
    """What the training loop tells the outside world; the CLI shows it (progress bar or plain lines)."""

    def start(self, run_dir: Path, total_epochs: int, num_params: int) -> None: ...

    def epoch(self, row: dict) -> None: ...

    def end(self) -> None: ...


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | diverged | converged | not_converged
    summary: dict
    message: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_DIVERGED if self.status == "diverged" else 0


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def run_training(
    loaded: LoadedConfig,
    out_dir: Path,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
) -> RunResult:
    config = loaded.config
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    run = RunFolder(create_run_dir(out_dir, config.name))
    run.config_path.write_text(config.to_yaml(), encoding="utf-8")
    run.update_run_info(
        status="running",
        started=now(),
        command=command if command is not None else sys.argv,
        seed=config.seed,
        versions={"nnctl": nnctl.__version__, "numpy": np.__version__, "python": platform.python_version()},
    )
    trainer_class = PerceptronTrainer if isinstance(config.model, PerceptronModel) else Trainer
    try:
        # overflow is expected when training diverges; the loop detects non-finite losses itself
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = trainer_class(loaded, data, run, reporter or Reporter()).fit()
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.update_run_info(status=status, ended=now(), error=str(exc) or type(exc).__name__)
        raise
    run.update_run_info(status=result.status, ended=now(), **({"message": result.message} if result.message else {}))
    return result


def describe_inputs(config, data: Dataset) -> dict:
    """What a checkpoint records about the model's inputs and outputs, so that ``predict`` can prepare new rows
    without the training data: the task, class names, feature names, image shape and raw input columns."""
    return {
        "task": data.task,
        "class_names": data.class_names,
        "feature_names": data.feature_names,
        "n_features": data.n_features,
        "image_shape": list(data.image_shape) if data.image_shape else None,
        "input_columns": data.input_columns,
        "playground_features": list(config.data.features) if isinstance(config.data, PlaygroundData) else None,
    }


class BestTracker:
    """The best value of a monitored metric so far, and how many epochs have passed without improving
    on it by more than ``min_delta`` (Keras's EarlyStopping and ModelCheckpoint(save_best_only))."""

    def __init__(self, monitor: str | None, min_delta: float = 0.0):
        self.monitor = monitor
        self.sign = 1.0 if monitor is None or monitor_mode(monitor) == "min" else -1.0
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch: int | None = None
        self.waited = 0

    def update(self, row: dict) -> bool:
        """True when this epoch is the new best."""
        if self.monitor is None:
            return False
        value = self.sign * row[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, row["epoch"], 0
            return True
        self.waited += 1
        return False

    @property
    def best_value(self) -> float | None:
        return None if self.best_epoch is None else self.sign * self.best


class Trainer:
    """Minibatch training by backpropagation (slide 9): for each batch, forward, loss, backward, step."""

    def __init__(self, loaded: LoadedConfig, data: Dataset, run: RunFolder, reporter: Reporter):
        self.config = config = loaded.config
        self.run = run
        self.reporter = reporter
        self.task = data.task
        self.data_description = describe_inputs(config, data)
        # slide 8: normalization is fitted on the training rows only, then applied to every split
        self.preprocessor = fit_preprocessor(config.data.normalize, data.train.x)
        self.train, self.val, self.test = (self.prepare(s) for s in (data.train, data.val, data.test))
        self.model = build.build_model(config, data.n_features, config.seed)
        units = build.output_units(config.model, data.n_features)
        self.head = Head(data.task, config.loss, units, classic=config.is_classic)
        self.shuffle_rng = generator(config.seed, "shuffle")
        self.augment = Augmenter(config.data.augment, data.image_shape, generator(config.seed, "augment"))
        if config.is_classic:
            return
        self.optimizer = build.build_optimizer(config, self.model)
        self.schedule = build.build_schedule(config)
        self.weights, self.weight_grads = build.regularized_weights(self.model)
        self.grads = [g for _, _, g in self.model.named_params()]
        self.has_batchnorm = any(isinstance(layer, BatchNorm) for layer in self.model.layers)
        stopping = config.training.early_stopping
        default_monitor = "val_loss" if self.val is not None else None
        self.tracker = BestTracker(stopping.monitor if stopping else default_monitor, stopping.min_delta if stopping else 0.0)
        self.best_state: dict | None = None

    def prepare(self, split: Split | None) -> Split | None:
        return None if split is None else Split(self.preprocessor.apply(split.x), split.y)

    # ------------------------------------------------------------------------------------- the loop

    def fit(self) -> RunResult:
        if self.config.is_classic:
            return self.evaluate_fixed_model()
        training = self.config.training
        self.reporter.start(self.run.path, training.epochs, self.model.num_params())
        rows: list[dict] = []
        last_good = self.snapshot(0)
        last_saved = None
        status, stop_reason = "completed", "completed all epochs"
        try:
            for epoch in range(1, training.epochs + 1):
                row = self.train_epoch(epoch)
                if not all(math.isfinite(v) for k, v in row.items() if k.endswith("loss")):
                    status = "diverged"
                    stop_reason = f"the loss became non-finite in epoch {epoch}"
                    break
                rows.append(row)
                self.run.append_metrics(row)
                self.reporter.epoch(row)
                self.schedule_observe(row)
                if self.tracker.update(row):
                    self.best_state = self.snapshot(epoch)
                    self.save("best", self.best_state)
                last_good = self.snapshot(epoch)
                if epoch % training.checkpoint_every == 0:
                    self.save("last", last_good)
                    last_saved = epoch
                stopping = training.early_stopping
                if stopping and self.tracker.waited >= stopping.patience:
                    stop_reason = (
                        f"early stopping: {stopping.monitor} did not improve for {stopping.patience} epochs "
                        f"(best {self.tracker.best_value:.6g} in epoch {self.tracker.best_epoch})"
                    )
                    break
        finally:
            self.reporter.end()
        if status == "diverged":
            self.restore(last_good)
        if last_saved != last_good["epoch"]:
            self.save("last", last_good)
        stopping = training.early_stopping
        use_best = self.best_state is not None and (stopping is None or stopping.restore_best)
        if use_best:
            self.restore(self.best_state)
        summary = self.summary(status, stop_reason, rows, "best" if use_best else "last")
        message = ""
        if status == "diverged":
            message = (
                f"training diverged: {stop_reason}; kept the last good weights (epoch {last_good['epoch']}) "
                f"in {self.run.checkpoint('last')}; try a smaller optimizer.lr"
            )
        return RunResult(self.run.path, status, summary, message)

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training rows in shuffled minibatches.

        train_loss is the mean of the minibatch losses over the epoch, weighted by batch size (what Keras
        reports; without the regularization penalty, so that it compares with val_loss); train_seconds
        counts the training steps alone, not the evaluation that follows."""
        training = self.config.training
        lr = self.optimizer.lr = self.schedule.lr(epoch)
        started = time.perf_counter()
        n = len(self.train)
        order = self.shuffle_rng.permutation(n) if training.shuffle else np.arange(n)
        x, y = self.train.x[order], self.train.y[order]  # one gather per epoch; batches are views
        targets = self.head.targets(y)
        total_loss, correct, seen = 0.0, 0, 0
        for start in range(0, n, training.batch_size):
            stop = start + training.batch_size
            xb, tb = x[start:stop], targets[start:stop]
            if len(xb) == 1 and self.has_batchnorm:
                continue  # a batch of one row has no variance to normalize with
            output, batch_loss = self.step(xb, tb)
            if not math.isfinite(batch_loss):
                total_loss = batch_loss
                break
            total_loss += batch_loss * len(xb)
            seen += len(xb)
            if self.task == "classification":
                correct += int(np.count_nonzero(self.head.predict(output) == y[start:stop]))
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch, "lr": lr, "train_loss": total_loss / max(seen, 1)}
        if self.task == "classification":
            row["train_accuracy"] = correct / max(seen, 1)
        if self.val is not None and math.isfinite(total_loss):
            row.update({f"val_{k}": v for k, v in self.head.evaluate(self.model, self.val.x, self.val.y).items()})
        row["train_seconds"] = train_seconds
        return row

    def step(self, xb: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, float]:
        """forward -> loss -> backward -> (penalty gradient, clipping) -> optimizer step."""
        if self.augment.active:
            xb = self.augment(xb)
        output = self.model.forward(xb, training=True)
        batch_loss = self.head.loss.forward(output, tb)
        if not math.isfinite(batch_loss):
            return output, batch_loss
        self.model.backward(self.head.loss.backward())
        penalty = self.config.model.regularization
        if penalty.l1 or penalty.l2:
            add_penalty_gradient(self.weights, self.weight_grads, penalty.l1, penalty.l2)
        if self.config.training.grad_clip:
            clip_global_norm(self.grads, self.config.training.grad_clip)
        self.optimizer.step()
        return output, batch_loss

    def schedule_observe(self, row: dict) -> None:
        monitor = getattr(self.config.training.lr_schedule, "monitor", None)
        if monitor:
            self.schedule.observe(row[monitor])

    # ------------------------------------------------------------------------------ state and files

    def snapshot(self, epoch: int) -> dict:
        return {"epoch": epoch, "model": {k: v.copy() for k, v in self.model.state_dict().items()}}

    def restore(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot["model"])

    def save(self, which: str, snapshot: dict) -> None:
        arrays = {f"model/{name}": value for name, value in snapshot["model"].items()}
        arrays.update({f"preprocess/{name}": value for name, value in self.preprocessor.arrays.items()})
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "nnctl_version": nnctl.__version__,
            "epoch": snapshot["epoch"],
            **self.data_description,
            "normalize": self.preprocessor.kind,
            "config": self.config.to_dict(),
        }
        save_checkpoint(self.run.checkpoint(which), arrays, meta)

    def summary(self, status: str, stop_reason: str, rows: list[dict], checkpoint: str, **extra) -> dict:
        """summary.json: how the run ended, its last epoch's metrics, and test metrics with ``checkpoint``."""
        tracker = getattr(self, "tracker", None)
        summary = {
            "status": status,
            "stop_reason": stop_reason,
            "epochs_run": len(rows),
            "best_epoch": tracker.best_epoch if tracker else None,
            "monitor": tracker.monitor if tracker else None,
            "checkpoint": f"checkpoints/{checkpoint}.npz",
            "train_seconds_total": sum(row.get("train_seconds", 0.0) for row in rows),
            **extra,
        }
        if rows:
            summary.update({k: v for k, v in rows[-1].items() if k.startswith(("train_", "val_")) and k != "train_seconds"})
        if self.test is not None:
            summary.update({f"test_{k}": v for k, v in self.head.evaluate(self.model, self.test.x, self.test.y).items()})
        write_json(self.run.summary_path, summary)
        return summary

    # ------------------------------------------------------------------------ fixed threshold models

    def evaluate_fixed_model(self) -> RunResult:
        """McCulloch-Pitts units have fixed weights: nothing to train, so the run evaluates them."""
        self.reporter.start(self.run.path, 0, 0)
        self.reporter.end()
        snapshot = self.snapshot(0)
        self.save("last", snapshot)
        train_metrics = {f"train_{k}": v for k, v in self.head.evaluate(self.model, self.train.x, self.train.y).items()}
        summary = self.summary("completed", "no trainable parameters: the model was evaluated as given", [], "last", **train_metrics)
        return RunResult(self.run.path, "completed", summary)


class PerceptronTrainer(Trainer):
    """Rosenblatt's perceptron (slide 4): the perceptron rule, row by row, until an epoch makes no mistake.

    Stops early with status ``converged`` after the first epoch without a mistake.  When the classes are
    not linearly separable (XOR) that never happens: the run ends ``not_converged`` and keeps the best
    weights it saw (Gallant's pocket algorithm, ``engine.classic.Pocket``).
    """

    def fit(self) -> RunResult:
        epochs = self.config.training.epochs
        lr = self.config.optimizer.lr
        unit = self.model.layers[0]
        self.reporter.start(self.run.path, epochs, unit.buffers["weight"].size + 1)
        rows: list[dict] = []
        pocket = Pocket(unit, self.train.x, self.train.y)
        converged_epoch = None
        try:
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                n = len(self.train)
                order = self.shuffle_rng.permutation(n) if self.config.training.shuffle else np.arange(n)
                mistakes = perceptron_epoch(unit, self.train.x[order], self.train.y[order], lr, pocket)
                seconds = time.perf_counter() - started
                row = {"epoch": epoch, "lr": lr, "mistakes": mistakes, "train_loss": mistakes / n}
                row["train_accuracy"] = self.head.evaluate(self.model, self.train.x, self.train.y)["accuracy"]
                if self.val is not None:
                    row.update({f"val_{k}": v for k, v in self.head.evaluate(self.model, self.val.x, self.val.y).items()})
                row["train_seconds"] = seconds
                rows.append(row)
                self.run.append_metrics(row)
                self.reporter.epoch(row)
                if mistakes == 0:
                    converged_epoch = epoch
                    break
        finally:
            self.reporter.end()
        self.save("last", self.snapshot(len(rows)))
        if converged_epoch is not None:
            status, checkpoint, message = "converged", "last", ""
            stop_reason = f"converged: epoch {converged_epoch} made no mistake"
        else:
            status, checkpoint = "not_converged", "best"
            stop_reason = f"not converged: every one of {epochs} epochs made mistakes"
            unit.buffers["weight"][...] = pocket.weight
            unit.buffers["threshold"][...] = pocket.threshold
            self.save("best", self.snapshot(len(rows)))
            message = (
                f"the perceptron did not converge in {epochs} epochs: the classes are not linearly separable, "
                f"and a single threshold unit cannot separate them (as it cannot separate XOR); "
                f"kept the best weights seen (pocket algorithm), "
                f"training accuracy {pocket.accuracy:.4g}"
            )
        summary = self.summary(
            status,
            stop_reason,
            rows,
            checkpoint,
            converged_epoch=converged_epoch,
            best_train_accuracy=1.0 if converged_epoch else pocket.accuracy,
            updates=int(sum(row["mistakes"] for row in rows)),
        )
        return RunResult(self.run.path, status, summary, message)

"""The training loop, and a run from config to finished run folder.

``run_training(loaded, out_dir)`` is what ``nnctl train`` does: load the data, build the model,
create the run folder, train epoch by epoch (metrics, checkpoints), evaluate on the test split with
the best (or last) weights, and write summary.json.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import nnctl
from nnctl import build
from nnctl.config import LoadedConfig
from nnctl.data import Dataset, load_data
from nnctl.errors import EXIT_DIVERGED, NnctlError
from nnctl.metrics import evaluate, loss_targets, predict_classes
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
    status: str  # completed | diverged
    summary: dict
    message: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_DIVERGED if self.status == "diverged" else 0


@dataclass
class Progress:
    """What the loop knows between epochs."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int | None = None
    stop_reason: str = "completed all epochs"
    rows: list[dict] = field(default_factory=list)


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def run_training(
    loaded: LoadedConfig,
    out_dir: Path,
    name: str | None = None,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
) -> RunResult:
    config = loaded.config
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    run = RunFolder(create_run_dir(out_dir, name or config.name))
    run.config_path.write_text(config.to_yaml(), encoding="utf-8")
    run.update_run_info(
        status="running",
        started=now(),
        command=command if command is not None else sys.argv,
        seed=config.seed,
        versions={"nnctl": nnctl.__version__, "numpy": np.__version__, "python": platform.python_version()},
    )
    try:
        trainer = Trainer(loaded, data, run, reporter or Reporter())
        result = trainer.fit()
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.update_run_info(status=status, ended=now(), error=str(exc) or type(exc).__name__)
        raise
    run.update_run_info(status=result.status, ended=now(), **({"error": result.message} if result.message else {}))
    return result


class Trainer:
    def __init__(self, loaded: LoadedConfig, data: Dataset, run: RunFolder, reporter: Reporter):
        self.config = config = loaded.config
        self.data = data
        self.run = run
        self.reporter = reporter
        self.model = build.build_model(config, data.n_features, config.seed)
        self.loss = build.build_loss(config)
        self.optimizer = build.build_optimizer(config, self.model)
        self.output_units = config.model.layers[-1].units
        self.shuffle_rng = generator(config.seed, "shuffle")
        self.progress = Progress()

    def targets(self, y: np.ndarray) -> np.ndarray:
        return loss_targets(y, self.config.loss, self.output_units, self.data.task)

    # ------------------------------------------------------------------------------------- the loop

    def fit(self) -> RunResult:
        epochs = self.config.training.epochs
        self.reporter.start(self.run.path, epochs, self.model.num_params())
        last_good = self.snapshot()
        diverged = False
        try:
            for epoch in range(1, epochs + 1):
                self.progress.epoch = epoch
                row = self.train_epoch(epoch)
                if not all(math.isfinite(v) for k, v in row.items() if k.endswith(("loss", "accuracy"))):
                    diverged = True
                    self.progress.stop_reason = f"the loss became non-finite in epoch {epoch}"
                    break
                self.run.append_metrics(row)
                self.progress.rows.append(row)
                self.reporter.epoch(row)
                self.track_best(row, epoch)
                last_good = self.snapshot()
                if epoch % self.config.training.checkpoint_every == 0 or epoch == epochs:
                    self.save("last", epoch)
        finally:
            self.reporter.end()
        if diverged:
            self.restore(last_good)
            self.save("last", last_good["epoch"])
        return self.finish(diverged)

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training rows in shuffled minibatches: forward, loss, backward, step.

        train_loss is the mean of the minibatch losses over the epoch, weighted by batch size (what Keras reports);
        train_seconds counts these steps alone, not the evaluation that follows."""
        train = self.data.train
        batch_size = self.config.training.batch_size
        started = time.perf_counter()
        order = self.shuffle_rng.permutation(len(train)) if self.config.training.shuffle else np.arange(len(train))
        x, y = train.x[order], train.y[order]
        targets = self.targets(y)
        total_loss = 0.0
        correct = 0
        classification = self.data.task == "classification"
        for start in range(0, len(x), batch_size):
            xb, tb = x[start : start + batch_size], targets[start : start + batch_size]
            output = self.model.forward(xb, training=True)
            batch_loss = self.loss.forward(output, tb)
            if not math.isfinite(batch_loss):
                total_loss = batch_loss
                break
            self.model.backward(self.loss.backward())
            self.optimizer.step()
            total_loss += batch_loss * len(xb)
            if classification:
                correct += int(np.count_nonzero(predict_classes(output) == y[start : start + batch_size]))
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch, "lr": self.optimizer.lr, "train_loss": total_loss / len(x)}
        if classification:
            row["train_accuracy"] = correct / len(x)
        if self.data.val is not None and math.isfinite(total_loss):
            for key, value in self.evaluate(self.data.val).items():
                row[f"val_{key}"] = value
        row["train_seconds"] = train_seconds
        return row

    def track_best(self, row: dict, epoch: int) -> None:
        if "val_loss" in row and row["val_loss"] < self.progress.best_val_loss:
            self.progress.best_val_loss = row["val_loss"]
            self.progress.best_epoch = epoch
            self.best_state = self.snapshot()
            self.save("best", epoch)

    # ------------------------------------------------------------------------------ state and files

    def evaluate(self, split) -> dict:
        return evaluate(self.model, self.loss, split.x, split.y, self.targets(split.y), self.data.task)

    def snapshot(self) -> dict:
        state = {name: value.copy() for name, value in self.model.state_dict().items()}
        return {"epoch": self.progress.epoch, "model": state}

    def restore(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot["model"])

    def checkpoint_meta(self, epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "nnctl_version": nnctl.__version__,
            "epoch": epoch,
            "task": self.data.task,
            "feature_names": self.data.feature_names,
            "class_names": self.data.class_names,
            "config": self.config.to_dict(),
        }

    def save(self, which: str, epoch: int) -> None:
        arrays = {f"model/{name}": value for name, value in self.model.state_dict().items()}
        save_checkpoint(self.run.checkpoint(which), arrays, self.checkpoint_meta(epoch))

    def finish(self, diverged: bool) -> RunResult:
        """Test metrics with the checkpoint that represents the run: best by validation loss, else last."""
        which = "best" if self.progress.best_epoch is not None else "last"
        if which == "best":
            self.restore(self.best_state)
        summary = {
            "status": "diverged" if diverged else "completed",
            "stop_reason": self.progress.stop_reason,
            "epochs_run": len(self.progress.rows),
            "best_epoch": self.progress.best_epoch,
            "checkpoint": f"checkpoints/{which}.npz",
            "train_seconds_total": sum(row["train_seconds"] for row in self.progress.rows),
        }
        if self.progress.rows:
            last_row = self.progress.rows[-1]
            summary.update({k: v for k, v in last_row.items() if k.startswith(("train_", "val_")) and k != "train_seconds"})
        if self.data.test is not None:
            summary.update({f"test_{k}": v for k, v in self.evaluate(self.data.test).items()})
        write_json(self.run.summary_path, summary)
        message = ""
        if diverged:
            message = (
                f"training diverged: {self.progress.stop_reason}; kept the last good weights "
                f"(epoch {summary['epochs_run']}) in {self.run.checkpoint('last')}; try a smaller optimizer.lr"
            )
        return RunResult(self.run.path, summary["status"], summary, message)

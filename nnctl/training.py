"""The training loop, and a run from config to finished run folder.

``run_training(loaded, out_dir)`` is what ``nnctl train`` does: load the data, build the model,
create the run folder, train epoch by epoch (metrics, checkpoints), evaluate on the test split with
the final weights -- or, when the config asks for model selection (``training.select_best``,
``early_stopping.restore_best``), the best epoch's -- and write summary.json, which says which epoch was
scored and why.  ``resume_training`` continues a run (``nnctl.resume`` checks it may).

Networks learn by backpropagation in ``Trainer``; the classic threshold models of the lecture's first
slides are evaluated (McCulloch-Pitts) or trained by the perceptron rule in ``PerceptronTrainer``.

Everything a run's future depends on -- weights, optimizer moments, the schedule, every random
generator, the best-epoch trackers, even the position inside an interrupted epoch -- is part of
the ``TrainState`` that checkpoints hold, so a resumed run is bit-identical to one never interrupted.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import threading
import time
from copy import copy
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import nnctl
from nnctl import build
from nnctl.config import LoadedConfig, PerceptronModel, PlaygroundData, monitor_mode, monitored_metrics
from nnctl.data import Dataset, Split, load_data
from nnctl.data.augment import Augmenter
from nnctl.data.preprocess import fit_preprocessor
from nnctl.engine.classic import Pocket, perceptron_epoch
from nnctl.engine.layers import BatchNorm, Dropout
from nnctl.engine.regularization import add_penalty_gradient, clip_global_norm
from nnctl.errors import EXIT_DIVERGED, EXIT_FAILED, NnctlError
from nnctl.loggers import check_installed, make_loggers
from nnctl.metrics import Head
from nnctl.runs import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    STOP_REQUEST,
    FileWriter,
    RunFolder,
    RunLock,
    atomic_write_bytes,
    atomic_write_text,
    checkpoint_bytes,
    create_exact_run_dir,
    create_run_dir,
    write_json,
)
from nnctl.seeding import generator

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: the arrays of the best epoch's model inside last.npz (with model selection), so resume never needs best.npz
BEST_PREFIX = "best_model/"
#: training data up to this size is shuffled into one new copy per epoch; larger data batch by batch
EPOCH_GATHER_BYTES = 64 * 2**20


class Reporter:
    """What the training loop tells the outside world; the CLI shows it (progress bar or plain lines)."""

    def start(self, run_dir: Path, total_epochs: int, num_params: int, first_epoch: int = 1) -> None: ...

    def epoch(self, row: dict) -> None: ...

    def end(self) -> None: ...


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | diverged | converged | not_converged | interrupted
    summary: dict
    message: str = ""
    signal_number: int | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return EXIT_SIGNAL.get(self.signal_number, 130)
        return EXIT_DIVERGED if self.status == "diverged" else 0


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ starting a run


def run_training(
    loaded: LoadedConfig,
    out_dir: Path,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    run_dir: Path | None = None,
) -> RunResult:
    """Train into a new folder under ``out_dir`` (or exactly ``run_dir``, which must not exist yet)."""
    config = loaded.config
    check_installed(loaded)
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    build.check_model_size(loaded, data.n_features)
    check_monitored_metrics_defined(loaded, data)
    run = RunFolder(create_run_dir(out_dir, config.name) if run_dir is None else create_exact_run_dir(run_dir))
    with RunLock(run.path):
        atomic_write_text(run.config_path, config.to_yaml())
        run.update_run_info(
            status="running",
            started=now(),
            command=command if command is not None else sys.argv,
            seed=config.seed,
            versions={"nnctl": nnctl.__version__, "numpy": np.__version__, "python": platform.python_version()},
        )
        trainer_class = PerceptronTrainer if isinstance(config.model, PerceptronModel) else Trainer
        trainer = trainer_class(loaded, data, run, reporter or Reporter())
        run.update_run_info(blas_threads=trainer.threads)
        return _run(trainer, run)


def check_monitored_metrics_defined(loaded: LoadedConfig, data: Dataset) -> None:
    """R² divides by the variance of the targets: on a split whose targets are all equal it is undefined,
    and a run that monitors it (early stopping, best-epoch selection, a plateau schedule) could not work."""
    for path, monitor in monitored_metrics(loaded.config.training):
        if monitor.endswith("_r2"):
            split = data.split(monitor.split("_")[0])
            if split is not None and len(split) and np.ptp(split.y.astype(np.float64)) == 0:
                raise loaded.error(
                    path, f"{monitor} is undefined for this data: every {monitor.split('_')[0]} target is {split.y[0]!r}; monitor val_loss instead"
                )


def resume_training(loaded: LoadedConfig, run: RunFolder, reporter: Reporter | None = None, command=None, checkpoint=None) -> RunResult:
    """Continue ``run`` from ``checkpoint`` (the arrays and metadata of checkpoints/last.npz, whose config the
    caller, ``nnctl.resume``, has checked), or from the start when the run was killed before its first one.
    A run whose epochs are all done but whose summary is missing gets its summary written."""
    config = loaded.config
    if config.is_classic:
        raise NnctlError(f"{run.path}: a {config.model.type} run has nothing to resume (it trains in well under a second): train it again")
    check_installed(loaded)
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    check_monitored_metrics_defined(loaded, data)
    trainer = Trainer(loaded, data, run, reporter or Reporter())
    if checkpoint is not None:
        trainer.load_checkpoint_state(*checkpoint)
    summary = run.read_summary()
    has_final_summary = summary is not None and summary.get("status") != "interrupted"
    all_epochs_done = trainer.state.progress is None and (trainer.state.epoch >= config.training.epochs or trainer.early_stopping_reason())
    if all_epochs_done and has_final_summary:
        if trainer.early_stopping_reason():
            raise NnctlError(f"{run.path}: the run ended by early stopping ({trainer.early_stopping_reason()}); there is nothing to resume")
        raise NnctlError(f"{run.path}: the run already finished its {config.training.epochs} epochs; raise training.epochs to train longer")
    rows = [row for row in run.read_metrics() if row["epoch"] <= trainer.state.epoch]
    if [row["epoch"] for row in rows] != list(range(1, trainer.state.epoch + 1)):
        raise NnctlError(f"{run.metrics_jsonl_path}: the metrics log lacks rows of epochs 1-{trainer.state.epoch}, which the checkpoint covers")
    run.rewrite_metrics(rows)  # rows written after the checkpoint are recomputed, never duplicated
    trainer.rows = rows
    info = run.read_run_info()
    trainer.threads = info.get("blas_threads", trainer.threads)  # the run's own setting (a fixed count: the same bits)
    resumes = info.get("resumes", []) + [{"at": now(), "from_epoch": trainer.state.epoch, "command": command or sys.argv}]
    run.update_run_info(status="running", resumes=resumes, blas_threads=trainer.threads)
    atomic_write_text(run.config_path, config.to_yaml())
    if checkpoint is not None:
        trainer.save("last", trainer.snapshot())  # with the config just accepted (resume --force may change it)
    run.summary_path.unlink(missing_ok=True)  # it described the run before this resume; a new one is written
    return _run(trainer, run)


def blas_threads(config, n_features: int) -> int | str:
    """``training.threads``: a count, or "auto", which follows the machine's load during the run (nnctl.threads)
    and is 1 for a model whose largest product per batch is too small to split (a Playground-size network).
    run.json records it and resume reuses it; BLAS results differ in the last bits between thread counts,
    so only a fixed count repeats bit for bit whatever the load."""
    from nnctl import threads

    work = config.training.batch_size * build.largest_layer_product(config.model, n_features)
    return threads.resolve(config.training.threads, work)


def _run(trainer: "Trainer", run: RunFolder) -> RunResult:
    from nnctl.threads import training_threads

    try:
        # overflow is expected when training diverges; the loop detects non-finite losses itself
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), StopOnSignal(trainer), training_threads(
            trainer.threads, run
        ):
            result = trainer.fit()
        if trainer.config.training.plots and result.status != "interrupted":
            from nnctl.plots import write_run_plots

            write_run_plots(run.path)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed"
        if isinstance(exc, OSError) or getattr(exc, "exit_code", None) == EXIT_FAILED:
            exc = NnctlError(f"{exc if isinstance(exc, NnctlError) else os_error_text(exc)}; {trainer.where_it_stands()}", EXIT_FAILED)
        try:
            run.update_run_info(status=status, ended=now(), error=str(exc) or type(exc).__name__)
        except OSError:
            pass  # e.g. the disk is full: the original error is the one to report
        if isinstance(exc, NnctlError):
            raise exc from None
        raise
    if not result.message:
        result.message = auto_threads_note(trainer, run)
    # a finished run no longer carries the message or error of an earlier interruption or failure
    run.update_run_info(remove=("message", "error"), status=result.status, ended=now(), **({"message": result.message} if result.message else {}))
    return result


def auto_threads_note(trainer: "Trainer", run: RunFolder) -> str:
    """Say so when ``threads: auto`` changed the thread count during the run: the numbers then depend on the
    machine's load (BLAS results differ in their last bits between thread counts)."""
    used = run.read_run_info().get("auto_threads") if trainer.threads == "auto" else None
    if not used or len(used.get("seconds", {})) < 2:
        return ""
    counts = ", ".join(f"{n} for {s:g} s" for n, s in used["seconds"].items())
    return (
        f"threads: auto followed the machine's load and ran BLAS on {counts}; results differ in their last bits "
        "between thread counts, so set training.threads to a number for bit-identical reruns"
    )


def os_error_text(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)


class StopOnSignal:
    """SIGINT / SIGTERM ask the loop to stop after the current step (it then checkpoints and reports how to
    resume); a second signal stops at once, with the last checkpoint still valid (writes are atomic)."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.previous = {}

    def handle(self, signum, frame):
        if self.trainer.stop_signal is not None:
            raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(EXIT_SIGNAL[signum])
        self.trainer.stop_signal = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_SIGNAL:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


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


# ------------------------------------------------------------------------------------ the run's state


class BestTracker:
    """The best value of a monitored metric so far, and how many epochs have passed without improving
    on it by more than ``min_delta`` (Keras's EarlyStopping and ModelCheckpoint(save_best_only)).
    An undefined value (NaN) is never an improvement."""

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        self.monitor = monitor
        self.mode = monitor_mode(monitor, mode)
        self.sign = 1.0 if self.mode == "min" else -1.0
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch: int | None = None
        self.waited = 0

    def update(self, row: dict) -> bool:
        """True when this epoch is the new best."""
        value = self.sign * row[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, row["epoch"], 0
            return True
        self.waited += 1
        return False

    @property
    def best_value(self) -> float | None:
        return None if self.best_epoch is None else self.sign * self.best

    def state_dict(self) -> dict:
        best = self.best if math.isfinite(self.best) else None  # None: no defined value yet (JSON has no infinity)
        return {"best": best, "best_epoch": self.best_epoch, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        self.best = math.inf if state["best"] is None else state["best"]
        self.best_epoch, self.waited = state["best_epoch"], state["waited"]


@dataclass
class EpochProgress:
    """Where an epoch stands after some of its steps: the row order it uses and its running sums."""

    epoch: int
    order: np.ndarray
    next_start: int = 0
    total_loss: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class TrainState:
    """The numbers (besides arrays) that a checkpoint carries so that a resumed run continues exactly."""

    epoch: int = 0  # completed epochs
    lr_scale: float = 1.0  # lowered by each divergence rollback
    rollbacks: list = field(default_factory=list)
    progress: EpochProgress | None = None  # an epoch interrupted part-way


class Interrupted(Exception):
    pass


def train_step(model, loss, optimizer, xb, tb, penalty=None, weights=(), weight_grads=(), grad_clip=None):
    """One minibatch step: forward -> loss -> backward -> (L1/L2 penalty gradient, clipping) -> optimizer step.
    Returns the network's output and the batch loss; a non-finite loss skips the update.  (The optimizer
    works on one flat gradient vector, which is what gets clipped.)"""
    output = model.forward(xb, training=True)
    batch_loss = loss.forward(output, tb)
    if not math.isfinite(batch_loss):
        return output, batch_loss
    model.backward(loss.backward(), input_grad=False)
    if penalty:
        add_penalty_gradient(weights, weight_grads, *penalty)
    if grad_clip:
        clip_global_norm(optimizer.grads, grad_clip)
    optimizer.step()
    return output, batch_loss


# ---------------------------------------------------------------------------------- the training loop


class Trainer:
    """Minibatch training by backpropagation (slide 9): for each batch, forward, loss, backward, step."""

    def __init__(self, loaded: LoadedConfig, data: Dataset, run: RunFolder, reporter: Reporter):
        self.config = config = loaded.config
        self.run = run
        self.reporter = reporter
        self.writer = FileWriter()  # writes checkpoints as they come; a population shares one that writes in the background
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
        self.state = TrainState()
        self.rows: list[dict] = []
        self.stop_signal: int | None = None
        self.stop_requested = False  # stopped by a stop-requested file rather than by a signal
        self._config_as_dict: tuple = (None, None)  # (config, its dict): see _config_dict
        self.threads = blas_threads(config, data.n_features)
        self.last_saved_epoch: int | None = None  # the epoch checkpoints/last.npz holds
        self.loggers = make_loggers(config, run.path)  # training.loggers (nnctl.loggers); usually none
        if config.is_classic:
            return
        params, grads = self.model.flatten_parameters()  # one vector each: a few NumPy calls per update
        self.optimizer = build.build_optimizer(config, [params], [grads])
        self.schedule = build.build_schedule(config)
        self.weights, self.weight_grads = build.regularized_weights(self.model)
        regularization = config.model.regularization
        self.penalty = (regularization.l1, regularization.l2) if regularization.l1 or regularization.l2 else None
        self.grad_clip = config.training.grad_clip
        self.has_batchnorm = any(isinstance(layer, BatchNorm) for layer in self.model.layers)
        self.dropout_rng = next((layer.rng for layer in self.model.layers if isinstance(layer, Dropout)), None)
        # Which weights score the test set is the user's choice: the final ones unless training.select_best or
        # early_stopping.restore_best asks for the best epoch by a monitored metric (then kept in best.npz).
        stopping, select = config.training.early_stopping, config.training.select_best
        self.stopper = BestTracker(stopping.monitor, stopping.mode, stopping.min_delta) if stopping else None
        if stopping and stopping.restore_best:
            self.selector, self.selected_by = self.stopper, "early_stopping.restore_best"
        elif select:
            self.selector, self.selected_by = BestTracker(select.monitor, select.mode), "training.select_best"
        else:
            self.selector, self.selected_by = None, None
        self.best_state: dict | None = None

    def prepare(self, split: Split | None) -> Split | None:
        return None if split is None else Split(self.preprocessor.apply(split.x), split.y)

    def fit(self) -> RunResult:
        if self.config.is_classic:
            return self.evaluate_fixed_model()
        self.start()
        try:
            while self.wants_epoch():
                try:
                    if self.stop_signal is not None or self.stop_requested_now():
                        raise Interrupted
                    row = self.train_epoch()
                except Interrupted:
                    return self.interrupted()
                if not self.accept_epoch(row):
                    break
        finally:
            self.close_logs()
        return self.end()

    def stop_requested_now(self) -> bool:
        """Whether a sweep's pruner asks this run to stop (a ``stop-requested`` file): it then stops as a SIGTERM
        would stop it."""
        if self.run.take_stop_request():
            self.stop_signal, self.stop_requested = signal.SIGTERM, True
        return self.stop_requested

    # The loop in four parts, so that a population (``population.py``) can drive each member's epochs.

    def start(self) -> None:
        """Before the first epoch: the progress display and loggers, the last good state, an epoch-0 checkpoint."""
        self.open_logs(self.config.training.epochs, self.model.num_params())
        self.last_good = self.snapshot()
        if self.last_saved_epoch is None:
            self.save("last", self.last_good)  # epoch 0: a run killed before its first epoch resumes from the start
        self.status, self.stop_reason = "completed", "completed all epochs"

    def wants_epoch(self) -> bool:
        """Whether another epoch is due: not all are trained and early stopping has not stopped the run (checked
        before the epoch, so a run killed right after deciding to stop stops on resume)."""
        if self.state.epoch >= self.config.training.epochs:
            return False
        self.stop_reason = self.early_stopping_reason() or "completed all epochs"
        return self.stop_reason == "completed all epochs"

    def accept_epoch(self, row: dict) -> bool:
        """Record a trained epoch (metrics, schedule, best epoch, checkpoint); False when training diverged.
        With ``on_nonfinite: rollback`` a non-finite epoch is rolled back instead, and training goes on."""
        training = self.config.training
        finite = all(math.isfinite(v) for k, v in row.items() if k.endswith("loss"))
        if not finite or not np.isfinite(self.optimizer.params[0]).all():  # the last step may overflow
            if training.on_nonfinite == "rollback" and len(self.state.rollbacks) < training.max_rollbacks:
                self.roll_back(self.last_good, row["epoch"])
                return True
            self.status, self.stop_reason = "diverged", f"the loss became non-finite in epoch {row['epoch']}"
            return False
        self.state.epoch = row["epoch"]
        self.end_of_epoch(row)
        self.last_good = self.snapshot()
        if self.state.epoch % training.checkpoint_every == 0:
            self.save("last", self.last_good)
        return True

    def end(self) -> RunResult:
        """After the last epoch: back to the last finite weights if training diverged, the final checkpoint,
        the test set scored, summary.json."""
        last_good = self.last_good
        if self.status == "diverged":
            rollbacks = self.state.rollbacks
            self.restore(last_good)
            self.state.rollbacks = rollbacks
        if self.last_saved_epoch != last_good["state"].epoch:
            self.save("last", last_good)
        return self.finish(self.status, self.stop_reason, last_good)

    def early_stopping_reason(self) -> str:
        """Why training stops early now ('' to go on): the monitored metric stopped improving."""
        stopping, tracker = self.config.training.early_stopping, self.stopper
        if stopping is None or tracker.waited < stopping.patience:
            return ""
        best = f"best {tracker.best_value:.6g} in epoch {tracker.best_epoch}" if tracker.best_epoch else "never a defined value"
        return f"early stopping: {stopping.monitor} did not improve for {stopping.patience} epochs ({best})"

    def train_epoch(self) -> dict:
        """One pass over the training rows in shuffled minibatches (or the rest of an interrupted pass).

        train_loss is the mean of the minibatch losses over the epoch, weighted by batch size (what Keras
        reports; without the regularization penalty, so that it compares with val_loss); train_seconds
        counts the training steps alone, not the evaluation that follows."""
        training = self.config.training
        if self.state.progress is None:
            n = len(self.train)
            order = self.shuffle_rng.permutation(n) if training.shuffle else np.arange(n)
            self.state.progress = EpochProgress(self.state.epoch + 1, order)
        progress = self.state.progress
        lr = self.optimizer.lr = self.schedule.lr(progress.epoch) * self.state.lr_scale
        started = time.perf_counter()
        n = len(progress.order)
        for start, xb, yb, tb in self.batches(progress.order, progress.next_start):
            stop = start + len(xb)
            if len(xb) == 1 and self.has_batchnorm:
                continue  # a batch of one row has no variance to normalize with
            output, batch_loss = self.step(xb, tb)
            progress.next_start = stop
            if not math.isfinite(batch_loss):
                progress.total_loss = batch_loss
                break
            progress.total_loss += batch_loss * len(xb)
            progress.seen += len(xb)
            if self.task == "classification":
                progress.correct += int(np.count_nonzero(self.head.predict(output) == yb))
            if self.stop_signal is not None and stop < n:
                progress.seconds += time.perf_counter() - started
                raise Interrupted
        progress.seconds += time.perf_counter() - started
        self.state.progress = None
        return self.epoch_row(progress, lr)

    def epoch_row(self, progress: EpochProgress, lr: float) -> dict:
        """The metrics row of an epoch: trained to its end, or stopped by a loss that was not finite."""
        seen = max(progress.seen, 1)
        row = {"epoch": progress.epoch, "lr": lr, "train_loss": progress.total_loss / seen}
        if self.task == "classification":
            row["train_accuracy"] = progress.correct / seen
        if self.val is not None and math.isfinite(progress.total_loss):
            row.update({f"val_{k}": v for k, v in self.head.evaluate(self.model, self.val.x, self.val.y).items()})
        if self.config.training.on_nonfinite == "rollback":
            row["rollbacks"] = len(self.state.rollbacks)
        row["train_seconds"] = progress.seconds
        return row

    def batches(self, order: np.ndarray, first: int):
        """(start, x, y, loss targets) of each minibatch in ``order`` from row ``first``.  Small data is gathered
        once per epoch and batches are views of it; data over ``EPOCH_GATHER_BYTES`` is gathered batch by
        batch, so training never holds a second copy of a large dataset.  Both give the same numbers."""
        batch_size = self.config.training.batch_size
        x_all, y_all = self.train.x, self.train.y
        if x_all.nbytes <= EPOCH_GATHER_BYTES:
            x, y = x_all[order], y_all[order]
            targets = self.head.targets(y)
            for start in range(first, len(order), batch_size):
                stop = start + batch_size
                yield start, x[start:stop], y[start:stop], targets[start:stop]
        else:
            for start in range(first, len(order), batch_size):
                rows = order[start : start + batch_size]
                yb = y_all[rows]
                yield start, x_all[rows], yb, self.head.targets(yb)

    def step(self, xb: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, float]:
        """Augment the batch, then one ``train_step``."""
        if self.augment.active:
            xb = self.augment(xb)
        return train_step(
            self.model, self.head.loss, self.optimizer, xb, tb, self.penalty, self.weights, self.weight_grads, self.grad_clip
        )

    def end_of_epoch(self, row: dict) -> None:
        """Record the row; feed the schedule and the best-epoch tracker (which may save best.npz)."""
        self.record(row)
        monitor = getattr(self.config.training.lr_schedule, "monitor", None)
        if monitor:
            self.schedule.observe(row[monitor])
        stopper_improved = self.stopper.update(row) if self.stopper else False
        if self.selector is not None:
            improved = stopper_improved if self.selector is self.stopper else self.selector.update(row)
            if improved:
                self.best_state = self.snapshot()
                self.save("best", self.best_state)

    # ------------------------------------------------------------------------- metrics and loggers

    def open_logs(self, epochs: int, num_params: int) -> None:
        """Before the first epoch this process trains: the progress display and the loggers."""
        first_epoch = self.state.epoch + 1
        self.reporter.start(self.run.path, epochs, num_params, first_epoch=first_epoch)
        for logger in self.loggers:
            logger.start(first_epoch)

    def record(self, row: dict) -> None:
        """An epoch's metrics row: into the run's history and metrics files, the progress display, the loggers."""
        self.rows.append(row)
        self.run.append_metrics(row)
        self.reporter.epoch(row)
        for logger in self.loggers:
            logger.epoch(row, self.model)

    def close_logs(self) -> None:
        """After the last epoch this process trains, or an interruption: the progress display, metrics files, loggers."""
        self.reporter.end()
        self.run.close_metrics()
        for logger in self.loggers:
            logger.close()

    def roll_back(self, last_good: dict, failed_epoch: int) -> None:
        """training.on_nonfinite: rollback -- back to the last good epoch, with the learning rate lowered."""
        rollbacks, lr_scale = self.state.rollbacks, self.state.lr_scale  # these survive the rollback
        self.restore(last_good)
        self.state.lr_scale = lr_scale * self.config.training.lr_factor
        self.state.rollbacks = rollbacks + [{"epoch": failed_epoch, "lr_scale": self.state.lr_scale, "at": now()}]
        self.run.update_run_info(rollbacks=self.state.rollbacks)

    # ------------------------------------------------------------------------------ state and files

    def snapshot(self) -> dict:
        """A copy of everything the run's future depends on."""
        return {
            "model": {k: v.copy() for k, v in self.model.state_dict().items()},
            "optimizer": {k: v.copy() for k, v in self.optimizer.state_dict().items()},
            "schedule": dict(self.schedule.state_dict()),
            "trackers": {name: tracker.state_dict() for name, tracker in self.trackers().items()},
            "rng": self.rng_states(),
            "state": TrainState(self.state.epoch, self.state.lr_scale, list(self.state.rollbacks), copy(self.state.progress)),
        }

    def restore(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.schedule.load_state_dict(snapshot["schedule"])
        trackers = self.trackers()
        if set(snapshot["trackers"]) != set(trackers):
            raise ValueError(f"monitored metrics {sorted(snapshot['trackers'])}, the config has {sorted(trackers)}")
        for name, state in snapshot["trackers"].items():
            trackers[name].load_state_dict(state)
        self.set_rng_states(snapshot["rng"])
        saved = snapshot["state"]
        self.state = TrainState(saved.epoch, saved.lr_scale, list(saved.rollbacks), copy(saved.progress))

    def trackers(self) -> dict[str, BestTracker]:
        """The distinct best-epoch trackers (restore_best selects with the early-stopping tracker itself)."""
        named = {"early_stopping": self.stopper, "select_best": None if self.selector is self.stopper else self.selector}
        return {name: tracker for name, tracker in named.items() if tracker is not None}

    def generators(self) -> dict:
        """Every random generator training draws from, by stream name (dropout only when the model has it)."""
        generators = {"shuffle": self.shuffle_rng, "augment": self.augment.rng, "dropout": self.dropout_rng}
        return {name: rng for name, rng in generators.items() if rng is not None}

    def rng_states(self) -> dict:
        return {name: rng.bit_generator.state for name, rng in self.generators().items()}

    def set_rng_states(self, states: dict) -> None:
        generators = self.generators()
        for name, state in states.items():
            generators[name].bit_generator.state = state

    def save(self, which: str, snapshot: dict) -> None:
        """checkpoints/<which>.npz: the model (what eval and predict need) and the whole training state."""
        state: TrainState = snapshot["state"]
        arrays = self.model_arrays(snapshot["model"])
        arrays.update({f"optimizer/{name}": value for name, value in snapshot["optimizer"].items()})
        if which == "last" and self.best_state is not None:
            arrays.update({f"{BEST_PREFIX}{name}": value for name, value in self.best_state["model"].items()})
        progress = None
        if state.progress is not None:
            arrays["progress/order"] = state.progress.order
            progress = {k: v for k, v in asdict(state.progress).items() if k != "order"}
        meta = {
            **self.checkpoint_meta(state.epoch),
            "train_state": {
                "lr_scale": state.lr_scale,
                "rollbacks": state.rollbacks,
                "progress": progress,
                "schedule": snapshot["schedule"],
                "trackers": snapshot["trackers"],
                "rng": snapshot["rng"],
            },
        }
        self.write_checkpoint(which, arrays, meta)
        if which == "last":
            self.last_saved_epoch = state.epoch

    def write_checkpoint(self, which: str, arrays: dict, meta: dict) -> None:
        """Make the metrics rows durable first: a power cut must never keep a checkpoint whose epochs'
        rows were lost (resume cuts the logs back to the checkpoint, so later rows may be lost, never earlier).
        ``self.writer`` writes it now (a single run) or in the background (a population's members)."""
        path, data = self.run.checkpoint(which), checkpoint_bytes(arrays, meta)  # the CPU's part here, the disk's in write
        self.run.flush_metrics()
        for logger in self.loggers:  # their events too: a kill must not take epochs the checkpoint covers
            logger.flush()

        def write() -> None:
            try:
                self.run.sync_metrics()
                atomic_write_bytes(path, data)
            except OSError as exc:
                raise NnctlError(f"{path}: cannot write the checkpoint: {exc.strerror or exc}", EXIT_FAILED) from None

        self.writer.write(path, write)

    def load_checkpoint_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """The inverse of ``save``, for resuming; best.npz gives the best weights so far."""
        from nnctl.evaluation import model_state

        last = self.run.checkpoint("last")
        if meta.get("version") != CHECKPOINT_VERSION:
            raise NnctlError(
                f"{last}: written by another nnctl version (checkpoint version {meta.get('version')!r}, this one reads "
                f"{CHECKPOINT_VERSION}); it can be evaluated, not resumed"
            )
        train_state = meta.get("train_state")
        if not train_state:
            raise NnctlError(f"{last}: the checkpoint has no training state to resume from")
        try:
            progress = None
            if train_state["progress"] is not None:
                progress = EpochProgress(order=arrays["progress/order"], **train_state["progress"])
            snapshot = {
                "model": model_state(arrays, self.model, last),
                "optimizer": {k.removeprefix("optimizer/"): v for k, v in arrays.items() if k.startswith("optimizer/")},
                "schedule": train_state["schedule"],
                "trackers": train_state["trackers"],
                "rng": train_state["rng"],
                "state": TrainState(meta["epoch"], train_state["lr_scale"], train_state["rollbacks"], progress),
            }
            self.restore(snapshot)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise NnctlError(f"{last}: the training state does not fit this model ({type(exc).__name__}: {exc})") from None
        self.last_saved_epoch = self.state.epoch
        if self.selector is not None and self.selector.best_epoch is not None:
            # the best weights so far travel in last.npz: best.npz may already hold a later epoch's (written at
            # every improvement, while last.npz is written every checkpoint_every epochs) -- rewrite it from them
            best_model = {f"model/{k.removeprefix(BEST_PREFIX)}": v for k, v in arrays.items() if k.startswith(BEST_PREFIX)}
            best_state = TrainState(self.selector.best_epoch, self.state.lr_scale, list(self.state.rollbacks), None)
            self.best_state = dict(snapshot, model=model_state(best_model, self.model, last), state=best_state)
            if self.checkpoint_epoch("best") != self.selector.best_epoch:
                self.save("best", self.best_state)

    def checkpoint_epoch(self, which: str) -> int | None:
        """The epoch a checkpoint of this run holds (None when there is none, or it cannot be read)."""
        from nnctl.runs import load_checkpoint

        try:
            return load_checkpoint(self.run.checkpoint(which))[1].get("epoch")
        except NnctlError:
            return None

    def where_it_stands(self) -> str:
        """What a run stopped by an error holds on disk, and how to continue it."""
        if self.last_saved_epoch is None:
            return f"the run stopped before its first checkpoint; train again, or continue with: nnctl resume {self.run.path}"
        return (
            f"the run stopped after epoch {self.state.epoch}; checkpoints/last.npz holds epoch {self.last_saved_epoch}; "
            f"continue with: nnctl resume {self.run.path}"
        )

    def interrupted(self) -> RunResult:
        """Stopped by a signal: checkpoint where we are (inside the epoch), tell how to continue."""
        snapshot = self.snapshot()
        self.save("last", snapshot)
        self.writer.wait(self.run.path)  # the summary comes after the checkpoint it points to
        progress = self.state.progress
        where = f"epoch {progress.epoch}, row {progress.next_start} of {len(progress.order)}" if progress else f"epoch {self.state.epoch}"
        name = STOP_REQUEST if self.stop_requested else signal.Signals(self.stop_signal).name
        message = f"{name}: stopped in {where} and saved a checkpoint; continue with: nnctl resume {self.run.path}"
        summary = {"status": "interrupted", "stop_reason": message, "epochs_run": self.state.epoch}
        write_json(self.run.summary_path, summary)
        return RunResult(self.run.path, "interrupted", summary, message, self.stop_signal)

    def finish(self, status: str, stop_reason: str, last_good: dict) -> RunResult:
        """Score the test set with the weights the config selects, and write summary.json."""
        self.writer.wait(self.run.path)  # the summary comes after the checkpoints it points to
        final = "the last finite weights (training diverged)" if status == "diverged" else "the final weights"
        if self.selector is None:
            checkpoint, scored_epoch, why = "last", self.state.epoch, f"{final}: no model selection was asked for"
        elif self.best_state is None:
            checkpoint, scored_epoch = "last", self.state.epoch
            why = f"{final}: no epoch had a defined {self.selector.monitor} to select by ({self.selected_by})"
        else:
            self.model.load_state_dict(self.best_state["model"])
            checkpoint, scored_epoch = "best", self.selector.best_epoch
            why = f"the best {self.selector.monitor} ({self.selector.mode}), selected by {self.selected_by}"
        summary = self.summary(
            status, stop_reason, checkpoint, scored_epoch, why, rollbacks=len(self.state.rollbacks) or None
        )
        message = ""
        if status == "diverged":
            message = (
                f"training diverged: {stop_reason}; kept the last good weights (epoch {last_good['state'].epoch}) "
                f"in {self.run.checkpoint('last')}; try a smaller optimizer.lr or training.on_nonfinite: rollback"
            )
        return RunResult(self.run.path, status, summary, message)

    def summary(self, status: str, stop_reason: str, checkpoint: str, scored_epoch: int, scored_because: str, **extra) -> dict:
        """summary.json: how the run ended, its last epoch's metrics, and the test metrics of the weights in
        ``checkpoint``, which are those of ``scored_epoch`` (and why those)."""
        tracker = getattr(self, "selector", None) or getattr(self, "stopper", None)
        summary = {
            "status": status,
            "stop_reason": stop_reason,
            "epochs_run": len(self.rows),
            "scored_epoch": scored_epoch,
            "scored_because": scored_because,
            "checkpoint": f"checkpoints/{checkpoint}.npz",
            "best_epoch": tracker.best_epoch if tracker else None,
            "monitor": tracker.monitor if tracker else None,
            "train_seconds_total": sum(row.get("train_seconds", 0.0) for row in self.rows),
            **{k: v for k, v in extra.items() if v is not None},
        }
        if self.rows:
            summary.update({k: v for k, v in self.rows[-1].items() if k.startswith(("train_", "val_")) and k != "train_seconds"})
        if self.test is not None:
            summary.update({f"test_{k}": v for k, v in self.head.evaluate(self.model, self.test.x, self.test.y).items()})
        write_json(self.run.summary_path, summary)
        return summary

    # ------------------------------------------------------------------------ fixed threshold models

    def evaluate_fixed_model(self) -> RunResult:
        """McCulloch-Pitts units have fixed weights: nothing to train, so the run evaluates them."""
        self.reporter.start(self.run.path, 0, 0)
        self.reporter.end()
        self.save_model_only("last")
        train_metrics = {f"train_{k}": v for k, v in self.head.evaluate(self.model, self.train.x, self.train.y).items()}
        summary = self.summary(
            "completed", "no trainable parameters: the model was evaluated as given", "last", 0, "the fixed weights of the config", **train_metrics
        )
        return RunResult(self.run.path, "completed", summary)

    def save_model_only(self, which: str) -> None:
        """A checkpoint with the model and its preprocessing, for models without a training state."""
        self.write_checkpoint(which, self.model_arrays(self.model.state_dict()), self.checkpoint_meta(self.state.epoch))

    def model_arrays(self, model_state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What eval and predict read from every checkpoint: the model's arrays and the fitted normalization."""
        arrays = {f"model/{name}": value for name, value in model_state.items()}
        arrays.update({f"preprocess/{name}": value for name, value in self.preprocessor.arrays.items()})
        return arrays

    def checkpoint_meta(self, epoch: int) -> dict:
        """What every checkpoint says about itself: format, epoch, inputs and outputs, the whole config."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "nnctl_version": nnctl.__version__,
            "epoch": epoch,
            **self.data_description,
            "normalize": self.preprocessor.kind,
            "config": self._config_dict(),
        }

    def _config_dict(self) -> dict:
        """The config as a dict, made once per config object (every checkpoint carries it)."""
        if self._config_as_dict[0] is not self.config:
            self._config_as_dict = (self.config, self.config.to_dict())
        return self._config_as_dict[1]


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
        self.open_logs(epochs, unit.buffers["weight"].size + 1)
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
                self.record(row)
                self.state.epoch = epoch
                if mistakes == 0:
                    converged_epoch = epoch
                    break
        finally:
            self.close_logs()
        self.save_model_only("last")
        if converged_epoch is not None:
            status, checkpoint, message = "converged", "last", ""
            stop_reason = f"converged: epoch {converged_epoch} made no mistake"
            scored_epoch, why = converged_epoch, "the final weights, which make no mistake on the training rows"
        else:
            status, checkpoint = "not_converged", "best"
            scored_epoch, why = None, "the pocket algorithm's weights: the fewest training mistakes seen (after any update)"
            stop_reason = f"not converged: every one of {epochs} epochs made mistakes"
            unit.buffers["weight"][...] = pocket.weight
            unit.buffers["threshold"][...] = pocket.threshold
            self.save_model_only("best")
            message = (
                f"the perceptron did not converge in {epochs} epochs: the classes are not linearly separable, "
                f"and a single threshold unit cannot separate them (as it cannot separate XOR); "
                f"kept the best weights seen (pocket algorithm), training accuracy {pocket.accuracy:.4g}"
            )
        summary = self.summary(
            status,
            stop_reason,
            checkpoint,
            scored_epoch,
            why,
            converged_epoch=converged_epoch,
            best_train_accuracy=1.0 if converged_epoch else pocket.accuracy,
            updates=int(sum(row["mistakes"] for row in self.rows)),
        )
        return RunResult(self.run.path, status, summary, message)

"""A playground session: the data, the network and its training, one epoch at a time; it draws nothing.

The terminal (``terminal.py``) and the web page (``web/``) both show a ``PlaygroundSession``.  Training goes
through nnctl's own ``Trainer`` (the same ``train_epoch``: shuffling, minibatches, ``train_step``, the
schedule), kept in memory, so ``nnctl train`` of ``to_yaml()`` after N epochs ends with the same weights -- as
long as no setting was changed and no weight edited on the way (``retrace_note`` then says what changed).
``save_run`` writes the session's own state as a real run folder, which eval, plot, predict and resume read.

The pictures are arrays: ``output_grid`` (the network's output over the plane), ``neuron_grids`` (every
neuron's output over it), ``dense_weights`` (each dense layer's weights and biases), ``confusion``.
"""

from __future__ import annotations

import math
import platform
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

import nnctl
from nnctl import build
from nnctl.config import ExperimentConfig
from nnctl.data import load_data, split_rows
from nnctl.data.playground import GENERATORS, make_features
from nnctl.engine.layers import Dense
from nnctl.engine.losses import softmax
from nnctl.errors import NnctlError
from nnctl.metrics import forward_in_chunks
from nnctl.playground.options import ACTIVATION_ALIASES, ACTIVATIONS, DATASETS, PlaygroundOptions, validate_options
from nnctl.seeding import generator
from nnctl.training import Reporter, Trainer

#: the Playground's heatmap extent: x, y in [-6, 6]
EXTENT = 6.0
MAX_GRID = 100


class MemoryRun:
    """The run folder of a live session: nothing is written while it trains (``save_run`` writes a real one)."""

    path = Path("playground")

    def append_metrics(self, row: dict) -> None:
        pass

    def sync_metrics(self) -> None:
        pass

    def flush_metrics(self) -> None:
        pass

    def take_stop_request(self) -> bool:
        return False

    def close_metrics(self) -> None:
        pass


class PlaygroundSession:
    """Options, data, model and training state of one playground."""

    def __init__(self, options: PlaygroundOptions):
        self.options = replace(options, layers=list(options.layers), features=list(options.features))
        self._build()

    def _build(self) -> None:
        self.loaded = validate_options(self.options)
        self.config: ExperimentConfig = self.loaded.config
        data = load_data(self.loaded)
        build.check_model_fits_data(self.loaded, data)
        self.data = data
        self.trainer = Trainer(self.loaded, data, MemoryRun(), Reporter())
        self.model, self.optimizer, self.head = self.trainer.model, self.trainer.optimizer, self.trainer.head
        self.train, self.test = self.trainer.train, self.trainer.test  # normalized as the model sees them
        self.train_points, self.test_points = self._points()
        self.epoch = 0
        self.changes: list[str] = []  # what was changed during training, so that the YAML no longer retraces it
        self.history: list[tuple[float, float]] = []
        self.metrics = self.evaluate()
        self.history.append((self.metrics["train_loss"], self.metrics["test_loss"]))

    def _points(self):
        """The points as (x, y) for drawing: the Playground's generated points (the features are computed from
        them), or a CSV's first two columns."""
        if self.options.csv is not None:
            return self.data.train, self.data.test
        spec = self.config.data
        points, labels = GENERATORS[spec.dataset](spec.samples, spec.noise, generator(self.config.data_seed(), "data"))
        train, _, test = split_rows(points, labels, spec.test_fraction, spec.val_fraction, generator(self.config.data_seed(), "split"))
        return train, test

    @property
    def task(self) -> str:
        return self.data.task

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def diverged(self) -> bool:
        return not all(math.isfinite(v) for v in self.history[-1])

    def evaluate(self) -> dict:
        """Loss and accuracy (R² for regression) on the whole training and test splits, as nnctl computes them (with
        the Playground's squared error nnctl's mse is (o - t)^2: twice the Playground's numbers)."""
        metrics = {}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for name, split in (("train", self.train), ("test", self.test)):
                metrics.update({f"{name}_{k}": v for k, v in self.head.evaluate(self.model, split.x, split.y).items()})
        return metrics

    def step_epoch(self) -> dict:
        """One epoch of ``nnctl train``'s loop; returns the metrics after it (nothing more once diverged)."""
        if self.diverged:
            return self.metrics
        trainer = self.trainer
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            row = trainer.train_epoch()
        trainer.state.epoch = row["epoch"]
        trainer.end_of_epoch(row)
        self.epoch = trainer.state.epoch
        self.metrics = self.evaluate()
        self.history.append((self.metrics["train_loss"], self.metrics["test_loss"]))
        return self.metrics

    # ------------------------------------------------------------------ the Playground's controls

    def reset(self, seed: int | None = None) -> None:
        """New data and new weights (with ``seed``, default the current one); epoch 0."""
        if seed is not None:
            self.options.seed = seed
        self._build()

    def _changed(self, what: str, weights: bool = False) -> None:
        """Note a change that ``nnctl train`` on the YAML cannot retrace: a setting changed after epoch 0, or a
        weight edited at any time (the YAML's initialisation would draw the unedited weights)."""
        if self.epoch > 0 or weights:
            self.changes.append(f"{what} at epoch {self.epoch}")

    def set_lr(self, lr: float) -> None:
        """Change the learning rate and go on training (the weights are kept, as in the Playground)."""
        if not (lr > 0 and math.isfinite(lr)):
            raise NnctlError(f"the learning rate must be a positive number, got {lr:g}")
        if lr == self.options.lr:
            return
        self.options.lr = float(lr)
        self.config.optimizer.lr = self.options.config_lr()
        self.trainer.schedule = build.build_schedule(self.config)  # the schedule holds the base rate
        self.optimizer.lr = self.trainer.schedule.lr(max(self.epoch, 1))
        self._changed(f"learning rate {lr:g}")

    def set_regularization_rate(self, rate: float) -> None:
        """Change the penalty's rate and go on training."""
        if not (rate >= 0 and math.isfinite(rate)):
            raise NnctlError(f"the regularization rate must be 0 or more, got {rate:g}")
        if rate == self.options.rate:
            return
        self.options.rate = float(rate)
        penalty = self.options.penalty()
        self.config.model.regularization.l1, self.config.model.regularization.l2 = penalty["l1"], penalty["l2"]
        self.trainer.penalty = (penalty["l1"], penalty["l2"]) if penalty["l1"] or penalty["l2"] else None
        self._changed(f"regularization rate {rate:g}")

    def set_batch_size(self, batch_size: int) -> None:
        """Change the minibatch size from the next epoch on."""
        if batch_size < 1:
            raise NnctlError(f"the batch size must be at least 1, got {batch_size}")
        if batch_size == self.options.batch_size:
            return
        self.options.batch_size = self.config.training.batch_size = int(batch_size)
        self._changed(f"batch size {batch_size}")

    def set_dataset(self, name: str) -> None:
        if name not in DATASETS:
            raise NnctlError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
        self.options.dataset = name
        self._build()

    def set_activation(self, name: str) -> None:
        name = ACTIVATION_ALIASES.get(name, name)
        if name not in ACTIVATIONS:
            raise NnctlError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.options.activation = name
        self.options.activations = None
        self._build()

    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.model.layers if isinstance(layer, Dense)]

    def set_weight(self, layer: int, source: int, unit: int, value: float) -> None:
        """Edit one weight (dense layer ``layer``, from input ``source`` to ``unit``) and go on from it."""
        dense = self._dense(layer)
        rows, cols = dense.params["weight"].shape
        if not (0 <= source < rows and 0 <= unit < cols):
            raise NnctlError(f"layer {layer} has weights from {rows} inputs to {cols} units, not from {source} to {unit}")
        dense.params["weight"][source, unit] = self._value(value)  # in place: the optimizer's view of the weights
        self._changed(f"a weight edited (layer {layer}, {source} -> {unit})", weights=True)
        self._refresh()

    def set_bias(self, layer: int, unit: int, value: float) -> None:
        dense = self._dense(layer)
        if not 0 <= unit < dense.params["bias"].shape[0]:
            raise NnctlError(f"layer {layer} has {dense.params['bias'].shape[0]} units, not a unit {unit}")
        dense.params["bias"][unit] = self._value(value)
        self._changed(f"a bias edited (layer {layer}, unit {unit})", weights=True)
        self._refresh()

    def _dense(self, layer: int) -> Dense:
        layers = self.dense_layers()
        if not 0 <= layer < len(layers):
            raise NnctlError(f"the network has dense layers 0 to {len(layers) - 1}, not {layer}")
        return layers[layer]

    @staticmethod
    def _value(value) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise NnctlError(f"a weight must be a number, got {value!r}") from None
        if not math.isfinite(value) or abs(value) > 1e6:
            raise NnctlError(f"a weight must be a finite number of at most 1e6 in size, got {value:g}")
        return value

    def _refresh(self) -> None:
        self.metrics = self.evaluate()
        self.history[-1] = (self.metrics["train_loss"], self.metrics["test_loss"])

    # ------------------------------------------------------------------ pictures, as arrays

    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of the pictures: the Playground's [-6, 6]², or a CSV's first two columns
        with a margin."""
        if self.options.csv is None:
            return (-EXTENT, EXTENT, -EXTENT, EXTENT)
        x = np.concatenate([split.x[:, :2] for split in (self.train_points, self.test_points) if split is not None])
        if x.shape[1] == 1:
            x = np.concatenate([x, np.zeros_like(x)], axis=1)
        low, high = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
        margin = np.maximum((high - low) * 0.05, 1e-3)
        return (float(low[0] - margin[0]), float(high[0] + margin[0]), float(low[1] - margin[1]), float(high[1] + margin[1]))

    def grid_inputs(self, width: int, height: int) -> np.ndarray:
        """The model's inputs at a (height, width) grid of pixel centres, row 0 at the top: the Playground's
        features of (x, y), or for a CSV its first two columns at (x, y) and the others at their training mean."""
        x0, x1, y0, y1 = self.extent()
        xs = x0 + (np.arange(width) + 0.5) * ((x1 - x0) / width)
        ys = y1 - (np.arange(height) + 0.5) * ((y1 - y0) / height)
        gx, gy = np.meshgrid(xs, ys)
        points = np.stack([gx.ravel(), gy.ravel()], axis=1)
        if self.options.csv is None:
            raw = make_features(points, self.config.data.features)
        else:
            columns = self.data.train.x.shape[1]
            raw = np.repeat(self.data.train.x.mean(axis=0, keepdims=True), len(points), axis=0).astype(np.float32)
            raw[:, : min(2, columns)] = points[:, : min(2, columns)]
        return self.trainer.preprocessor.apply(raw)

    def output_values(self, output: np.ndarray) -> np.ndarray:
        """The output as the Playground colours it, in [-1, 1]: p(class 1) mapped to [-1, 1] (cross-entropy),
        the tanh unit (squared error), the regression value clipped."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.task == "regression" or output.shape[1] == 1:
                values = output[:, 0].astype(np.float64)
            else:
                values = 2.0 * softmax(output.astype(np.float64))[:, 1] - 1.0
        return np.clip(np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)

    def grid_output(self, width: int = MAX_GRID, height: int | None = None) -> np.ndarray:
        """The network's output on a (height, width) grid over the extent, in [-1, 1] (``output_values``)."""
        height = width if height is None else height
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            output = forward_in_chunks(self.model, self.grid_inputs(width, height))
        return self.output_values(output).reshape(height, width)

    def grid_classes(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """More than two classes: the predicted class and its probability at each grid cell."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            output = forward_in_chunks(self.model, self.grid_inputs(size, size))
            p = np.nan_to_num(softmax(output.astype(np.float64)), nan=0.0)
        return p.argmax(axis=1).reshape(size, size), p.max(axis=1).reshape(size, size)

    def hidden_blocks(self) -> list[int]:
        """The index in ``model.layers`` where each hidden layer ends (after its batch norm, activation and
        dropout): its neurons' outputs are what leaves that layer."""
        layers = self.model.layers
        starts = [i for i, layer in enumerate(layers) if isinstance(layer, Dense)]
        return [starts[k + 1] - 1 for k in range(len(starts) - 1)]

    def neuron_grids(self, size: int, focus: tuple[int, int] | None = None) -> dict[tuple[int, int], np.ndarray]:
        """Each neuron's output on a (size, size) grid, clipped to [-1, 1] as the Playground colours it:
        {(layer, unit): grid} for hidden layers 1..H and the output layer H + 1 (its units as ``output_values``
        for one output)."""
        x = self.grid_inputs(size, size)
        ends = self.hidden_blocks()
        grids: dict[tuple[int, int], np.ndarray] = {}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for i, layer in enumerate(self.model.layers):
                x = layer.forward(x, training=False)
                if i in ends:
                    values = np.clip(np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
                    for unit in range(values.shape[1]):
                        grids[(ends.index(i) + 1, unit)] = values[:, unit].reshape(size, size)
        if x.shape[1] == 1:
            grids[(len(ends) + 1, 0)] = self.output_values(x).reshape(size, size)
        else:  # one logit per class: each output unit shows its class's probability p mapped to 2 p - 1
            p = np.nan_to_num(softmax(x.astype(np.float64)), nan=0.0)
            for unit in range(p.shape[1]):
                grids[(len(ends) + 1, unit)] = (2.0 * p[:, unit] - 1.0).reshape(size, size)
        return grids

    def dense_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight (inputs, units), bias (units,)) of each dense layer, first to last."""
        return [(layer.params["weight"], layer.params["bias"]) for layer in self.dense_layers()]

    def confusion(self) -> list[list[int]] | None:
        """Counts of test rows of true class r predicted as class c (classification only)."""
        if self.task != "classification" or self.test is None:
            return None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            predicted = self.head.predict(forward_in_chunks(self.model, self.test.x))
        k = max(len(self.class_names), 2)
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (self.test.y.astype(np.int64), predicted.astype(np.int64)), 1)
        return matrix.tolist()

    # ------------------------------------------------------------------ the config, a run folder, the weights

    def saved_config(self) -> ExperimentConfig:
        """The equivalent config: training.epochs is ``options.epochs`` (``--epochs``), else the epochs trained."""
        epochs = self.options.epochs or max(self.epoch, 1)
        return validate_options(self.options, epochs).config

    def retrace_note(self) -> str:
        if not self.changes:
            return ""
        return "changed during training (nnctl train on this config uses the final settings from the start): " + "; ".join(self.changes)

    def to_yaml(self) -> str:
        return self.saved_config().to_yaml()

    def checkpoint_bytes(self) -> bytes:
        """The model as a checkpoint file (what ``checkpoints/last.npz`` of ``save_run`` would hold):
        ``nnctl eval`` and ``nnctl predict`` read it."""
        from nnctl.runs import checkpoint_bytes

        trainer, config = self.trainer, self.trainer.config
        trainer.config = self._config_for_saving()
        try:
            snapshot = trainer.snapshot()
            arrays = trainer.model_arrays(snapshot["model"])
            arrays.update({f"optimizer/{name}": value for name, value in snapshot["optimizer"].items()})
            meta = trainer.checkpoint_meta(self.epoch)
        finally:
            trainer.config = config
        return checkpoint_bytes(arrays, meta)

    def _config_for_saving(self) -> ExperimentConfig:
        config = self.config.model_copy(deep=True)
        config.training.epochs = max(self.epoch, 1)
        return config

    def save_run(self, out_dir: Path) -> Path:
        """A real run folder under ``out_dir`` holding this session as it stands: config.yaml, metrics.jsonl (one
        row per epoch trained), checkpoints/last.npz (weights and training state) and summary.json."""
        from nnctl.runs import RunFolder, RunLock, atomic_write_text, create_run_dir
        from nnctl.training import now

        if self.epoch < 1:
            raise NnctlError("train at least one epoch before saving a run")
        saved = self._config_for_saving()
        run = RunFolder(create_run_dir(Path(out_dir), saved.name))
        with RunLock(run.path):
            if self.options.csv is not None:  # the run keeps its own copy of the uploaded data
                copy = run.path / "data" / Path(self.options.csv.name).name
                copy.parent.mkdir()
                shutil.copyfile(self.options.csv.path, copy)
                saved.data.path = str(copy.resolve())
            trainer, memory = self.trainer, self.trainer.run
            trainer.config, trainer.run = saved, run
            try:
                atomic_write_text(run.config_path, saved.to_yaml())
                run.update_run_info(
                    status="running", started=now(), command=["nnctl", "playground", "--web"], seed=saved.seed,
                    versions={"nnctl": nnctl.__version__, "numpy": np.__version__, "python": platform.python_version()},
                    blas_threads=1,
                )  # fmt: skip
                for row in trainer.rows:
                    run.append_metrics(row)
                trainer.state.epoch = self.epoch
                trainer.save("last", trainer.snapshot())
                status = "diverged" if self.diverged else "completed"
                trainer.summary(status, "saved from the web playground", "last", self.epoch, "the weights on the page when it was saved")
                note = self.retrace_note()
                run.update_run_info(status=status, ended=now(), **({"message": note} if note else {}))
            finally:
                run.close_metrics()
                trainer.config, trainer.run = self.config, memory
        return run.path

"""One browser page's playground: its URL state, its session, and the messages it exchanges.

``Page.handle(message)`` performs one message of the protocol (see ``app.py``) and returns the replies;
``Page.train_for(seconds)`` trains while the page is playing and returns the next frame.  Nothing here
knows about HTTP or threads: ``app.py`` calls a page from one worker thread at a time.
"""

from __future__ import annotations

import base64
import math
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from nnctl.config import PLAYGROUND_CLASSIFICATION, PLAYGROUND_REGRESSION, config_from_text
from nnctl.errors import NnctlError
from nnctl.playground.options import (
    INITS,
    LOSSES,
    LR_LADDER,
    OPTIMIZERS,
    RATE_LADDER,
    SCHEDULES,
    CsvUpload,
    options_from_config,
)
from nnctl.playground.session import PlaygroundSession
from nnctl.playground.urlstate import FEATURE_KEYS, HASH_ACTIVATIONS, PageState, hash_pairs, parse_hash, parse_pairs, to_hash

#: the big heatmap and the neurons' small ones, in cells per side (the Playground's main heatmap is 100)
HEATMAP_SIZE, NEURON_SIZE = 100, 24
#: wide layers send pictures of their first neurons only
MAX_NEURON_PICTURES = 16
#: the largest CSV upload, in bytes of text
MAX_UPLOAD = 2 * 1024 * 1024
#: settings a page changes without a reset (as the Playground: the weights are kept)
LIVE_KEYS = {"learningRate", "regularizationRate", "batchSize", "showTestData", "discretize"}
#: a target column with one of these names is the label; otherwise the last column is
LABEL_NAMES = ("label", "class", "target", "y")
#: an uploaded table has at most this many feature columns (every frame computes the network over a grid)
MAX_COLUMNS = 64


def encode_grid(values: np.ndarray) -> str:
    """Values in [-1, 1] as base64 bytes, b = round((v + 1) * 127.5): 0 is -1 (orange), 255 is +1 (blue)."""
    return base64.b64encode(np.rint((np.asarray(values, dtype=np.float64) + 1.0) * 127.5).astype(np.uint8).tobytes()).decode("ascii")


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class Page:
    """A page's state and session.  ``runs_dir``: where Save run writes; ``uploads_dir``: where uploaded files are kept."""

    def __init__(self, runs_dir: Path, uploads_dir: Path, session_id: str):
        self.runs_dir, self.uploads_dir, self.id = Path(runs_dir), Path(uploads_dir), session_id
        self.state = PageState()
        self.session: PlaygroundSession | None = None
        self.running = False
        self.focus: tuple[int, int] | None = None
        self.sent_epochs = 0  # history rows already sent
        self.uploads = 0
        self.worker = None  # the thread that runs this page's messages and training (set by app.py)

    # ------------------------------------------------------------------ messages

    def handle(self, message: dict) -> list[dict]:
        """The replies to one message; an error leaves everything as it was and answers with one line."""
        kind = message.get("type") if isinstance(message, dict) else None
        handler = getattr(self, f"on_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
        if handler is None:
            return [error(f"unknown message type {kind!r}")]
        if self.session is None and kind != "hello":
            return [error("the page must say hello first")]
        try:
            return handler(message)
        except NnctlError as exc:
            return [error(self.hide_upload_paths(str(exc)))]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            return [error(f"a malformed {kind} message ({type(exc).__name__}: {exc})")]
        except Exception as exc:  # a bug must not end the page's connection: say it, keep the session
            return [error(f"{kind} failed: {type(exc).__name__}: {exc}")]

    def hide_upload_paths(self, text: str) -> str:
        """Messages name an uploaded file by its name, not by where the server keeps it."""
        return re.sub(re.escape(str(self.uploads_dir)) + r"/[0-9a-f]+-\d+-", "", text)

    def on_hello(self, message: dict) -> list[dict]:
        state = parse_hash(str(message.get("hash", "")))
        self._start(state)
        return [self.state_message(), self.frame()]

    def on_set(self, message: dict) -> list[dict]:
        changes = message["changes"]
        if not isinstance(changes, dict):
            raise TypeError("changes must be a mapping of hash keys to values")
        changes = {str(key): str(value) for key, value in changes.items()}
        state = parse_pairs(changes, base=self.state)
        if state.notes:
            raise NnctlError(state.notes[0])
        if set(changes) <= LIVE_KEYS:
            options = state.options
            self.session.set_lr(options.lr)
            self.session.set_regularization_rate(options.rate)
            self.session.set_batch_size(options.batch_size)
            self.state = replace(state, notes=[])
            self.state.options = self.session.options
            return [self.state_message(), self.frame()]
        self._start(state)
        return [self.state_message(), self.frame()]

    def on_play(self, message: dict) -> list[dict]:
        self.running = not self.session.diverged
        return [self.frame()]

    def on_pause(self, message: dict) -> list[dict]:
        self.running = False
        return [self.frame()]

    def on_step(self, message: dict) -> list[dict]:
        self.running = False
        self.session.step_epoch()
        return [self.frame()]

    def on_reset(self, message: dict) -> list[dict]:
        self.running = False
        self._start(self.state)
        return [self.state_message(), self.frame()]

    def on_regenerate(self, message: dict) -> list[dict]:
        seed = (self.state.options.seed + 1) % 2**32
        self.running = False
        self._start(replace(self.state, options=replace(self.state.options, seed=seed), seed_text=str(seed)))
        return [self.state_message(), self.frame()]

    def on_focus(self, message: dict) -> list[dict]:
        node = message.get("node")
        if node is None:
            self.focus = None
        else:
            layer, unit = (int(part) for part in str(node).split(":"))
            self.focus = (layer, unit)
        return [self.frame()]

    def on_edit(self, message: dict) -> list[dict]:
        if message.get("kind") == "bias":
            self.session.set_bias(int(message["layer"]), int(message["unit"]), message["value"])
        else:
            self.session.set_weight(int(message["layer"]), int(message["from"]), int(message["to"]), message["value"])
        return [self.frame()]

    def on_upload(self, message: dict) -> list[dict]:
        name, text = upload_name(str(message.get("name") or "")), message["text"]
        if not isinstance(text, str):
            raise TypeError("text must be the file's text")
        if len(text.encode("utf-8")) > MAX_UPLOAD:
            raise NnctlError(f"{name}: the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB; the page trains small tables")
        self.uploads += 1
        path = self.uploads_dir / f"{self.id}-{self.uploads}-{name}"  # hide_upload_paths shows it as name
        path.write_text(text, encoding="utf-8")
        try:
            csv = read_upload(path, name, regression=self.state.problem == "regression")
            state = replace(self.state, options=replace(self.state.options, csv=csv, problem=self.state.problem))
            self._start(parse_pairs(hash_pairs(state), base=state))  # the loss follows the number of classes
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return [self.state_message(), self.frame()]

    def on_import(self, message: dict) -> list[dict]:
        text = message["yaml"]
        if not isinstance(text, str) or len(text) > MAX_UPLOAD:
            raise NnctlError("import: give an nnctl config of at most 2 MB")
        loaded = config_from_text(text, "imported config")
        options = options_from_config(loaded.config)
        state = replace(self.state, options=options, notes=[], seed_text=str(options.seed))
        if options.dataset in PLAYGROUND_CLASSIFICATION:
            state.classification_dataset = options.dataset
        elif options.dataset in PLAYGROUND_REGRESSION:
            state.regression_dataset = options.dataset
        self._start(state)
        return [self.state_message(), self.frame()]

    def on_export(self, message: dict) -> list[dict]:
        return [{"type": "yaml", "text": self.export_yaml(), "filename": f"{self.session.config.name}.yaml"}]

    def on_save_run(self, message: dict) -> list[dict]:
        path = self.session.save_run(self.runs_dir)
        shown = relative(path)
        return [{"type": "saved", "path": shown, "message": f"saved the run to {shown} (nnctl eval {shown})"}]

    # ------------------------------------------------------------------ what the page is sent

    def _start(self, state: PageState) -> None:
        """A new session for ``state`` (data, weights, epoch 0); the old one stays if this one cannot be built.
        An uploaded file the new session no longer trains on is deleted."""
        session = PlaygroundSession(state.options)
        previous = self.state.options.csv
        self.session, self.state = session, state
        self.state.options = session.options
        self.running, self.sent_epochs = False, 0
        self.focus = None
        if previous is not None and previous != session.options.csv:
            previous.path.unlink(missing_ok=True)

    def close(self) -> None:
        """The page is gone: stop, and delete its uploaded file."""
        self.running = False
        if self.state.options.csv is not None:
            self.state.options.csv.path.unlink(missing_ok=True)

    def download(self) -> tuple[bytes, str]:
        """The current weights as a checkpoint file, and a file name for it."""
        return self.session.checkpoint_bytes(), f"{self.session.config.name}-epoch{self.session.epoch}.npz"

    def export_yaml(self) -> str:
        session, options = self.session, self.session.options
        text = session.to_yaml()
        if session.retrace_note():
            lines = [f"# exported from the nnctl playground after {session.epoch} epochs; nnctl train on this file does NOT retrace them"]
        else:
            lines = [f"# exported from the nnctl playground after {session.epoch} epochs: nnctl train on this file retraces them"]
        if options.loss == "squared" and options.optimizer == "sgd":
            lines.append(
                f"# the page's learning rate {options.lr:g} is for the Playground's loss 1/2 (o - t)^2; nnctl's mse is"
                f" (o - t)^2, so optimizer.lr is {options.config_lr():g}"
            )
        if options.csv is not None:
            text = text.replace(str(options.csv.path), options.csv.name)
            lines.append(f"# the data is the uploaded file {options.csv.name}: put it beside this file")
        if session.retrace_note():
            lines.append(f"# note: {session.retrace_note()}")
        return "\n".join(lines) + "\n" + text

    def state_message(self) -> dict:
        session, options = self.session, self.state.options
        points = {}
        for name, split in (("train", session.train_points), ("test", session.test_points)):
            xy = split.x[:, :2].astype(np.float64) if split is not None else np.zeros((0, 2))
            if xy.shape[1] == 1:
                xy = np.concatenate([xy, np.zeros_like(xy)], axis=1)
            labels = split.y.astype(np.float64) if split is not None else np.zeros(0)
            points[name] = np.round(np.column_stack([xy, labels]), 5).tolist()
        network = [{"kind": "input", "units": len(session.data.feature_names)}]
        for i, units in enumerate(options.layers):
            network.append({
                "kind": "hidden", "units": units, "activation": options.layer_activation(i),
                "dropout": options.layer_dropout(i), "batchnorm": options.layer_batchnorm(i),
            })  # fmt: skip
        output = options.output_layer()
        network.append({"kind": "output", "units": output["units"], "activation": output.get("activation", "identity")})
        return {
            "type": "state",
            "session": self.id,
            "hash": to_hash(self.state),
            "options": hash_pairs(self.state, every_key=True),
            "task": session.task,
            "classes": session.class_names if session.task == "classification" else [],
            "features": list(session.data.feature_names),
            "feature_choices": [] if options.csv is not None else list(FEATURE_KEYS.values()),
            "network": network,
            "points": points,
            "extent": list(session.extent()),
            "history": [[epoch, finite_or_none(a), finite_or_none(b)] for epoch, (a, b) in enumerate(session.history)],
            "running": self.running,
            "notes": list(self.state.notes),
            "data_name": options.csv.name if options.csv is not None else options.dataset,
            "choices": {
                "activation": list(HASH_ACTIVATIONS), "optimizer": list(OPTIMIZERS), "loss": list(LOSSES), "init": list(INITS),
                "schedule": list(SCHEDULES), "dataset": list(PLAYGROUND_CLASSIFICATION), "regDataset": list(PLAYGROUND_REGRESSION),
                "learningRate": list(LR_LADDER), "regularizationRate": list(RATE_LADDER),
            },  # fmt: skip
        }

    def frame(self) -> dict:
        session = self.session
        self.sent_epochs, first = len(session.history), self.sent_epochs
        tail = [[epoch, finite_or_none(a), finite_or_none(b)] for epoch, (a, b) in enumerate(session.history) if epoch >= first]
        neurons = session.neuron_grids(NEURON_SIZE)
        focus = self.focus if self.focus in neurons else None
        if focus is not None:
            big = session.neuron_grids(HEATMAP_SIZE)[focus]
        else:
            big = session.grid_output(HEATMAP_SIZE)
        classes = None
        if session.task == "classification" and len(session.class_names) > 2:
            argmax, confidence = session.grid_classes(HEATMAP_SIZE)
            classes = {
                "argmax": base64.b64encode(argmax.astype(np.uint8).tobytes()).decode("ascii"),
                "confidence": base64.b64encode(np.rint(confidence * 255).astype(np.uint8).tobytes()).decode("ascii"),
            }
        shown = {key: grid for key, grid in neurons.items() if key[1] < MAX_NEURON_PICTURES}
        summarised = {str(i + 1): units for i, units in enumerate(self.state.options.layers) if units > MAX_NEURON_PICTURES}
        return {
            "type": "frame",
            "epoch": session.epoch,
            "running": self.running,
            "diverged": session.diverged,
            "metrics": {key: finite_or_none(value) for key, value in session.metrics.items()},
            "history_tail": tail,
            "heatmap": {"size": HEATMAP_SIZE, "focus": f"{focus[0]}:{focus[1]}" if focus else None, "data": encode_grid(big)},
            "heatmap_classes": classes,
            "neurons": {"size": NEURON_SIZE, "grids": {f"{l}:{u}": encode_grid(g) for (l, u), g in shown.items()}, "summarised": summarised},
            "weights": [{"w": np.round(w.astype(np.float64), 6).tolist(), "b": np.round(b.astype(np.float64), 6).tolist()} for w, b in session.dense_weights()],
            "confusion": session.confusion(),
        }

    def train_for(self, seconds: float) -> dict | None:
        """While playing: epochs for about ``seconds`` (at least one), then a frame; None when paused."""
        if not self.running:
            return None
        deadline = time.perf_counter() + seconds
        while True:
            self.session.step_epoch()
            if self.session.diverged:
                self.running = False
                break
            if time.perf_counter() >= deadline:
                break
        return self.frame()


def error(message: str) -> dict:
    return {"type": "error", "message": message.splitlines()[0] if message else "error"}


def relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def upload_name(name: str) -> str:
    """A file name safe to keep and to name a run after: letters, digits, '.', '-' and '_' (others become '_'),
    a stem of at most 50 characters and the file's suffix."""
    safe = Path(re.sub(r"[^A-Za-z0-9._-]", "_", Path(name.replace("\\", "/")).name))
    stem = safe.stem.strip(".")[:50]
    return stem + safe.suffix[:10] if stem else "upload.csv"


def read_upload(path: Path, name: str, regression: bool) -> CsvUpload:
    """An uploaded CSV read by nnctl's CSV reader (the errors ``nnctl train`` gives): its label column is one
    named label, class, target or y, else the last; two or more columns besides it are numeric features."""
    from nnctl.data.files import read_csv, read_csv_header

    header = read_csv_header(path)
    target = next((column for column in header if column.strip().lower() in LABEL_NAMES), header[-1] if header else "")
    if len(header) < 2:
        raise NnctlError(f"{path}: the page needs numeric feature columns and a label column; the header has {header}")
    if len(header) > MAX_COLUMNS + 1:
        raise NnctlError(f"{path}: {len(header) - 1} feature columns; the page trains tables of at most {MAX_COLUMNS}")
    table = read_csv(path, target)
    if regression:
        try:
            table.y.astype(np.float64)
        except ValueError:
            raise NnctlError(f"{path}: column {target!r} holds class names; choose the problem type classification") from None
        return CsvUpload(path, name, target, 0)
    classes = len(np.unique(table.y))
    if classes < 2:
        raise NnctlError(f"{path}: column {target!r} has one class; classification needs two or more")
    if classes > 20:
        raise NnctlError(f"{path}: column {target!r} has {classes} distinct values; for a numeric target choose the problem type regression")
    return CsvUpload(path, name, target, classes)

"""Figures of runs, drawn with matplotlib: ``nnctl plot`` and the ``training.plots`` key.

- learning curves from ``metrics.jsonl``: one panel per metric kind (loss, accuracy / mae, r2), train
  and validation; several runs overlaid, each labelled by the config keys in which it differs from the
  others (``run_labels``);
- for the Playground's 2-D datasets, the decision boundary: the network's output over a 100x100 grid
  covering the data (padded by 10 %), in the Playground's palette (orange = class 0 / -1, light grey,
  blue = class 1 / +1), with the training and test points on top;
- for the 1-D ``function`` datasets, the learned curve over the true function and the samples.

matplotlib is optional (the ``plot`` extra) and imported only inside the functions that draw, never
at import time; figures are built with the object-oriented API on an Agg canvas (no pyplot, no global
state, no window), rendered to PNG bytes in memory and written atomically.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import yaml

from nnctl.config import flatten
from nnctl.data import is_number
from nnctl.data.playground import GENERATORS as PLAYGROUND_GENERATORS
from nnctl.errors import NnctlError
from nnctl.runs import RunFolder, is_run_dir, read_json, write_output

if TYPE_CHECKING:  # pragma: no cover - for annotations only; matplotlib is imported lazily
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MISSING_MATPLOTLIB = "matplotlib is not installed: pip install 'nnctl[plot]'"

#: the TensorFlow Playground's diverging palette (shared/reference/playground.md): -1 / class 0 -> +1 / class 1
ORANGE, GREY, BLUE = "#f59322", "#e8eaeb", "#0877bd"
#: the Playground's heatmap resolution
GRID = 100
#: the decision-boundary plot covers the data's range widened by this fraction on each side
PAD = 0.10
#: at most this many differing key=value pairs in a run's legend label
MAX_LABEL_PAIRS = 3

KINDS = ("auto", "curves", "boundary", "function")
CURVE_KINDS = ("loss", "accuracy", "mae", "r2")
PLAYGROUND_DATASETS = frozenset(PLAYGROUND_GENERATORS)

#: figure files of ``write_run_plots``, by panel kind
RUN_PLOT_FILES = {"curves": "curves.png", "boundary": "boundary.png", "function": "function.png"}


def require_matplotlib():
    """The matplotlib module, or the one-line error telling how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise NnctlError(MISSING_MATPLOTLIB) from None
    return matplotlib


# ------------------------------------------------------------------------------------------ run folders


@dataclass
class RunData:
    """What a figure needs of a run folder: its config (as plain YAML data), metric rows and summary."""

    path: Path
    config: dict
    rows: list[dict]
    summary: dict | None

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def dataset(self) -> str | None:
        data = self.config.get("data")
        return data.get("dataset") if isinstance(data, dict) else None

    @property
    def panel_kind(self) -> str | None:
        """The data panel this run's data allows: ``boundary`` (2-D Playground data, a 2-input truth table),
        ``function`` (1-D), or None."""
        if self.dataset in PLAYGROUND_DATASETS or (self.dataset == "logic" and self.config["data"].get("inputs") == 2):
            return "boundary"
        if self.dataset == "function":
            return "function"
        return None

    @property
    def evaluated_only(self) -> bool:
        """A model with fixed weights (McCulloch-Pitts unit, threshold network): evaluated, never trained."""
        summary = self.summary or {}
        return summary.get("epochs_run") == 0 and str(summary.get("stop_reason", "")).startswith("no trainable parameters")

    @property
    def has_checkpoint(self) -> bool:
        run = RunFolder(self.path)
        return run.checkpoint("last").exists() or run.checkpoint("best").exists()


def load_run(path: str | Path) -> RunData:
    path = Path(path)
    if not path.exists():
        raise NnctlError(f"{path}: no such run folder")
    if not path.is_dir() or not is_run_dir(path):
        raise NnctlError(f"{path}: not a run folder (no run.json and config.yaml); give folders written by nnctl train")
    run = RunFolder(path)
    try:
        config = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise NnctlError(f"{run.config_path}: cannot read the run's config ({exc})") from None
    if not isinstance(config, dict):
        raise NnctlError(f"{run.config_path}: not a config (not a mapping)")
    summary = read_json(run.summary_path) if run.summary_path.exists() else None
    return RunData(path, config, read_metric_rows(run.metrics_jsonl_path), summary)


def read_metric_rows(path: Path) -> list[dict]:
    """The rows of metrics.jsonl; a last line still being written by a running training is left out."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise NnctlError(f"{path}:{number}: not a JSON object") from None
        if not isinstance(row, dict):
            raise NnctlError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows


def resolve_runs(paths: Sequence[str | Path]) -> list[RunData]:
    """The runs the command-line arguments name, in order.

    Each argument is a run folder.  A sweep folder (a later issue) is to be expanded here into the run
    folders it holds: the figures below only ever see a list of runs."""
    if not paths:
        raise NnctlError("give at least one run folder")
    return [load_run(path) for path in paths]


# --------------------------------------------------------------------------------------------- labels


def flatten_config(config) -> dict[str, str]:
    """Dotted keys to YAML-like scalar text: ``{"model": {"layers": [{"type": "dense"}]}}`` gives
    ``{"model.layers.0.type": "dense"}``.  Empty lists and mappings stay as ``[]`` and ``{}``."""
    return {key: scalar_text(value) for key, value in flatten(config).items()}


def scalar_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return str(value)


def _key_rank(key: str) -> int:
    """Keys that say what a thing is (the run's name, a section's dataset/type/name) come first in a label."""
    if key == "name":
        return 0
    if key.rsplit(".", 1)[-1] in ("dataset", "type", "name", "fn", "activation"):
        return 1
    return 2


def run_labels(configs: Sequence[dict], names: Sequence[str]) -> list[str]:
    """One legend label per run: the ``key=value`` pairs of its flattened config that are not the same in
    every run (at most ``MAX_LABEL_PAIRS``, then ``(+N more)``), or the run folder's name when none differ."""
    flats = [flatten_config(config) for config in configs]
    keys: list[str] = []
    for flat in flats:
        keys.extend(key for key in flat if key not in keys)
    differing = [key for key in keys if len({flat.get(key) for flat in flats}) > 1]
    differing.sort(key=_key_rank)  # stable: the config's order within each rank
    labels = []
    for flat, name in zip(flats, names):
        pairs = [f"{key}={flat[key]}" for key in differing if key in flat]
        if not pairs:
            labels.append(name)
            continue
        extra = len(pairs) - MAX_LABEL_PAIRS
        labels.append(", ".join(pairs[:MAX_LABEL_PAIRS]) + (f" (+{extra} more)" if extra > 0 else ""))
    # labels cut short may coincide: then the folder name tells the runs apart
    return [f"{label} [{name}]" if labels.count(label) > 1 else label for label, name in zip(labels, names)]


# ------------------------------------------------------------------------------------------- figures


def make_figure(runs: Sequence[RunData], kind: str = "auto", metric: str | None = None) -> "Figure":
    """The figure ``nnctl plot`` draws for these runs.

    - ``curves``: the learning curves (every run overlaid), one panel per metric kind, or ``metric`` alone;
    - ``boundary`` / ``function``: the data panel of each run, side by side;
    - ``auto``: the curves, plus the data panel when there is a single run of 2-D or 1-D data (and it has
      a checkpoint)."""
    if kind not in KINDS:
        raise NnctlError(f"--kind: {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
    require_matplotlib()
    runs = list(runs)
    if kind in ("boundary", "function"):
        if metric is not None:
            raise NnctlError(f"--metric applies to learning curves (--kind curves or auto), not to --kind {kind}")
        for run in runs:
            if run.panel_kind != kind:
                raise NnctlError(f"{run.path}: --kind {kind} needs {data_needed(kind)}; this run's data is {run.dataset!r}")
        return data_figure(runs, kind)
    for run in runs:
        if not run.rows and run.evaluated_only:
            if kind == "auto" and len(runs) == 1 and run.panel_kind and run.has_checkpoint:
                return data_figure(runs, run.panel_kind)  # its data panel is all there is to draw
            model = (run.config.get("model") or {}).get("type", "fixed")
            drawn = {"boundary": "decision boundary", "function": "function fit"}.get(run.panel_kind or "")
            also = f"; --kind {run.panel_kind} draws its {drawn}" if drawn else ""
            raise NnctlError(f"{run.path}: no learning curves: the {model} model has fixed weights, so it was evaluated, not trained (no per-epoch metrics); its scores: nnctl eval {run.path}{also}")
        if not run.rows:
            raise NnctlError(f"{run.path}: the run has no metrics yet (metrics.jsonl is missing or empty): nothing to plot")
    panels = curve_panels(runs, metric)
    second = None
    if kind == "auto" and len(runs) == 1 and runs[0].panel_kind and runs[0].has_checkpoint:
        second = runs[0].panel_kind
    return curves_figure(runs, panels, second)


def data_needed(kind: str) -> str:
    return "a 2-D Playground dataset (circle, xor, gauss, spiral, reg-plane, reg-gauss) or a 2-input logic table" if kind == "boundary" else "data.dataset: function"


def curve_panels(runs: Sequence[RunData], metric: str | None) -> list[tuple[str, list[str]]]:
    """(kind, metric names) of each learning-curve panel: train and val of each kind the runs recorded,
    or the one metric asked for (``val_accuracy``; ``accuracy`` means train and val accuracy)."""
    recorded: list[str] = []
    for run in runs:
        for row in run.rows:
            recorded.extend(key for key in row if key != "epoch" and key not in recorded)
    if metric is not None:
        if metric in recorded:
            split, _, rest = metric.partition("_")
            return [(rest if split in ("train", "val") and rest else metric, [metric])]
        names = [name for name in (f"train_{metric}", f"val_{metric}") if name in recorded]
        if names:
            return [(metric, names)]
        raise NnctlError(f"--metric: no run recorded {metric!r}; recorded: {', '.join(recorded)}")
    panels = []
    for curve_kind in CURVE_KINDS:
        names = [name for name in (f"train_{curve_kind}", f"val_{curve_kind}") if name in recorded]
        if names:
            panels.append((curve_kind, names))
    if not panels:
        raise NnctlError(f"{runs[0].path}: metrics.jsonl records no loss or accuracy to plot; recorded: {', '.join(recorded)}")
    return panels


def new_figure(width: float, height: float) -> "Figure":
    """A figure on an Agg canvas: no pyplot, no window, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_title(runs: Sequence[RunData]) -> str:
    if len(runs) > 1:
        return f"{len(runs)} runs"
    run = runs[0]
    summary = run.summary or {}
    results = [f"{key} {summary[key]:.4g}" for key in ("test_accuracy", "test_loss", "test_r2") if isinstance(summary.get(key), (int, float))]
    if "test_accuracy" in summary:
        results = [r for r in results if not r.startswith("test_loss")]
    return run.name + (f"  ({', '.join(results)})" if results else "")


def curves_figure(runs: Sequence[RunData], panels: list[tuple[str, list[str]]], second: str | None = None) -> "Figure":
    n = len(panels)
    multi = len(runs) > 1
    if second:
        figure = new_figure(10.5, max(4.8, 2.5 * n))
        grid = figure.add_gridspec(n, 2, width_ratios=[1.0, 1.25])
        axes = [figure.add_subplot(grid[i, 0]) for i in range(n)]
        for ax in axes[1:]:
            ax.sharex(axes[0])
        data_panel(figure, figure.add_subplot(grid[:, 1]), runs[0], second, title=True)
    else:
        figure = new_figure(max(4.6 * n, 6.0), 3.8 + (0.25 * len(runs) + 0.3 if multi else 0))
        axes = list(figure.subplots(1, n, squeeze=False)[0])
    colors = run_colors(len(runs))
    for i, (ax, (curve_kind, names)) in enumerate(zip(axes, panels)):
        draw_curves(ax, runs, names, colors if multi else None)
        ax.set_title(curve_title(curve_kind, names))
        ax.set_ylabel(curve_kind)
        if not second or i == n - 1:
            ax.set_xlabel("epoch")
        if (not multi and len(names) > 1) or (multi and len({name.split("_", 1)[0] for name in names}) > 1):
            ax.legend(loc="best", fontsize="small")
    if multi:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=color, linewidth=2) for color in colors]
        labels = run_labels([run.config for run in runs], [run.name for run in runs])
        figure.legend(handles, labels, loc="outside lower center", fontsize="small", frameon=False)
    figure.suptitle(figure_title(runs))
    return figure


def run_colors(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def curve_title(curve_kind: str, names: list[str]) -> str:
    """``train loss``, ``train and validation accuracy``; a metric of another name as it is."""
    splits = [name.split("_", 1)[0] for name in names]
    if not all(split in ("train", "val") and name.split("_", 1)[1] == curve_kind for split, name in zip(splits, names)):
        return names[0] if len(names) == 1 else curve_kind
    return f"{' and '.join('validation' if s == 'val' else s for s in splits)} {curve_kind}"


SPLIT_STYLE = {"train": ("-", BLUE), "val": ("--", ORANGE)}


def draw_curves(ax: "Axes", runs: Sequence[RunData], names: list[str], colors: list | None) -> None:
    """One line per run and metric; with ``colors`` (several runs) the colour is the run's and the line
    style the split's (train solid, validation dashed), else the colour is the split's."""
    positive = True
    for r, run in enumerate(runs):
        epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(run.rows)], dtype=float)
        for name in names:
            values = np.array([as_float(row.get(name)) for row in run.rows])
            if not np.isfinite(values).any():
                continue
            positive &= bool(np.all(values[np.isfinite(values)] > 0))
            split = name.split("_", 1)[0]
            style, split_color = SPLIT_STYLE.get(split, ("-", BLUE))
            label = {"train": "train", "val": "validation"}.get(split, name)
            if colors is not None:
                ax.plot(epochs, values, linestyle=style, color=colors[r], linewidth=1.5)
            else:
                ax.plot(epochs, values, linestyle=style, color=split_color, linewidth=1.8, label=label)
    if colors is not None:  # the colours name the runs (figure legend); this legend names the line styles
        from matplotlib.lines import Line2D

        for split in dict.fromkeys(name.split("_", 1)[0] for name in names):
            style, _ = SPLIT_STYLE.get(split, ("-", BLUE))
            ax.add_line(Line2D([], [], linestyle=style, color="0.35", label={"val": "validation"}.get(split, split)))
    if positive and all(name.endswith("loss") for name in names) and spans_decades(ax):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        # a loss falling over decades: log scale, ticks as plain numbers (0.05, not 5x10^-2), at 1, 2, 5 x 10^k
        # when that gives a handful of them
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if high / low < 1000:
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, alpha=0.3)


def spans_decades(ax: "Axes") -> bool:
    """Whether the plotted values cover at least a factor of 20 (then a log scale shows them better)."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.empty(0)])
    values = values[np.isfinite(values)]
    return bool(values.size) and values.max() >= 20 * values.min()


def as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def data_figure(runs: Sequence[RunData], kind: str) -> "Figure":
    """The boundary (or function) panel of each run, side by side, titled by what differs between them."""
    n = len(runs)
    titles = [textwrap.fill(label, 60) for label in run_labels([run.config for run in runs], [run.name for run in runs])] if n > 1 else []
    title_lines = max((title.count("\n") + 1 for title in titles), default=1)
    figure = new_figure(5.6 * n, 5.0 + 0.3 * title_lines)
    axes = figure.subplots(1, n, squeeze=False)[0]
    for i, (ax, run) in enumerate(zip(axes, runs)):
        data_panel(figure, ax, run, kind, title=not titles)
        if titles:
            ax.set_title(titles[i], fontsize="small")
    figure.suptitle(figure_title(runs))
    return figure


def data_panel(figure: "Figure", ax: "Axes", run: RunData, kind: str, title: bool) -> None:
    from nnctl.evaluation import restore

    restored = restore(run.path)
    if kind == "boundary":
        draw_boundary(figure, ax, restored, title)
    else:
        draw_function(ax, restored, title)


def playground_colormap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("playground", [ORANGE, GREY, BLUE])


def playground_points(loaded):
    """The raw (x1, x2) points and labels of each split, regenerated exactly as ``load_data`` makes them
    (same data and split seeds), before the features are computed from them."""
    from nnctl.data import split_rows
    from nnctl.seeding import generator

    spec = loaded.config.data
    seed = loaded.config.data_seed()
    points, labels = PLAYGROUND_GENERATORS[spec.dataset](spec.samples, spec.noise, generator(seed, "data"))
    return split_rows(points, labels, spec.test_fraction, spec.val_fraction, generator(seed, "split"))


def boundary_grid(points: np.ndarray, pad: float = PAD) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """GRID x GRID cell centres (rows from the bottom, x1 fastest) over the points' range padded by ``pad``,
    and the extent (left, right, bottom, top) of the whole grid."""
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    low, high = low - pad * span, high + pad * span
    centres = [low[d] + (np.arange(GRID) + 0.5) * (high[d] - low[d]) / GRID for d in range(2)]
    x1, x2 = np.meshgrid(centres[0], centres[1])
    return np.stack([x1.ravel(), x2.ravel()], axis=1), (low[0], high[0], low[1], high[1])


def boundary_values(restored, output: np.ndarray) -> tuple[np.ndarray, tuple[float, float], str]:
    """What the heatmap shows, its colour range and its colour-bar label: p(class 1) from the softmax of a
    cross-entropy model, the output in [-1, 1] of an mse (tanh) or regression model."""
    from nnctl.engine.losses import softmax

    head = restored.head
    if head.task == "regression":
        return np.clip(output[:, 0], -1, 1), (-1.0, 1.0), "network output"
    if head.classic:
        return np.clip(output[:, 0], 0, 1), (0.0, 1.0), "output (1 = class 1)"
    if restored.loaded.config.loss == "cross_entropy":
        return softmax(output.astype(np.float64))[:, 1], (0.0, 1.0), "p(class 1)"
    if output.shape[1] == 1:
        return np.clip(output[:, 0], -1, 1), (-1.0, 1.0), "output (-1 = class 0, +1 = class 1)"
    return np.clip(output[:, 1] - output[:, 0], -1, 1), (-1.0, 1.0), "output 1 - output 0"


def draw_boundary(figure: "Figure", ax: "Axes", restored, title: bool = True) -> None:
    """The Playground's picture: the network's output over the plane as a heatmap, the points on top."""
    from nnctl.data import load_data
    from nnctl.data.playground import make_features
    from nnctl.metrics import forward_in_chunks

    meta = restored.meta
    features = meta.get("playground_features")
    if meta.get("input_columns") == ["x1", "x2"] and features:
        train, val, test = playground_points(restored.loaded)
        every = np.concatenate([split.x for split in (train, val, test) if split is not None])
        shown = [(train, "train"), (test, "test")]
        grid, extent = boundary_grid(every)
        inputs = make_features(grid, features)
    elif getattr(restored.loaded.config.data, "dataset", None) == "logic" and meta.get("n_features") == 2:
        table = load_data(restored.loaded).test  # the truth table, each row once
        shown = [(table, "truth table")]
        grid, extent = boundary_grid(table.x, pad=0.5)
        inputs = grid.astype(np.float32)
    else:
        raise NnctlError(f"{restored.checkpoint}: the checkpoint's model does not read 2-D Playground points (x1, x2)")
    output = forward_in_chunks(restored.model, restored.preprocessor.apply(inputs))
    values, (vmin, vmax), what = boundary_values(restored, output)
    cmap = playground_colormap()
    image = ax.imshow(
        values.reshape(GRID, GRID), origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
        interpolation="bilinear", aspect="auto",
    )
    regression = restored.head.task == "regression"
    point_range = (-1.0, 1.0) if regression else (0.0, 1.0)
    # points filled with their label's colour, as in the Playground; training points edged in white (grey on
    # the pale regression map), test points are diamonds edged in black
    from matplotlib.lines import Line2D

    handles = []
    styles = {"train": ("0.45" if regression else "white", "o", 16), "test": ("black", "D", 13), "truth table": ("black", "o", 120)}
    for split, name in shown:
        if split is None:
            continue
        edge, marker, size = styles[name]
        shade = np.clip((split.y.astype(float) - point_range[0]) / (point_range[1] - point_range[0]), 0, 1)
        ax.scatter(split.x[:, 0], split.x[:, 1], c=cmap(shade), s=size, marker=marker, edgecolors=edge, linewidths=0.7, zorder=3)
        handles.append(
            Line2D([], [], linestyle="none", marker=marker, markersize=5, markerfacecolor="0.6",
                   markeredgecolor="0.45" if edge == "white" else edge, label=f"{name} ({len(split)})")
        )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_label("boundary")
    if title:
        ax.set_title(f"decision boundary: {what}" if not regression else f"{restored.loaded.config.data.dataset}: {what}")
    # below the axes, so that it hides no part of the map
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=len(handles), fontsize="small", frameon=False)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.85)
    colorbar.set_label(what + ("" if regression else "  (orange = class 0, blue = class 1)"))


def draw_function(ax: "Axes", restored, title: bool = True) -> None:
    """The learned curve over the true function, and the training (and test) samples."""
    from nnctl.data import load_data
    from nnctl.data.synthetic import FUNCTIONS
    from nnctl.metrics import forward_in_chunks

    spec = restored.loaded.config.data
    if getattr(spec, "dataset", None) != "function":
        raise NnctlError(f"{restored.checkpoint}: --kind function needs data.dataset: function")
    low, high = spec.range
    x = np.linspace(low, high, 400)
    learned = forward_in_chunks(restored.model, restored.preprocessor.apply(x.reshape(-1, 1).astype(np.float32)))[:, 0]
    data = load_data(restored.loaded)
    ax.plot(x, FUNCTIONS[spec.fn](x), color="0.25", linestyle="--", linewidth=1.5, label=f"true {spec.fn}(x)", zorder=2)
    ax.scatter(data.train.x[:, 0], data.train.y, s=12, color=ORANGE, alpha=0.8, label=f"train ({len(data.train)})", zorder=1)
    if data.test is not None:
        ax.scatter(
            data.test.x[:, 0], data.test.y, s=14, facecolors="none", edgecolors="0.3", linewidths=0.8,
            label=f"test ({len(data.test)})", zorder=1,
        )
    ax.plot(x, learned, color=BLUE, linewidth=2.2, label="network", zorder=3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_label("function")
    if title:
        ax.set_title(f"function fit: {spec.fn} on [{low:.4g}, {high:.4g}]")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")


# -------------------------------------------------------------------------------------------- output


def render_png(figure: "Figure", metadata: dict | None = None) -> bytes:
    """The figure as PNG bytes, at the figure's own dpi (so pixel positions match its transforms)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, metadata=metadata)
    return buffer.getvalue()


def write_png(path: Path, figure: "Figure", runs: Sequence[RunData]) -> Path:
    """Write atomically; the PNG's text chunks name the runs and their legend labels."""
    import nnctl

    labels = run_labels([run.config for run in runs], [run.name for run in runs])
    metadata = {
        "Title": figure_title(runs),
        "Description": "\n".join(f"{run.path}: {label}" for run, label in zip(runs, labels)),
        "Software": f"nnctl {nnctl.__version__}",
    }
    data = render_png(figure, metadata)
    path = Path(path)
    write_output(path, data)
    return path


def sweep_figure(folder: Path, metric: str | None = None) -> "Figure":
    """A sweep folder: the metric (mean ± std over seeds, from summary.csv) against each swept parameter,
    one panel per parameter; the points that share the other parameters' values are joined by a line."""
    import csv

    from nnctl.sweeps import load_sweep_dir

    config = load_sweep_dir(folder).config
    metric = metric or config.metric
    if not (folder / "summary.csv").is_file():
        raise NnctlError(f"{folder}: no summary.csv yet (the sweep did not finish); continue it with nnctl sweep --resume")
    with open(folder / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [row for row in rows if row.get(f"{metric}_mean")]
    if not rows:
        raise NnctlError(f"{folder}: summary.csv has no completed values of {metric!r}")
    parameters = list(config.parameters)
    if not parameters:
        return _seeds_figure(folder, config, metric, rows[0])
    figure = new_figure(4.6 * len(parameters), 3.8)
    axes = figure.subplots(1, len(parameters), squeeze=False)[0]
    for ax, parameter in zip(axes, parameters):
        values = sorted({row[parameter] for row in rows}, key=_sort_key)
        numeric = all(is_number(v) for v in values) and config.method != "grid"
        position = {v: (float(v) if numeric else i) for i, v in enumerate(values)}
        others = [p for p in parameters if p != parameter]
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(row[p] for p in others), []).append(row)
        colors = run_colors(len(groups))
        for color, (key, members) in zip(colors, sorted(groups.items())):
            members.sort(key=lambda r: position[r[parameter]])
            x = [position[r[parameter]] for r in members]
            y = [float(r[f"{metric}_mean"]) for r in members]
            err = [float(r[f"{metric}_std"] or 0) for r in members]
            label = ", ".join(f"{p}={v}" for p, v in zip(others, key)) or None
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=color, label=label, linestyle="-" if len(x) > 1 and config.method == "grid" else "none")
        if not numeric:
            ax.set_xticks(range(len(values)), values, rotation=30 if max(len(v) for v in values) > 6 else 0)
        elif min(float(v) for v in values) > 0 and max(float(v) for v in values) / min(float(v) for v in values) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(parameter)
        ax.set_ylabel(f"{metric} (mean ± std over seeds)" if any(int(row.get("count") or 1) > 1 for row in rows) else metric)
        ax.grid(alpha=0.3)
        if others and len(groups) <= 8:
            ax.legend(fontsize=7)
    figure.suptitle(f"sweep {config.name}: {metric} ({config.mode})")
    return figure


def _seeds_figure(folder: Path, config, metric: str, row: dict) -> "Figure":
    """A sweep over seeds alone: the metric of each seed's run, with the mean and ± one std (summary.csv's)."""
    from nnctl.sweeps import Ledger

    records = list(Ledger(folder / "trials.jsonl").latest().values())
    values = sorted(
        (record["seed"], record["metrics"][metric])
        for record in records
        if record["event"] == "completed" and record.get("metrics", {}).get(metric) is not None
    )
    mean, std = float(row[f"{metric}_mean"]), float(row[f"{metric}_std"] or 0)
    others = [f"+{count} {event}" for event in ("failed", "diverged", "pruned") if (count := sum(r["event"] == event for r in records))]
    figure = new_figure(max(6.4, 0.35 * len(values) + 2), 3.8)
    ax = figure.subplots()
    positions = range(len(values))
    ax.axhspan(mean - std, mean + std, color="tab:blue", alpha=0.15, label="± 1 std")
    ax.axhline(mean, color="tab:blue", label=f"mean {mean:.4g}")
    ax.plot(positions, [value for _, value in values], "o", color="tab:orange", label="a seed's run")
    ax.set_xticks(positions, [str(seed) for seed, _ in values], rotation=90 if len(values) > 20 else 0)
    ax.set_xlabel("seed")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    seeds = f"{len(values)} seed{'s' if len(values) != 1 else ''}" + (f" ({', '.join(others)})" if others else "")
    figure.suptitle(f"sweep {config.name}: {metric} over {seeds}, {mean:.4g} ± {std:.2g}")
    return figure


def _sort_key(text: str):
    return (0, float(text), "") if is_number(text) else (1, 0.0, text)


def plot(paths: Sequence[str | Path], out: str | Path | None = None, metric: str | None = None, kind: str = "auto") -> Path:
    """``nnctl plot``: draw the runs' figure and write it to ``out`` (default: ``<run>/plot.png`` for one
    run, ``plot.png`` in the current folder for several; ``<sweep>/plot.png`` for a sweep folder).
    Returns the path written."""
    from nnctl.sweeps import is_sweep_dir

    require_matplotlib()
    if out is not None and Path(out).suffix.lower() != ".png":
        raise NnctlError(f"--out: {out}: the figure is written as PNG; give a file name ending in .png")
    if len(paths) == 1 and is_sweep_dir(paths[0]):
        folder = Path(paths[0])
        target = Path(out) if out is not None else folder / "plot.png"
        write_output(target, render_png(sweep_figure(folder, metric)))
        return target
    runs = resolve_runs(paths)
    figure = make_figure(runs, kind, metric)
    target = Path(out) if out is not None else (runs[0].path / "plot.png" if len(runs) == 1 else Path("plot.png"))
    return write_png(target, figure, runs)


def write_run_plots(run_dir: Path) -> list[Path]:
    """The figures of one run, into its folder (the ``training.plots`` key): ``curves.png`` when it has
    metrics, and ``boundary.png`` (2-D Playground data) or ``function.png`` (1-D function data) when it
    has a checkpoint.  Returns the paths written."""
    require_matplotlib()
    run = load_run(run_dir)
    written = []
    if run.rows:
        figure = curves_figure([run], curve_panels([run], None))
        written.append(write_png(run.path / RUN_PLOT_FILES["curves"], figure, [run]))
    if run.panel_kind and run.has_checkpoint:
        figure = data_figure([run], run.panel_kind)
        written.append(write_png(run.path / RUN_PLOT_FILES[run.panel_kind], figure, [run]))
    return written

"""What the CLI shows: a live progress bar on a terminal, plain lines otherwise, and result tables."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nnctl.training import Reporter

#: at most this many plain progress lines per run when stdout is not a terminal
PLAIN_LINES = 50


def format_row(row: dict) -> str:
    """A progress line's metrics: ``loss 0.6931  accuracy 0.5000``; counts (``rollbacks 1``) as integers."""
    shown = [k for k in row if k not in ("epoch", "lr", "train_seconds")]
    return "  ".join(f"{k} {row[k]}" if isinstance(row[k], int) else f"{k} {row[k]:.4f}" for k in shown)


class RichReporter(Reporter):
    def __init__(self, console: Console):
        self.console = console

    def start(self, run_dir, total_epochs, num_params, first_epoch=1):
        self.console.print(f"run folder [bold]{run_dir}[/]  ({num_params:,} parameters)", highlight=False)
        self.progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_epochs, completed=first_epoch - 1, stats="")

    def epoch(self, row):
        self.progress.update(self.task, advance=1, stats=format_row(row))

    def end(self):
        self.progress.stop()


class PlainReporter(Reporter):
    """One line per epoch, or per few epochs for long runs; never control characters."""

    def __init__(self, stream):
        self.stream = stream

    def start(self, run_dir, total_epochs, num_params, first_epoch=1):
        self.total = total_epochs
        self.every = max(1, math.ceil(total_epochs / PLAIN_LINES))
        print(f"run folder {run_dir}  ({num_params:,} parameters)", file=self.stream, flush=True)

    def epoch(self, row):
        epoch = row["epoch"]
        if epoch % self.every == 0 or epoch == self.total or epoch == 1:
            print(f"epoch {epoch}/{self.total}  {format_row(row)}", file=self.stream, flush=True)


def make_reporter(json_output: bool, quiet: bool) -> Reporter:
    """Progress on stdout: a live bar on a terminal, else plain lines; none with --quiet.
    With --json stdout carries only the result, so progress goes to stderr, and only to a terminal."""
    if quiet:
        return Reporter()
    if json_output:
        return RichReporter(Console(stderr=True)) if sys.stderr.isatty() else Reporter()
    return RichReporter(Console()) if sys.stdout.isatty() else PlainReporter(sys.stdout)


def print_results(metrics: dict, run_dir: Path | None, title: str) -> None:
    console = Console()
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, metric_text(key, value))
    console.print(table)
    if run_dir is not None:
        console.print(f"run folder: {run_dir}", highlight=False, soft_wrap=True)


def metric_text(key: str, value) -> str:
    """A value of a results table: metrics to 4 decimals, the training time in seconds, nothing for None."""
    if key == "train_seconds_total" and isinstance(value, (int, float)):
        return f"{value:.2f} s"
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def json_line(obj) -> str:
    """Strict JSON (NaN and infinities become null) on one line."""
    from nnctl.runs import json_text

    return json_text(obj)


class DownloadProgress:
    """A rich download bar per file (``nnctl data fetch``), plain lines when stdout is not a terminal."""

    def __enter__(self):
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        if self.live:
            from rich.progress import DownloadColumn, TransferSpeedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=self.console
            )
            self.progress.start()
        self.task = None
        return self

    def __exit__(self, *exc):
        if self.live:
            self.progress.stop()

    def start(self, name, total, done):
        if self.live:
            self.task = self.progress.add_task(name, total=total, completed=done)
        else:
            resumed = f", resuming at {done:,} bytes" if done else ""
            size = f"{total:,} bytes" if total else "size unknown"
            print(f"downloading {name} ({size}{resumed})", file=sys.stderr, flush=True)

    def advance(self, n):
        if self.live and self.task is not None:
            self.progress.advance(self.task, n)

    def finish(self, name, status):
        if not self.live or status == "verified":
            print(f"{name}: {status}", file=sys.stderr, flush=True)


def print_dataset(data, dataset_name: str) -> None:
    console = Console()
    table = Table(title=f"data: {dataset_name} ({data.task})")
    table.add_column("split")
    table.add_column("rows", justify="right")
    if data.task == "classification":
        table.add_column("rows per class")
    for name in ("train", "val", "test"):
        split = data.split(name)
        if split is None:
            continue
        cells = [name, f"{len(split):,}"]
        if data.task == "classification":
            counts = np.bincount(split.y, minlength=data.n_classes)
            cells.append(", ".join(f"{data.class_names[i]}: {c}" for i, c in enumerate(counts)))
        table.add_row(*cells)
    console.print(table)
    shape = f", images {data.image_shape[0]}x{data.image_shape[1]}" if data.image_shape else ""
    names = data.feature_names if len(data.feature_names) <= 10 else data.feature_names[:5] + ["..."] + data.feature_names[-2:]
    console.print(f"{plural(data.n_features, 'feature')}{shape}: {', '.join(names)}", highlight=False)
    if data.task == "classification":
        console.print(f"{plural(data.n_classes, 'class', 'classes')}: {', '.join(data.class_names)}", highlight=False)


class SweepReporter:
    """One line per finished trial (trials take seconds; a line each is readable on a terminal and in a log)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.done = 0

    def trial(self, event: str, trial, outcome: dict) -> None:
        if self.quiet or event == "running":
            return
        self.done += 1
        params = ", ".join(f"{k}={v}" for k, v in trial.params.items())
        metrics = outcome.get("metrics", {})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("test_"))
        detail = shown if event == "completed" else outcome.get("error", "")
        print(f"[{self.done}] {event:9s} {params + '  ' if params else ''}seed {trial.seed}  {detail}", flush=True)


def print_leaderboard(sweep, result, limit: int = 15) -> None:
    config = sweep.config
    console = Console()
    metric = config.metric
    several = any((row.get("count") or 0) > 1 for row in result.rows)  # no "± 0.0000" for single seeds
    table = Table(title=f"{config.name}: {metric} ({config.mode})" + (", mean ± std over seeds" if several else ""))
    table.add_column("#", justify="right")
    for key in config.parameters:
        table.add_column(key)
    table.add_column(metric, justify="right")
    table.add_column("seeds", justify="right")
    for rank, row in enumerate(result.rows[:limit], start=1):
        mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
        value = ("pruned" if row.get("pruned") else "failed") if mean is None else f"{mean:.4f}" + (f" ± {std:.4f}" if (row.get("count") or 0) > 1 and std is not None else "")
        seeds = f"{row['count']}" + "".join(f" (+{row[k]} {k})" for k in ("failed", "pruned") if row.get(k))
        table.add_row(str(rank), *(str(row[key]) for key in config.parameters), value, seeds)
    console.print(table)
    if len(result.rows) > limit:
        console.print(f"... {len(result.rows) - limit} more rows in summary.csv", highlight=False)
    console.print(f"sweep folder: {result.folder}", highlight=False, soft_wrap=True)


#: ``runs list``: the columns beside the run's name (key, header), in the order shown
RUN_LIST_COLUMNS = (
    ("status", "status"), ("data.dataset", "dataset"), ("optimizer.name", "optimizer"), ("optimizer.lr", "lr"),
    ("training.epochs", "epochs"), ("seed", "seed"), ("test_accuracy", "accuracy"), ("test_r2", "r2"),
    ("test_loss", "loss"), ("test_mae", "mae"),
)  # fmt: skip
#: when the table is wider than the terminal: first the columns with one value for every run move to a
#: line below the table, then columns are left out in this order (other test metrics before all of them)
RUN_LIST_DROP_ORDER = ("test_mae", "seed", "data.dataset", "training.epochs", "optimizer.name", "optimizer.lr", "test_loss", "test_r2", "test_accuracy", "status")


def format_value(value, digits: int = 4) -> str:
    """A value for a table cell: integers as integers, other numbers with ``digits`` significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.{digits}g}"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 feature``, ``2 features``."""
    return f"{count:,} {noun if count == 1 else (plural_form or noun + 's')}"


def _run_list_cells(entries: list[dict]) -> dict[str, list[str]]:
    """key -> one cell per run, for the known columns and the other test metrics any run has."""
    metrics = sorted({k for e in entries for k in e["metrics"] if k.startswith("test_")})
    keys = [key for key, _ in RUN_LIST_COLUMNS] + [m for m in metrics if m not in dict(RUN_LIST_COLUMNS)]
    cells = {}
    for key in keys:
        if key == "status":
            values = [entry["status"] for entry in entries]
        elif key.startswith("test_"):
            values = [entry["metrics"].get(key) for entry in entries]
        else:
            values = [entry["config"].get(key) for entry in entries]
        if any(value is not None for value in values):
            cells[key] = [format_value(value) for value in values]
    return cells


def print_run_list(entries: list[dict], folder) -> None:
    """The runs as a table that fits the terminal (80 columns when stdout is not one, or $COLUMNS) without
    cutting a value: columns that do not fit are named below it (``--json`` has them all)."""
    from rich import box
    from rich.measure import Measurement

    console = Console()
    if not entries:
        console.print(f"no run folders in {folder}", highlight=False, soft_wrap=True)
        return
    headers = dict(RUN_LIST_COLUMNS)
    names = [Path(entry["run_dir"]).name for entry in entries]
    cells = _run_list_cells(entries)
    shown = list(cells)
    same = [key for key in shown if len(entries) > 1 and len(set(cells[key])) == 1 and cells[key][0]]
    hidden: list[str] = []
    extra = [key for key in shown if key not in headers]

    def table_for(keys) -> Table:
        table = Table(title=f"runs in {folder} (metrics: test split)", box=box.SIMPLE_HEAD, header_style="bold")
        table.add_column("run", overflow="fold")
        for key in keys:
            table.add_column(headers.get(key, key.removeprefix("test_")), justify="left" if key in ("status", "data.dataset", "optimizer.name") else "right", no_wrap=True)
        for i, name in enumerate(names):
            table.add_row(name, *(cells[key][i] for key in keys))
        return table

    def too_wide(keys) -> bool:
        return Measurement.get(console, console.options.update_width(10_000), table_for(keys)).maximum > console.width

    for key in same:  # first: the columns with one value for every run
        if not too_wide(shown):
            break
        shown.remove(key)
    for key in extra + [k for k in RUN_LIST_DROP_ORDER if k in shown]:
        if not too_wide(shown):
            break
        if key in shown:
            shown.remove(key)
            hidden.append(key)
    console.print(table_for(shown))
    common = [f"{headers.get(k, k)} {cells[k][0]}" for k in same if k not in shown]
    if common:
        console.print(f"every run: {', '.join(common)}", highlight=False, soft_wrap=True)
    if hidden:
        listed = ", ".join(headers.get(k, k) for k in hidden)
        console.print(f"not shown at {console.width} columns: {listed} (nnctl runs list --json has every value)", highlight=False, soft_wrap=True)
    _print_latest_references(entries, folder, console)


def _print_latest_references(entries: list[dict], folder, console: Console) -> None:
    """For the names with several runs: which run ``FOLDER/NAME@latest`` means."""
    from nnctl.runref import natural_key, newest

    groups: dict[str, list[Path]] = {}
    for entry in entries:
        if entry.get("name") is not None:
            groups.setdefault(entry["name"], []).append(Path(entry["run_dir"]))
    repeated = sorted((name for name, paths in groups.items() if len(paths) > 1), key=natural_key)
    if repeated:
        pairs = ", ".join(f"{name}@latest = {newest(groups[name]).name}" for name in repeated)
        console.print(f"{Path(folder)}/NAME@latest is the newest run of NAME: {pairs}", highlight=False, soft_wrap=True)


def print_comparison(comparison: dict) -> None:
    console = Console()
    table = Table(title="runs compared")
    table.add_column("", overflow="fold")
    for run in comparison["runs"]:
        table.add_column(Path(run).name, justify="right", overflow="fold")
    table.add_row("status", *map(str, comparison["status"]))
    for key, values in comparison["differing_config"].items():
        table.add_row(key, *map(str, values))
    for name, values in comparison["metrics"].items():
        table.add_row(name, *(format_value(v) if name != "train_seconds_total" or v is None else f"{v:.2f} s" for v in values))
    console.print(table)

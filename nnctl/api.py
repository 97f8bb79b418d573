"""nnctl from Python: scripts and notebooks train, read, predict and sweep without a shell.

    import nnctl

    run = nnctl.train("configs/spiral.yaml", overrides={"optimizer.lr": 0.1})
    run.summary["test_accuracy"], run.column("train_loss")
    run.predict([[0.5, 1.0], [-2.0, 0.3]])               # the class names nnctl predict prints
    grid = nnctl.sweep("configs/spiral.yaml", params={"optimizer.lr": [0.1, 0.03]}, seeds=[0, 1])
    grid.best_params                                      # {'optimizer.lr': 0.03}: summary.csv's best point

Each function runs the code of its command -- ``train`` is ``nnctl train``, ``load(...).predict`` is
``nnctl predict``, ``sweep`` is ``nnctl sweep`` -- so the same config and seed give the same numbers, the same
run folders and the same error messages, raised as ``NnctlError`` (an OSError, such as a full disk, as well).
Unlike the commands, nothing is printed unless ``progress=True``, and nothing exits the interpreter.

Signals: while a run trains in the main thread, SIGINT and SIGTERM stop it at a checkpoint as they stop
``nnctl train``, and the handlers that were in place before are put back afterwards.  A Ctrl-C (a notebook's
interrupt) then raises KeyboardInterrupt, which says how to resume; after a SIGTERM the run is returned with
status ``interrupted``.  Sweeps do the same.

Nothing heavy is imported until a function is called: ``import nnctl`` stays as cheap as the CLI needs it.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from nnctl.errors import NnctlError, from_os_error, one_of

if TYPE_CHECKING:  # pragma: no cover - for annotations only
    import numpy as np

    from nnctl.config import LoadedConfig
    from nnctl.sweeps import Sweep as SweepSpec
    from nnctl.sweeps import SweepResult
    from nnctl.training import RunResult

#: a sweep's leaderboard shows this many rows in a notebook (summary.csv has them all)
LEADERBOARD_ROWS = 15


def _user_errors(function):
    """An OSError (a full disk, a read-only folder) raised as the NnctlError the CLI would print."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError as exc:
            raise from_os_error(exc) from None

    return wrapper


# ------------------------------------------------------------------------------------------- training


@_user_errors
def train(
    config: str | os.PathLike | Mapping,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
    *,
    out: str | os.PathLike = "runs",
    run_dir: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool = False,
) -> Run:
    """Train as ``nnctl train CONFIG`` does, and return the run.

    ``config``: the path of an experiment's YAML file, or a dict of the same structure, validated as a file is
    (errors name the place: ``<dict>: optimizer.lr: ...``; data paths in a dict are relative to the current
    folder).  ``overrides``: ``{"optimizer.lr": 0.1}`` or ``["optimizer.lr=0.1"]``, applied as ``--set`` is.
    ``out``, ``run_dir``, ``name``: as ``--out``, ``--run-dir``, ``--name``.  ``progress``: print what
    ``nnctl train`` prints while training.

    A run that diverges is returned (status ``diverged``, ``message`` says why), as its folder is complete."""
    from nnctl.training import run_training

    changes = [*_override_list(overrides), *([] if name is None else [f"name={_yaml_text(name, 'name')}"])]
    loaded = _load_config(config, changes)
    command = ["nnctl.train", _source(config), *changes]
    result = run_training(loaded, Path(out), reporter=_reporter(progress), command=command, run_dir=None if run_dir is None else Path(run_dir))
    return _returned(result)


@_user_errors
def load(run_dir: str | os.PathLike) -> Run:
    """The run in a folder that ``nnctl train`` (or ``train``) wrote; ``RUNS/NAME@latest`` names the newest run of
    NAME.  A folder that is not a run, or whose run.json, summary.json or config.yaml is damaged, is refused with
    the message the CLI gives."""
    from nnctl.config import load_config
    from nnctl.runref import resolve_run
    from nnctl.runs import RunFolder, is_run_dir

    path = resolve_run(Path(run_dir))
    if not path.exists():
        raise NnctlError(f"{path}: no such run folder")
    if not is_run_dir(path):
        raise NnctlError(f"{path}: not a run folder (no run.json and config.yaml)")
    folder = RunFolder(path)
    folder.read_run_info()  # each is read now, so that a damaged file is refused here rather than later
    folder.read_summary()
    load_config(folder.config_path)
    return Run(path)


class Run:
    """A run folder.  Its properties read the folder's files each time they are asked, so a run that is still
    training (in another process) shows how far it got."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    @_user_errors
    def status(self) -> str | None:
        """running, completed, converged, not_converged, diverged, interrupted or failed (run.json's status)."""
        return self._folder().read_run_info().get("status")

    @property
    @_user_errors
    def message(self) -> str:
        """What the CLI printed after the run, if anything: why it diverged or failed, how to resume it."""
        info = self._folder().read_run_info()
        return info.get("message") or info.get("error") or ""

    @property
    @_user_errors
    def config(self) -> dict:
        """The resolved config the run was trained with (config.yaml: every default filled in)."""
        from nnctl.config import load_config

        return load_config(self._folder().config_path).config.to_dict()

    @property
    @_user_errors
    def summary(self) -> dict:
        """summary.json: how the run ended and its final and test metrics; {} while the run has none (still
        training, or killed)."""
        return self._folder().read_summary() or {}

    @property
    @_user_errors
    def metrics(self) -> list[dict]:
        """The per-epoch rows of metrics.jsonl (epoch, lr, train_loss, ..., train_seconds)."""
        return self._folder().read_metrics()

    @_user_errors
    def column(self, name: str) -> list:
        """One metric per epoch, e.g. ``run.column("val_loss")``."""
        rows = self.metrics
        if not any(name in row for row in rows):
            recorded = list(dict.fromkeys(key for row in rows for key in row))
            raise NnctlError(f"{self._folder().metrics_jsonl_path}: no column {name!r}; recorded: {', '.join(recorded) or 'no rows yet'}")
        return [row.get(name) for row in rows]

    @property
    @_user_errors
    def classes(self) -> list[str]:
        """The class names, in the order of ``predict_proba``'s columns ([] for a regression model)."""
        from nnctl.evaluation import restore

        return list(restore(self.path).meta.get("class_names") or [])

    @_user_errors
    def predict(self, x) -> np.ndarray:
        """What ``nnctl predict`` gives for these rows: class names (strings) for a classifier, numbers for
        regression.  ``x``: a NumPy array or a list of rows holding the columns ``nnctl predict`` reads from a
        file, in the training data's order -- a Playground model's raw points (x1, x2), images as
        (rows, height, width) or flattened."""
        import numpy as np

        return np.asarray(self._predict(x, with_proba=False).values)

    @_user_errors
    def predict_proba(self, x) -> np.ndarray:
        """The class probabilities ``nnctl predict --proba`` gives (float64, one column per class of
        ``classes``), for a classifier trained with cross-entropy."""
        return self._predict(x, with_proba=True).probabilities

    @_user_errors
    def evaluate(self, split: str = "test") -> dict:
        """``nnctl eval``: the split (test, val or train) recomputed as training made it, scored with the
        checkpoint summary.json names."""
        from nnctl.evaluation import SPLITS, evaluate_split, restore

        one_of("split", split, SPLITS)
        return evaluate_split(restore(self.path), split)

    @_user_errors
    def resume(self, overrides: Mapping[str, Any] | Iterable[str] | None = None, *, force: bool = False, progress: bool = False) -> Run:
        """``nnctl resume``: continue an interrupted run in its folder, bit-identical to an uninterrupted one.
        ``overrides`` and ``force`` as ``--set`` and ``--force`` (only training.epochs, training.checkpoint_every,
        training.loggers and name may change)."""
        from nnctl.resume import resume_run

        changes = _override_list(overrides)
        result = resume_run(self.path, None, changes, force, _reporter(progress), command=["nnctl.Run.resume", str(self.path), *changes])
        return _returned(result)

    def __repr__(self) -> str:
        try:
            summary, status = self.summary, self.status
        except (NnctlError, OSError):
            return f"Run({str(self.path)!r})"
        scores = "".join(f", {key}={summary[key]:.4g}" for key in ("test_accuracy", "test_r2", "test_loss") if isinstance(summary.get(key), float))
        return f"Run({str(self.path)!r}, status={status!r}{scores})"

    def _repr_html_(self) -> str:
        """A notebook shows the summary as a table and, when matplotlib is installed, the learning curves beside it
        (``nnctl plot RUN --kind curves``)."""
        import base64
        import html

        from nnctl.console import metric_text

        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(key)}</td><td style='text-align:right'>{html.escape(metric_text(key, value))}</td></tr>"
            for key, value in self.summary.items()
        )
        table = f"<table><caption>{html.escape(str(self.path))}: {html.escape(str(self.status))}</caption>{rows}</table>"
        picture = self._picture()
        if picture is None:
            return table
        image = f"<img alt='learning curves of {html.escape(str(self.path))}' src='data:image/png;base64,{base64.b64encode(picture).decode()}'>"
        return f"<div style='display:flex;gap:1em;align-items:flex-start'>{table}{image}</div>"

    def _picture(self) -> bytes | None:
        """The learning curves as PNG; None without matplotlib, or without per-epoch metrics to draw."""
        from nnctl import plots

        try:
            return plots.render_png(plots.make_figure([plots.load_run(self.path)], kind="curves"))
        except NnctlError:
            return None

    def _folder(self):
        from nnctl.runs import RunFolder

        return RunFolder(self.path)

    def _predict(self, x, with_proba: bool):
        import numpy as np

        from nnctl.data.files import feature_array
        from nnctl.evaluation import restore
        from nnctl.predict import model_inputs, predict_rows

        restored = restore(self.path)
        try:
            array = np.asarray(x)
        except ValueError:  # rows of different lengths
            raise NnctlError("x: not a table of rows: its rows differ in length") from None
        return predict_rows(restored, model_inputs(restored, feature_array(array, "x"), "x"), with_proba=with_proba)


# --------------------------------------------------------------------------------------------- sweeps


@_user_errors
def sweep(
    spec: str | os.PathLike | Mapping,
    *,
    params: Mapping[str, list] | None = None,
    seeds: Iterable[int] | None = None,
    metric: str | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
    out: str | os.PathLike = "runs",
    workers: int | None = None,
    population: str | None = None,
    executor: str | None = None,
    address: str | None = None,
    fail_fast: bool = False,
    progress: bool = False,
) -> Sweep:
    """Run a sweep as ``nnctl sweep`` does, and return its results.  ``spec`` is one of:

    - a sweep file, or a dict of the same structure, whose ``base`` is a path (in a dict, relative to the current
      folder) or the base config itself as a dict;
    - an experiment config (path or dict) with ``params={"optimizer.lr": [0.3, 0.1]}``: the grid of those
      values, trained with each of ``seeds`` (default [0]) and ranked by ``metric`` (as ``-p``, ``--seeds``,
      ``--metric``); with ``seeds`` alone, the config once per seed (how stable is it?);
    - a sweep folder: the sweep is continued (``--resume``); a finished one is summarized again.

    ``overrides`` (as ``--set``) apply to every trial; ``out``, ``workers``, ``population``, ``executor``,
    ``address``, ``fail_fast`` are the options of the same names.  A trial that fails or diverges is not raised: it
    is in ``failed``, with the error the CLI prints.  ``progress``: print a line per finished trial."""
    import signal

    from nnctl import sweeps

    if executor is not None:
        one_of("executor", executor, sweeps.EXECUTORS)
    if population is not None:
        one_of("population", population, sweeps.POPULATION_MODES)
    changes = _override_list(overrides)
    resume_dir = None
    if params is not None or (seeds is not None and not _is_sweep_spec(spec)):
        definition = _grid(spec, params or {}, seeds, metric, changes)
    elif metric is not None and not _is_sweep_spec(spec):
        raise NnctlError("metric ranks the points of a sweep: give params and/or seeds with it")
    elif seeds is not None or metric is not None:
        raise NnctlError("seeds and metric go with an experiment config (with params, or seeds alone); a sweep file or dict sets its own")
    elif isinstance(spec, Mapping):
        definition = _sweep_from_dict(spec, changes)
    elif isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir():
        if changes:
            raise NnctlError(f"{spec}: a sweep folder continues as it was defined: overrides cannot change it")
        resume_dir = Path(spec)
        definition = sweeps.load_sweep_dir(resume_dir)
    elif isinstance(spec, (str, os.PathLike)):
        definition = sweeps.load_sweep(Path(spec), changes)
    else:
        raise NnctlError(f"spec: expected a sweep file, a dict or a sweep folder, not {type(spec).__name__}")
    reporter = None
    if progress:
        from nnctl.console import SweepReporter

        reporter = SweepReporter()
    result = sweeps.run_sweep(
        definition, Path(out), resume_dir=resume_dir, workers=workers, executor_type=executor, address=address,
        fail_fast=fail_fast, progress=reporter.trial if reporter else None, population=population,
    )  # fmt: skip
    if result.interrupted == signal.SIGINT:
        stopped = result.stopped_message(definition, ["nnctl", "sweep", "--resume", str(result.folder)])
        raise KeyboardInterrupt(f"{stopped} (from Python: nnctl.sweep({str(result.folder)!r}))")
    return Sweep(result, definition)


class Sweep:
    """A sweep's results: summary.csv's rows (best first), the best parameter point, and its trials as runs."""

    def __init__(self, result: SweepResult, definition: SweepSpec):
        import signal

        config = definition.config
        self.folder: Path = result.folder
        self.name: str = config.name
        self.metric: str = config.metric
        self.mode: str = config.mode
        self.parameters: list[str] = list(config.parameters)
        #: summary.csv's rows as dicts, best first: each parameter point's values, count, failed, pruned, and
        #: the mean and std over its seeds of every metric (None where undefined)
        self.rows: list[dict] = result.rows
        #: the ledger's record of each trial that failed or diverged (event, params, seed, error, run_dir)
        self.failed: list[dict] = result.failed
        #: the signal that stopped the sweep (SIGTERM), or None
        self.interrupted: str | None = None if result.interrupted is None else signal.Signals(result.interrupted).name
        self._trials = list(result.outcomes.values())

    @property
    def best(self) -> dict | None:
        """The leaderboard's first row: the parameter point with the best mean ``metric``."""
        if not self.rows or self.rows[0].get(f"{self.metric}_mean") is None:
            return None
        return self.rows[0]

    @property
    def best_params(self) -> dict | None:
        """The best point's parameters, ready for ``nnctl.train(config, overrides=sweep.best_params)``."""
        return None if self.best is None else {key: self.best[key] for key in self.parameters}

    @property
    def runs(self) -> list[Run]:
        """Every trial that has a run folder, in the sweep's order (each point's seeds together)."""
        return [Run(self.folder / trial["run_dir"]) for trial in self._trials if trial.get("run_dir") and (self.folder / trial["run_dir"]).is_dir()]

    def __repr__(self) -> str:
        best = "" if self.best is None else f", best {self.metric} {self.best[f'{self.metric}_mean']:.4g} at {self.best_params}"
        return f"Sweep({str(self.folder)!r}, {len(self.rows)} points{best})"

    def _repr_html_(self) -> str:
        import html

        columns = [*self.parameters, f"{self.metric}_mean", f"{self.metric}_std", "count", "failed", "pruned"]
        header = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(column)))}</td>" for column in columns) + "</tr>" for row in self.rows[:LEADERBOARD_ROWS]
        )
        more = f"<p>... {len(self.rows) - LEADERBOARD_ROWS} more rows in summary.csv</p>" if len(self.rows) > LEADERBOARD_ROWS else ""
        caption = f"{html.escape(self.name)}: {html.escape(self.metric)} ({self.mode}), best first, in {html.escape(str(self.folder))}"
        return f"<table><caption>{caption}</caption><tr>{header}</tr>{body}</table>{more}"


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _grid(base, params: Mapping, seeds, metric: str | None, overrides: list[str]) -> SweepSpec:
    """``nnctl sweep CONFIG -p key=v1,v2 --seeds ... --metric ...``, with the values as Python values."""
    from nnctl import sweeps
    from nnctl.yamlio import Locations

    if not isinstance(params, Mapping) or not (params or seeds is not None):
        raise NnctlError("params: give a dict of key paths to lists of values, e.g. {'optimizer.lr': [0.3, 0.1]} (or seeds alone)")
    if isinstance(base, Mapping):
        base_config = _load_config(base, []).config
        name, base_file, base_text = base_config.name, "base.yaml", base_config.to_yaml()
    elif isinstance(base, (str, os.PathLike)):
        name, base_file, base_text = Path(base).stem, str(Path(base).resolve()), None
    else:
        raise NnctlError(f"spec: expected an experiment config (a path or a dict) to sweep over, not {type(base).__name__}")
    data = {"name": name, "base": base_file, "parameters": _plain(params), "seeds": [0] if seeds is None else _plain(list(seeds)), "overrides": overrides}
    if metric is not None:
        data["metric"] = metric
    return sweeps.sweep_from_data(data, Locations("nnctl.sweep()"), Path.cwd(), base_text=base_text)


def _is_sweep_spec(spec) -> bool:
    """Whether ``spec`` is a sweep (a file or dict with ``base``, or a sweep folder) rather than an experiment config."""
    from nnctl import sweeps

    if isinstance(spec, Mapping):
        return "base" in spec
    return isinstance(spec, (str, os.PathLike)) and (Path(spec).is_dir() or sweeps.is_sweep_file(Path(spec)))


def _sweep_from_dict(spec: Mapping, overrides: list[str]) -> SweepSpec:
    """A sweep file's structure as a dict; its base config may be a dict too (written into the sweep folder)."""
    from nnctl import sweeps
    from nnctl.yamlio import Locations

    data = _plain(spec)
    base_text = None
    if isinstance(data.get("base"), dict):
        base_text = _load_config(data["base"], [], source="<dict>: base").config.to_yaml()
        data["base"] = "base.yaml"
    return sweeps.sweep_from_data(data, Locations("<dict>"), Path.cwd(), overrides, base_text)


# -------------------------------------------------------------------------------------------- helpers


def _load_config(config, overrides: list[str], source: str = "<dict>") -> LoadedConfig:
    """A config file as ``load_config`` reads it, or a dict validated as a file's data is."""
    from nnctl.config import load_config, validate_config
    from nnctl.yamlio import Locations

    if isinstance(config, Mapping):
        return validate_config(_plain(config), Locations(source), overrides)
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides)
    raise NnctlError(f"config: expected the path of a YAML file or a dict, not {type(config).__name__}")


def _source(config) -> str:
    return "<dict>" if isinstance(config, Mapping) else os.fspath(config)


def _override_list(overrides) -> list[str]:
    """``{"optimizer.lr": 0.1}`` (values as Python values) or ``["optimizer.lr=0.1"]`` (values as YAML text) as
    ``--set`` strings."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={_yaml_text(value, f'overrides: {key}')}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise NnctlError(f"overrides: {overrides!r}: give a list of 'key.path=value' strings, or a dict")
    changes = list(overrides)
    for change in changes:
        if not isinstance(change, str):
            raise NnctlError(f"overrides: {change!r} is not a 'key.path=value' string")
    return changes


def _yaml_text(value, where: str) -> str:
    """A Python value as the YAML text that reads back as it (a string stays a string: ``'0.1'``); ``where``
    names it in errors."""
    import yaml

    try:
        text = yaml.safe_dump(_plain(value), default_flow_style=True, width=float("inf"), allow_unicode=True)
    except yaml.YAMLError:
        raise NnctlError(f"{where}: {value!r} ({type(value).__name__}) is not a config value (numbers, text, lists, mappings)") from None
    return text.removesuffix("\n").removesuffix("\n...")


def _plain(value):
    """A copy in the types YAML holds: numbers of any kind (NumPy's too) as int and float, tuples as lists,
    paths as strings.  The caller's dicts and lists are never changed."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def _reporter(progress: bool):
    """None (quiet) or what ``nnctl train`` shows while training."""
    if not progress:
        return None
    from nnctl.console import make_reporter

    return make_reporter(json_output=False, quiet=False)


def _returned(result: RunResult) -> Run:
    """The run; a run a Ctrl-C stopped (at a checkpoint) raises KeyboardInterrupt, as the Ctrl-C would have."""
    import signal

    if result.status == "interrupted" and result.signal_number == signal.SIGINT:
        raise KeyboardInterrupt(f"{result.message} (from Python: nnctl.load({str(result.run_dir)!r}).resume())")
    return Run(result.run_dir)

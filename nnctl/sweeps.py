"""``nnctl sweep``: run a base config over a grid, random or TPE-chosen set of parameter points, each point
once per seed, on local worker processes or a Dask cluster, with a ledger that makes the sweep resumable.

A sweep folder holds::

    sweep.yaml       the resolved sweep file (with the population mode it was run with)
    base.yaml        the base config, when the sweep was given one as data (``nnctl.sweep`` from Python)
    trials.jsonl     the ledger: one line per event (pending, running, completed, failed, diverged, pruned,
                     interrupted)
    trials/<id>/     each trial's ordinary run folder; <id> is a hash of the trial's overrides and seed
    summary.csv      one row per parameter point: its parameters, mean and std over seeds of each metric
    optuna.db        (method tpe) the Optuna study, so that --resume continues it
    tensorboard/     (a base config with training.loggers: [tensorboard]) TensorBoard's HParams experiment

Each unit of work is its own process with one BLAS thread: a trial alone (``nnctl train``) or the trials of
one network shape as a population (``nnctl train-population``, ``population.py``), so a crash or a kill stays
inside its unit (a population's setup error fails its members together), and the numbers do not depend on
the executor, the number of workers or the grouping.

SIGINT (Ctrl-C) or SIGTERM stops a sweep: no new trial starts, the running ones are asked to stop (SIGTERM:
each checkpoints and exits; a second Ctrl-C kills them) and are recorded as interrupted, and ``--resume``
runs every trial that did not complete.
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import io
import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import numpy as np
import yaml
from pydantic import Discriminator, Field, PositiveInt, Tag, field_validator, model_validator

from nnctl.config import (
    ExperimentConfig,
    Strict,
    config_from_text,
    did_you_mean,
    flatten,
    load_config,
    validate_section,
)
from nnctl.errors import ConfigError, NnctlError
from nnctl.loggers import check_installed
from nnctl.runs import atomic_write_text, create_run_dir, json_text
from nnctl.yamlio import Locations, command_line_place, parse_yaml, read_yaml

# ------------------------------------------------------------------------------------------ the file


#: a sweep of more trials (parameter points x seeds) than this is refused before anything is written
MAX_SWEEP_TRIALS = 100_000
#: bounds of an int distribution: whole numbers a float holds exactly
MAX_INT_BOUND = 2**53

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Distribution(Strict):
    """A parameter drawn at random (method random or tpe)."""

    distribution: Literal["uniform", "loguniform", "int"] = Field(
        description="uniform, loguniform (uniform in log(value); low > 0) or int (whole numbers, low to high)"
    )
    low: FiniteFloat = Field(description="the smallest value")
    high: FiniteFloat = Field(description="the largest value")

    @model_validator(mode="after")
    def _check(self):
        if not self.low < self.high:
            raise ValueError(f"low must be below high (got low {self.low}, high {self.high})")
        if self.distribution == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.low})")
        if self.distribution == "int":
            for bound in (self.low, self.high):
                if not bound.is_integer() or abs(bound) > MAX_INT_BOUND:
                    raise ValueError(f"an int distribution needs whole-number bounds from -2**53 to 2**53 (got {bound})")
        if not math.isfinite(self.high - self.low):
            raise ValueError(f"the range from low {self.low} to high {self.high} is too wide to draw from")
        return self


ParameterSpec = Annotated[
    Union[Annotated[Annotated[list[Any], Field(min_length=1)], Tag("values")], Annotated[Distribution, Tag("distribution")]],
    Discriminator(lambda value: "distribution" if isinstance(value, (dict, Distribution)) else "values"),
]  # one error for a bad spec: a mapping is a distribution, anything else a list of values


EXECUTORS = ("local", "dask")
POPULATION_MODES = ("auto", "on", "off")


class Executor(Strict):
    """Where the trials run: local worker processes, or a Dask cluster."""

    type: Literal[EXECUTORS] = Field("local", description="local: worker processes on this machine; dask: a Dask cluster")
    workers: PositiveInt = Field(1, description="trials run at a time by the local executor, one BLAS thread each")
    address: str | None = Field(None, description="dask: the scheduler, e.g. tcp://host:8786")
    population: Literal[POPULATION_MODES] = Field(
        "auto", description="train the trials of one network shape as one population in one process: auto (small networks), on, off"
    )


class SweepConfig(Strict):
    """An nnctl sweep: a base config trained at many parameter points, each once per seed."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)] = Field(
        "sweep", description="the sweep's name: its folder is runs/sweeps/<name>-<timestamp>"
    )
    base: str = Field(description="the experiment config, relative to the sweep file")
    method: Literal["grid", "random", "tpe"] = Field(
        "grid", description="grid: every combination of the values; random, tpe: trials points, drawn at random or by Optuna's TPE"
    )
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=1, max_length=MAX_SWEEP_TRIALS)] = Field(
        [0], description="each parameter point runs once per seed; results are aggregated over the seeds"
    )
    metric: str | None = Field(
        None,
        description="the summary.json number to rank by: test_*, val_*, train_*, epochs_run, train_seconds_total;"
        " default: test_accuracy (classification) or test_r2 (regression), else the val_ or train_ one",
    )
    mode: Literal["max", "min"] | None = Field(None, description="whether the metric is best at its max or min; default: max for accuracy and r2, else min")
    parameters: dict[str, ParameterSpec] = Field(
        {},
        description="a key path of the base config (optimizer.lr): a list of values, or (random, tpe) a distribution;"
        " none: the base config once per seed (how stable is it?)",
    )
    trials: Annotated[int, Field(ge=1, le=MAX_SWEEP_TRIALS)] | None = Field(None, description="random / tpe: how many parameter points")
    seed: int = Field(0, description="seed of the random and TPE choices of parameter points")
    overrides: list[str] = Field([], description="--set values applied to the base config of every trial")
    executor: Executor = Field(Executor(), description="where the trials run: {type: local, workers: N} or {type: dask, address: ...}")

    @field_validator("parameters", mode="before")
    @classmethod
    def _bare_parameters(cls, value):
        return {} if value is None else value  # "parameters:" with nothing under it: the config once per seed

    @model_validator(mode="after")
    def _check(self):
        if self.mode is None and self.metric is not None:
            self.mode = default_mode(self.metric)
        if self.method == "grid":
            for path, spec in self.parameters.items():
                if isinstance(spec, Distribution):
                    raise ValueError(f"parameters.{path}: a grid takes a list of values; distributions need method random or tpe")
        elif not self.parameters:
            raise ValueError(f"method {self.method} draws parameter points: give parameters (or method grid, for seeds alone)")
        elif self.trials is None:
            raise ValueError(f"method {self.method} needs trials: N (how many parameter points to try)")
        if self.executor.type == "dask" and not self.executor.address:
            raise ValueError("executor dask needs an address, e.g. tcp://127.0.0.1:8786")
        return self


def default_mode(metric: str) -> str:
    return "max" if metric.endswith(("accuracy", "r2")) else "min"


@dataclass
class Sweep:
    config: SweepConfig
    base_path: Path | None  # the base config's file; None until run_sweep writes base_text into the sweep folder
    base: ExperimentConfig
    #: the resolved base config, when it was given as data rather than as a file (a dict, from the Python API):
    #: run_sweep writes it into the new sweep folder as base.yaml, the file the trials train from
    base_text: str | None = None


def load_sweep(path: Path, overrides: list[str] = ()) -> Sweep:
    data, locations = read_yaml(path)
    return sweep_from_data(data, locations, Path(path).parent, overrides)


def sweep_from_data(data: Any, locations: Locations, base_dir: Path, overrides: list[str] = (), base_text: str | None = None) -> Sweep:
    """A sweep from the data of a sweep file, whose ``base`` is relative to ``base_dir``; with ``base_text``, the
    base config itself (``base`` then names the file it becomes in the sweep folder)."""
    if not isinstance(data, dict):
        raise ConfigError([f"{locations.source}: a sweep file must be a mapping of keys (base, parameters, ...)"])
    if "base" not in data and {"model", "data"} & set(data):
        raise NnctlError(
            f"{locations.source}: an experiment config, not a sweep file (which names its config in base:); sweep it with"
            " -p key.path=v1,v2 and/or --seeds 0,1,2 (from Python: params=, seeds=)"
        )
    config = validate_section(SweepConfig, data, locations)
    config.overrides = [*config.overrides, *overrides]
    base_path = None if base_text is not None else (Path(base_dir) / config.base).resolve()
    return _checked(Sweep(config, base_path, None, base_text), locations)


def is_sweep_file(path: Path) -> bool:
    """Whether ``path`` holds a sweep (a mapping with ``base``) rather than an experiment config; False when it
    cannot be read (the reader that follows reports why)."""
    try:
        data, _ = read_yaml(path)
    except NnctlError:
        return False
    return isinstance(data, dict) and "base" in data


def one_line_sweep(base: Path, params: list[str], seeds: str | None, overrides: list[str], metric=None, mode=None) -> Sweep:
    """``nnctl sweep configs/spiral.yaml -p optimizer.lr=0.3,0.1 --seeds 0,1,2``: a grid over the values
    (``--seeds`` alone: the config once per seed)."""
    parameters = {}
    for spec in params:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise NnctlError(f"-p {spec}: expected key.path=value1,value2,... e.g. -p optimizer.lr=0.1,0.03")
        if key in parameters:
            raise NnctlError(f"-p {spec}: {key} is given twice; list all its values in one -p")
        # the limits of a file (nodes, depth, Python tags) hold for each value
        place = command_line_place("-p", spec)
        parameters[key] = [parse_yaml(v, place, inline=True)[0] if v.strip() else None for v in values.split(",")]
    if not parameters and not seeds:
        raise NnctlError(f"{base}: an experiment config needs -p key.path=v1,v2,... to sweep over, or --seeds 0,1,2 (or give a sweep file)")
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else [0]
    except ValueError:
        raise NnctlError(f"--seeds {seeds}: expected whole numbers separated by commas, e.g. 0,1,2") from None
    data = {"name": Path(base).stem, "base": str(Path(base).resolve()), "parameters": parameters, "seeds": seed_list, "overrides": overrides}
    if metric:
        data["metric"] = metric
    if mode:
        data["mode"] = mode
    return sweep_from_data(data, Locations("command line"), Path.cwd())


def _checked(sweep: Sweep, locations: Locations) -> Sweep:
    """Parameter paths must exist in the base config, and the metric must be one its runs produce; the
    number of trials must be sane and no trial may appear twice (two would share one folder)."""
    config = sweep.config
    _check_size(config, locations)
    if sweep.base_text is not None:
        base = config_from_text(sweep.base_text, locations.place(("base",)), config.overrides)
    elif not sweep.base_path.is_file():
        raise NnctlError(f"{locations.place(('base',))}: base: {sweep.base_path} not found")
    else:
        base = load_config(sweep.base_path, config.overrides)
    check_installed(base)  # the trials' loggers and the sweep's HParams data: one error before the sweep, not one per trial
    sweep.base = base.config
    known = flatten(sweep.base.to_dict())
    for path in config.parameters:
        parts = path.split(".")
        if not any(".".join(parts[:n]) in known for n in range(len(parts), 0, -1)):
            raise NnctlError(
                f"{locations.place(('parameters', path))}: parameters: unknown parameter path {path!r}{did_you_mean(path, list(known))}"
            )
    metrics = summary_metrics(sweep.base)
    if config.metric is None:  # the task's score on the first split its runs have
        score = "r2" if sweep.base.data.is_regression else "accuracy"
        config.metric = next((m for m in (f"test_{score}", f"val_{score}", f"train_{score}") if m in metrics), "train_loss")
        config.mode = config.mode or default_mode(config.metric)
    if config.metric not in metrics:
        raise NnctlError(
            f"{locations.place(('metric',))}: metric: no run of this sweep produces {config.metric!r}{did_you_mean(config.metric, metrics)}; "
            f"available: {', '.join(metrics)}"
        )
    if config.method == "grid" and grid_size(config) == 0:
        raise NnctlError(f"{locations.place(('parameters',))}: parameters: the grid is empty")
    return sweep


def grid_size(config: SweepConfig) -> int:
    """The number of grid points, computed without listing them."""
    return math.prod(len(spec) for spec in config.parameters.values() if isinstance(spec, list))


def _check_size(config: SweepConfig, locations: Locations) -> None:
    """Before anything is written: no value or seed twice, and at most MAX_SWEEP_TRIALS trials."""
    seen_seeds: set[int] = set()
    for index, seed in enumerate(config.seeds):
        if seed in seen_seeds:
            raise NnctlError(f"{locations.place(('seeds', index))}: seeds.{index}: seed {seed} appears twice; list each seed once")
        seen_seeds.add(seed)
    for path, spec in config.parameters.items():
        if not isinstance(spec, list):
            continue
        seen_values: set[str] = set()
        for index, value in enumerate(spec):
            text = json.dumps(value, sort_keys=True, default=str)
            if text in seen_values:
                raise NnctlError(
                    f"{locations.place(('parameters', path, index))}: parameters.{path}: the value {text[:60]} appears twice; list each value once"
                )
            seen_values.add(text)
    points = grid_size(config) if config.method == "grid" else (config.trials or 0)
    total = points * len(config.seeds)
    if total > MAX_SWEEP_TRIALS:
        what = f"{points:,} grid points" if config.method == "grid" else f"{points:,} trials"
        where = ("parameters",) if config.method == "grid" else ("trials",)
        raise NnctlError(
            f"{locations.place(where)}: {where[0]}: {what} x {len(config.seeds)} seeds = {total:,} trials; "
            f"a sweep may have at most {MAX_SWEEP_TRIALS:,}"
        )


def summary_metrics(base: ExperimentConfig) -> list[str]:
    """The numbers summary.json holds for a run of ``base``."""
    from nnctl.config import available_metrics

    kinds = ["loss", "mae", "r2"] if base.data.is_regression else ["loss", "accuracy"]
    metrics = [m for m in available_metrics(base)]
    has_test = getattr(base.data, "test_fraction", 0.5) > 0 or base.data.dataset in ("logic", "mnist", "fashion-mnist")
    if has_test:
        metrics += [f"test_{kind}" for kind in kinds]
    return metrics + ["epochs_run", "train_seconds_total"]


# ---------------------------------------------------------------------------------------- the trials


@dataclass
class Trial:
    params: dict[str, Any]
    seed: int
    point: int  # index of the parameter point

    @property
    def overrides(self) -> list[str]:
        # one BLAS thread per trial: workers x threads <= cores, and the same numbers on any executor
        return [f"{key}={json.dumps(value)}" for key, value in self.params.items()] + [f"seed={self.seed}", "training.threads=1"]

    @property
    def id(self) -> str:
        text = json.dumps({"params": self.params, "seed": self.seed}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def grid_points(config: SweepConfig):
    keys = list(config.parameters)
    for values in itertools.product(*(config.parameters[key] for key in keys)):
        yield dict(zip(keys, values))


def random_points(config: SweepConfig) -> list[dict]:
    rng = np.random.default_rng([config.seed, 7919])
    return [{key: sample(spec, rng) for key, spec in config.parameters.items()} for _ in range(config.trials)]


def sample(spec: ParameterSpec, rng: np.random.Generator):
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    if spec.distribution == "uniform":
        return float(rng.uniform(spec.low, spec.high))
    if spec.distribution == "loguniform":
        return float(math.exp(rng.uniform(math.log(spec.low), math.log(spec.high))))
    return int(rng.integers(int(spec.low), int(spec.high) + 1))


# -------------------------------------------------------------------------------------------- ledger


class Ledger:
    """trials.jsonl: append-only events, each line flushed and fsynced; the last event of a trial wins."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.Lock()

    def write(self, event: str, trial: Trial, **fields) -> None:
        record = {"event": event, "trial": trial.id, "params": trial.params, "seed": trial.seed, "time": time.time(), **fields}
        with self.lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json_text(record) + "\n")  # strict JSON: an undefined metric is null
            handle.flush()
            os.fsync(handle.fileno())

    def latest(self) -> dict[str, dict]:
        latest = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                latest[record["trial"]] = record
        return latest


# ------------------------------------------------------------------------------------ running a trial

TRIAL_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _load_prctl():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:  # not glibc Linux
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None  # loaded here: the child must not spend time on it


def _die_with_parent(parent: int) -> Callable[[], None]:
    """Linux: the trial process gets SIGKILL if the sweep process dies, so no orphan keeps writing.  If the
    sweep died between the fork and the prctl, the child has a new parent already and ends at once."""

    def arm():  # pragma: no cover - runs in the child before exec
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return arm


def start_process(command: list[str], on_start: Callable | None, target) -> subprocess.Popen:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **TRIAL_ENV},
        preexec_fn=_die_with_parent(os.getpid()) if _PRCTL else None,
        start_new_session=True,  # a terminal's Ctrl-C reaches the sweep only, which stops its trials once
    )
    if on_start:
        on_start(process, target)
    return process


def run_trial(
    base_path: str, overrides: list[str], run_dir: str | None = None, ship_files: bool = False, on_start: Callable | None = None
) -> dict:
    """Train one trial as its own ``nnctl train`` process; return its outcome (and, with ``ship_files``, the
    run folder's files, for a Dask worker on another machine).  Never raises for a failed trial."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="nnctl-trial-") as scratch:
        target = Path(run_dir) if run_dir else Path(scratch) / "run"
        command = [sys.executable, "-m", "nnctl", "train", str(base_path), "--run-dir", str(target), "--json"]
        for override in overrides:
            command += ["--set", override]
        process = start_process(command, on_start, target)
        stdout, stderr = process.communicate()
        try:
            summary = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
        except json.JSONDecodeError:
            summary = {}
        return trial_outcome(process.returncode, summary, stderr, target, time.time() - started, ship_files)


def run_population_job(
    base_path: str, members: list[tuple[list[str], str | None]], ship_files: bool = False, on_start: Callable | None = None
) -> list[dict]:
    """Train several trials of one network shape as one population, in one ``nnctl train-population``
    process; return each member's outcome, as ``run_trial`` would.  Never raises for a failed trial."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="nnctl-population-") as scratch:
        targets = [Path(run_dir) if run_dir else Path(scratch) / f"run-{i}" for i, (_, run_dir) in enumerate(members)]
        job = Path(scratch) / "job.json"
        job.write_text(json.dumps({"base": str(base_path), "members": [{"overrides": o, "run_dir": str(t)} for (o, _), t in zip(members, targets)]}))
        process = start_process([sys.executable, "-m", "nnctl", "train-population", str(job)], on_start, targets[0])
        stdout, stderr = process.communicate()
        summaries = {}
        for line in stdout.splitlines():
            try:
                record = json.loads(line)
                summaries[record["run_dir"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        duration = (time.time() - started) / len(members)
        return [trial_outcome(process.returncode, summaries.get(str(t), {}), stderr, t, duration, ship_files) for t in targets]


def trial_outcome(returncode: int | None, summary: dict, stderr: str, target: Path, duration: float, ship_files: bool) -> dict:
    """A trial's outcome from its process's exit and its summary (``--json``'s line)."""
    outcome = {"exit_code": returncode, "duration": duration}
    summary = dict(summary)
    summary.pop("run_dir", None)
    killed = returncode is not None and returncode < 0
    recovered = False
    if (killed or not summary) and summary.get("status") not in FINISHED:
        # a signal (a pruner's, a Ctrl-C's) that came too late to stop the training, only its exit; or a
        # population's process that ended before reporting a member that had finished
        found = finished_summary(target)
        summary, recovered = (found, True) if found else (summary, False)
    status = summary.get("status")
    if (returncode == 0 or killed or recovered) and status in FINISHED:
        outcome["status"] = "completed"
    elif status == "diverged":
        outcome["status"] = "diverged"
    elif status == "interrupted":  # stopped by a signal after checkpointing
        outcome["status"] = "interrupted"
    else:
        outcome["status"] = "failed"
    errors = [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]
    if summary.get("message"):  # a population's member: its own message, not the process's
        errors = [summary["message"]]
    if outcome["status"] != "completed":
        outcome["error"] = " ".join(errors) or (stderr.strip().splitlines() or [f"exit code {returncode}"])[-1]
        if killed:
            outcome["error"] = f"killed by {signal.Signals(-returncode).name}"
    outcome["metrics"] = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if ship_files and target.exists():
        outcome["files"] = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    return outcome


#: summary.json statuses of a run that trained to its end
FINISHED = ("completed", "converged", "not_converged")


def finished_summary(run_dir: Path) -> dict:
    """summary.json of a trial killed by a signal after its training ended ({} if it had not ended).

    Training writes its checkpoints, then summary.json, and only then leaves its signal handling; a signal
    that arrives after that kills the process before it marks run.json, but the run is complete: it is a
    completed trial, not a stopped one, and its run.json is marked so here."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(summary, dict) or summary.get("status") not in FINISHED:
        return {}
    try:
        from nnctl.runs import RunFolder

        RunFolder(Path(run_dir)).update_run_info(status=summary["status"])
    except Exception:  # noqa: BLE001 - the ledger is the sweep's record; run.json is a courtesy
        pass
    return summary


def write_shipped_files(run_dir: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        destination = run_dir / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)


# ----------------------------------------------------------------------------------------- executors


@dataclass
class Unit:
    """A unit of work: one trial trained alone, or several trials of one network shape trained as one population.
    ``members``: (trial, overrides, run folder) each."""

    base_path: str
    members: list[tuple[Trial, list[str], str]]
    on_start: Callable | None = None

    @property
    def trials(self) -> list[Trial]:
        return [trial for trial, _, _ in self.members]

    def run(self, ship_files: bool = False, local: bool = True) -> list[dict]:
        """Each member's outcome, in order (Dask: trained in scratch folders, the files shipped back)."""
        if len(self.members) == 1:
            (_, overrides, run_dir), = self.members
            return [run_trial(self.base_path, overrides, run_dir if local else None, ship_files, self.on_start)]
        members = [(overrides, run_dir if local else None) for _, overrides, run_dir in self.members]
        return run_population_job(self.base_path, members, ship_files, self.on_start)


def run_unit(unit: Unit, ship_files: bool, local: bool) -> list[dict]:
    return unit.run(ship_files, local)


class LocalExecutor:
    """``workers`` units at a time, each its own process (workers x 1 BLAS thread <= the machine's cores)."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, units, on_done, stopping: threading.Event):
        """``units``: iterator of ``Unit``; ``on_done(trial, outcome)`` for each member.  Once ``stopping`` is set
        no new unit starts; the running ones are waited for."""
        with ThreadPoolExecutor(self.workers) as pool:
            pending = {}
            units = iter(units)

            def submit_next() -> bool:
                if stopping.is_set():
                    return False
                unit = next(units, None)
                if unit is None:
                    return False
                pending[pool.submit(unit.run)] = unit
                return True

            for _ in range(self.workers):
                if not submit_next():
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = pending.pop(future)
                    for trial, outcome in zip(unit.trials, future.result()):
                        on_done(trial, outcome)
                    submit_next()


class DaskExecutor:
    """One Dask task per unit (``client.submit`` + ``as_completed``); a task lost with its worker is retried.
    Each task trains in scratch folders on its worker and ships the run folders back; the client writes them."""

    def __init__(self, address: str, timeout: float = 5.0):
        try:
            from dask.distributed import Client
        except ImportError:
            raise NnctlError("the Dask executor needs dask: pip install 'nnctl[dask]'") from None
        try:
            self.client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise NnctlError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({exc})") from None

    def run(self, units, on_done, stopping: threading.Event):
        """Once ``stopping`` is set the tasks not yet finished are cancelled (a unit already training on a
        worker runs to its end there, in scratch folders; its result is dropped)."""
        from dask.distributed import as_completed

        futures = {}
        for unit in units:
            if stopping.is_set():
                break
            shipped = Unit(unit.base_path, unit.members)  # without on_start: it stays with this process
            key = f"nnctl-unit-{unit.trials[0].id}-{len(unit.members)}-{time.time_ns()}"
            futures[self.client.submit(run_unit, shipped, True, False, key=key, retries=3, pure=False)] = unit
        finished = as_completed(futures)
        while not stopping.is_set():
            batch = finished.next_batch(block=False)
            if not batch:
                if finished.is_empty():
                    break
                stopping.wait(0.05)  # returns at once when the sweep is stopped
                continue
            for future in batch:
                unit = futures[future]
                try:
                    outcomes = future.result()
                except Exception as exc:  # the task itself failed on every retry
                    outcomes = [{"status": "failed", "error": f"dask: {exc}", "metrics": {}, "duration": 0.0}] * len(unit.members)
                for (trial, _, run_dir), outcome in zip(unit.members, outcomes):
                    files = outcome.pop("files", None)
                    if files:
                        write_shipped_files(Path(run_dir), files)
                    on_done(trial, outcome)
        if stopping.is_set():
            self.client.cancel([future for future in futures if not future.done()])

    def close(self):
        self.client.close()


#: population: auto stacks trials whose largest product per batch (rows x inputs x units of the widest layer)
#: is at most this many multiply-adds.  Measured (benchmarks/population.py, 16 members 2-w-w-2 at batch 10):
#: stacked 2.0x faster at 163 840 (w = 128), 0.95x at 655 360 (w = 256); an MNIST-size network (128 x 784 x
#: 256, about 25 million) gains nothing and trains alone
POPULATION_AUTO_WORK = 262_144
#: the most members one population process trains
MAX_POPULATION = 256


def population_units(sweep: Sweep, trials: list[Trial], mode: str, workers: int) -> list[list[Trial]]:
    """The trials in units of work: trials of one network shape (``population.population_key``) together, the
    others alone.  A group is split over the workers, so that each has a population to train."""
    from nnctl import build
    from nnctl.config import load_config
    from nnctl.population import population_key

    if mode == "off":
        return [[trial] for trial in trials]
    groups: dict = {}
    alone = []
    features: dict[str, int] = {}
    for trial in trials:
        try:
            config = load_config(sweep.base_path, [*sweep.config.overrides, *trial.overrides]).config
            key = population_key(config)
            if key is not None and mode == "auto":
                data = repr(config.data.model_dump(exclude={"seed", "noise", "augment"}))
                if data not in features:
                    features[data] = len(getattr(config.data, "features", None) or []) or _feature_count(sweep, trial)
                if config.training.batch_size * build.largest_layer_product(config.model, features[data]) > POPULATION_AUTO_WORK:
                    key = None
        except NnctlError:
            key = None  # the trial fails alone, with its own message
        if key is None:
            alone.append([trial])
        else:
            groups.setdefault(key, []).append(trial)
    units = list(alone)
    for members in groups.values():
        parts = max(1, min(workers, len(members) // 2))
        size = min(MAX_POPULATION, math.ceil(len(members) / parts))
        units += [members[i : i + size] for i in range(0, len(members), size)]
    order = {trial.id: i for i, trial in enumerate(trials)}
    return sorted(units, key=lambda unit: order[unit[0].id])  # in the sweep's order (fail-fast stops where it did)


def _feature_count(sweep: Sweep, trial: Trial) -> int:
    from nnctl.config import load_config
    from nnctl.data import load_data

    return load_data(load_config(sweep.base_path, [*sweep.config.overrides, *trial.overrides])).n_features


class SweepInterrupt:
    """SIGINT / SIGTERM while the sweep runs (installed from the main thread): stop scheduling, ask every
    running trial process to stop (SIGTERM: it checkpoints and exits; a second signal kills them at once), and
    remember the signal, so that the sweep records them as interrupted and exits 128 + signal."""

    def __init__(self, stopping: threading.Event):
        self.stopping = stopping
        self.signal: int | None = None
        self.processes: set = set()
        self.lock = threading.RLock()
        self.previous: dict = {}

    def started(self, process, run_dir=None) -> None:
        """``run_trial``'s on_start: a trial process started (possibly just after the signal)."""
        with self.lock:
            self.processes = {p for p in self.processes if p.returncode is None}
            self.processes.add(process)
            stop_it = self.signal is not None
        if stop_it:
            self.send(process, signal.SIGTERM)

    def handle(self, signum, frame) -> None:
        with self.lock:
            again = self.signal is not None
            self.signal = self.signal or signum
            self.stopping.set()
            processes = list(self.processes)
        for process in processes:
            self.send(process, signal.SIGKILL if again else signal.SIGTERM)

    @staticmethod
    def send(process, signum) -> None:
        try:
            process.send_signal(signum)
        except OSError:  # it has just ended
            pass

    def __enter__(self) -> "SweepInterrupt":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


# -------------------------------------------------------------------------------------- the sweep run


@dataclass
class SweepResult:
    folder: Path
    outcomes: dict[str, dict] = field(default_factory=dict)  # trial id -> last ledger record
    rows: list[dict] = field(default_factory=list)  # summary.csv rows, best first
    interrupted: int | None = None  # the signal that stopped the sweep

    @property
    def failed(self) -> list[dict]:
        """The trials that did not complete; when a signal stopped the sweep, only those that failed or diverged
        (the ones it stopped or never started are not failures: they run on --resume)."""
        ended = [record for record in self.outcomes.values() if record["event"] not in ("completed", "pruned")]
        return ended if self.interrupted is None else [record for record in ended if record["event"] in ("failed", "diverged")]

    def stopped_message(self, sweep: Sweep, command: list[str]) -> str:
        """What an interrupted sweep tells: how far it got, and the ``command`` that continues it."""
        done, total, unit = progress_counts(sweep, self.outcomes)
        return f"sweep stopped; {done} of {total} {unit} done; continue with: {shlex.join(command)}"


def progress_counts(sweep: Sweep, outcomes: dict[str, dict]) -> tuple[int, int, str]:
    """(done, total, unit) for 'N of M trials done': completed trials of a grid or random sweep; for TPE, the
    parameter points whose seeds all completed or that ended (pruned, failed) -- resume does not rerun them."""
    config = sweep.config
    if config.method == "tpe":
        events: dict[str, list[str]] = {}
        for record in outcomes.values():
            events.setdefault(json.dumps(record["params"], sort_keys=True), []).append(record["event"])
        ended = ("pruned", "failed", "diverged")
        done = sum(1 for e in events.values() if e.count("completed") == len(config.seeds) or any(x in ended for x in e))
        return done, config.trials, "parameter points"
    points = grid_size(config) if config.method == "grid" else config.trials
    done = sum(1 for record in outcomes.values() if record["event"] == "completed")
    return done, points * len(config.seeds), "trials"


def run_sweep(
    sweep: Sweep,
    out_dir: Path,
    resume_dir: Path | None = None,
    workers: int | None = None,
    executor_type: str | None = None,
    address: str | None = None,
    fail_fast: bool = False,
    progress: Callable[[str, Trial, dict], None] | None = None,
    population: str | None = None,
) -> SweepResult:
    config = sweep.config
    if resume_dir is not None:
        folder = Path(resume_dir)
    else:
        folder = create_run_dir(Path(out_dir) / "sweeps", config.name)
        os.rmdir(folder / "checkpoints")
        if sweep.base_text is not None:
            sweep.base_path = folder / "base.yaml"
            atomic_write_text(sweep.base_path, sweep.base_text)
        resolved = {**config.model_dump(mode="json"), "base": str(sweep.base_path)}
        if population is not None:  # --population: what --resume continues with (TPE's pruning steps depend on it)
            resolved["executor"]["population"] = population
        atomic_write_text(folder / "sweep.yaml", yaml.safe_dump(resolved, sort_keys=False))
    (folder / "trials").mkdir(exist_ok=True)
    ledger = Ledger(folder / "trials.jsonl")
    previous = ledger.latest()
    executor_type = executor_type or config.executor.type
    workers = workers or config.executor.workers
    progress = progress or (lambda event, trial, record: None)
    stopping = threading.Event()
    interrupt = SweepInterrupt(stopping)
    hparams = tensorboard_hparams(sweep)
    if hparams is not None:
        hparams.write_experiment(folder)

    def on_done(trial: Trial, outcome: dict) -> dict:
        """Record a trial's outcome; returns it as recorded (a trial the sweep's signal stopped is interrupted)."""
        if interrupt.signal is not None and outcome["status"] not in ("completed", "pruned"):
            outcome = {**outcome, "status": "interrupted", "error": f"the sweep was stopped by {signal.Signals(interrupt.signal).name}"}
        record = {k: v for k, v in outcome.items() if k != "exit_code"}
        ledger.write(outcome["status"], trial, run_dir=f"trials/{trial.id}", **record)
        if hparams is not None and outcome["status"] in ("completed", "diverged", "failed"):
            values = {**trial.params, "seed": trial.seed}
            hparams.write_session(folder / "trials" / trial.id, values, outcome["status"] == "completed", outcome["metrics"])
        progress(outcome["status"], trial, outcome)
        if fail_fast and outcome["status"] not in ("completed", "pruned", "interrupted"):
            stopping.set()
        return outcome

    if config.method == "tpe" and executor_type == "dask":
        raise NnctlError("method tpe runs its trials with the local executor (it prunes them as they train); use grid or random on Dask")
    with interrupt:
        if config.method == "tpe":
            from nnctl.sweep_tpe import run_tpe, run_tpe_batches

            mode = population or config.executor.population
            if mode == "off":
                run_tpe(sweep, folder, ledger, previous, workers, on_done, stopping, progress, interrupt.started)
            else:
                run_tpe_batches(sweep, folder, ledger, previous, workers, on_done, stopping, progress, mode, interrupt.started)
        else:
            points = list(grid_points(config)) if config.method == "grid" else random_points(config)
            trials = [Trial(point, seed, i) for i, point in enumerate(points) for seed in config.seeds]
            todo = [t for t in trials if previous.get(t.id, {}).get("event") != "completed"]
            for trial in todo:
                ledger.write("pending", trial)

            def units():
                for trials in population_units(sweep, todo, population or config.executor.population, workers):
                    members = []
                    for trial in trials:
                        run_dir = prepare_trial_folder(folder, trial)
                        ledger.write("running", trial, run_dir=f"trials/{trial.id}")
                        progress("running", trial, {})
                        members.append((trial, [*config.overrides, *trial.overrides], str(run_dir)))
                    yield Unit(str(sweep.base_path), members, interrupt.started)

            executor = DaskExecutor(address or config.executor.address) if executor_type == "dask" else LocalExecutor(workers)
            try:
                executor.run(units(), on_done, stopping)
            finally:
                if isinstance(executor, DaskExecutor):
                    executor.close()
        if interrupt.signal is not None:  # trials started but never reported (a Dask task cancelled)
            name = signal.Signals(interrupt.signal).name
            for record in ledger.latest().values():
                if record["event"] == "running":
                    trial = Trial(record["params"], record["seed"], -1)
                    ledger.write("interrupted", trial, run_dir=record.get("run_dir"), error=f"the sweep was stopped by {name}")
    result = summarize(sweep, folder)
    result.interrupted = interrupt.signal
    return result


def tensorboard_hparams(sweep: Sweep):
    """The sweep in TensorBoard's HParams tab (``loggers.SweepHParams``), when its trials log to TensorBoard (the
    base config, with the sweep's overrides, has ``training.loggers: [tensorboard]``); else None."""
    if "tensorboard" not in sweep.base.training.loggers:
        return None
    from nnctl.loggers import SweepHParams

    domains = {path: spec if isinstance(spec, list) else (spec.low, spec.high) for path, spec in sweep.config.parameters.items()}
    metrics = sorted(summary_metrics(sweep.base), key=lambda name: name != sweep.config.metric)  # the sweep's metric first
    return SweepHParams({**domains, "seed": sweep.config.seeds}, metrics)


def prepare_trial_folder(folder: Path, trial: Trial) -> Path:
    """trials/<id>; an unfinished attempt's folder is kept aside as trials/<id>.attempt-N, not deleted."""
    run_dir = folder / "trials" / trial.id
    if run_dir.exists():
        n = 1
        while (aside := run_dir.with_name(f"{trial.id}.attempt-{n}")).exists():
            n += 1
        run_dir.rename(aside)
    return run_dir


# -------------------------------------------------------------------------------------------- summary


def summarize(sweep: Sweep, folder: Path) -> SweepResult:
    """summary.csv from the ledger: per parameter point, mean and std over the completed seeds (a point
    with no finished trial yet, only interrupted or pending ones, has no row)."""
    config = sweep.config
    outcomes = Ledger(folder / "trials.jsonl").latest()
    groups: dict[str, dict] = {}
    for record in outcomes.values():
        key = json.dumps(record["params"], sort_keys=True)
        group = groups.setdefault(key, {"params": record["params"], "metrics": [], "failed": 0, "pruned": 0})
        if record["event"] == "completed":
            group["metrics"].append(record.get("metrics", {}))
        elif record["event"] == "pruned":
            group["pruned"] += 1
        elif record["event"] in ("failed", "diverged"):
            group["failed"] += 1
    rows = []
    for group in groups.values():
        if not group["metrics"] and not group["failed"] and not group["pruned"]:
            continue  # only pending, running or interrupted so far: no result yet
        row = {**group["params"], "count": len(group["metrics"]), "failed": group["failed"], "pruned": group["pruned"]}
        names = sorted({name for metrics in group["metrics"] for name in metrics})
        ordered = [config.metric] + [name for name in names if name != config.metric]
        for name in ordered:
            values = [m[name] for m in group["metrics"] if m.get(name) is not None]
            row[f"{name}_mean"] = float(np.mean(values)) if values else None
            row[f"{name}_std"] = float(np.std(values, ddof=1 if len(values) > 1 else 0)) if values else None
        rows.append(row)
    sign = -1 if config.mode == "max" else 1
    metric = f"{config.metric}_mean"
    rows.sort(key=lambda r: (r.get(metric) is None, sign * (r.get(metric) or 0), json.dumps({k: r[k] for k in config.parameters}, sort_keys=True)))
    columns = list(config.parameters) + ["count", "failed", "pruned"]
    columns += sorted({key for row in rows for key in row if key not in columns}, key=lambda k: (not k.startswith(config.metric), k))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write_text(folder / "summary.csv", buffer.getvalue())
    return SweepResult(folder, outcomes, rows)


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / "sweep.yaml").is_file() and (Path(path) / "trials.jsonl").is_file()


def load_sweep_dir(path: Path) -> Sweep:
    if not is_sweep_dir(path):
        raise NnctlError(f"{path}: not a sweep folder (no sweep.yaml and trials.jsonl)")
    return load_sweep(Path(path) / "sweep.yaml")

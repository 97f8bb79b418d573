"""``method: tpe``: parameter points chosen by Optuna's TPE sampler through ask/tell, poor points pruned
early by a median rule on their per-epoch metric.  The study lives in the sweep folder (optuna.db), so
``--resume`` continues it.  Each Optuna trial is one parameter point; its value is the mean of the metric
over the sweep's seeds.

With populations (``population: auto | on``, the default; ``run_tpe_batches``) the sweep asks a batch of
points at a time (TPE's constant liar keeps them apart), trains all their seeds at once as populations, and
reports each point's mean over its seeds every k-th epoch (k = ceil(epochs / 20), and the last); a pruned
point's trials are asked to stop by a ``stop-requested`` file in their run folders, which they honour at the
end of an epoch (checkpointing, as for a SIGTERM), the other members of their population untouched.

Trial by trial (``population: off``; ``run_tpe``) a point's seeds run one after another, each its own
process.  While a seed trains, its metrics.jsonl is read as it grows and every k-th epoch is reported at step
seed_index * epochs + epoch, so every point is compared with the others at the same stages; a pruned point's
training process is stopped (SIGTERM: it checkpoints and exits cleanly).  At most 20 reports a seed: each
report and each pruning decision is a round trip to optuna.db (milliseconds of the sweep's CPU), and the
median rule needs no finer steps.

A trial counts as pruned only when it was actually stopped early.  The watcher reads the metrics log behind
the training (it polls, and asking the pruner takes a database round trip), so by the time the pruner says
stop, the trial may have trained its last epoch, written summary.json, or even exited: then it is not
signalled; and a signal that still lands after training ended (the process is killed on its way out) leaves
a completed trial, as its summary.json says.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError
from nnctl.runs import STOP_REQUEST


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise NnctlError("method tpe needs Optuna: pip install 'nnctl[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(optuna, parameters: dict) -> dict:
    from nnctl.sweeps import Distribution

    out = {}
    for key, spec in parameters.items():
        if isinstance(spec, Distribution):
            if spec.distribution == "int":
                out[key] = optuna.distributions.IntDistribution(int(spec.low), int(spec.high))
            else:
                out[key] = optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.distribution == "loguniform")
        else:
            out[key] = optuna.distributions.CategoricalDistribution(spec)
    return out


def prune_metric(sweep) -> str | None:
    """The per-epoch metric that tracks the sweep's metric: val_X for test_X, or the metric itself."""
    from nnctl.config import available_metrics

    per_epoch = available_metrics(sweep.base)
    metric = sweep.config.metric
    for candidate in (metric.replace("test_", "val_", 1), metric):
        if candidate in per_epoch:
            return candidate
    return None


#: a seed's per-epoch metric is reported to Optuna at most this many times (every k-th epoch)
REPORTS_PER_SEED = 20


def report_every(epochs: int | None) -> int:
    """Report every k-th epoch (and the last): the same steps for every point, at most REPORTS_PER_SEED of them."""
    return max(1, math.ceil(epochs / REPORTS_PER_SEED)) if epochs else 1


class PruneWatch:
    """Reads a running trial's metrics.jsonl, reports its epochs to Optuna, stops the process if pruned.

    ``pruned`` is True only when the watcher signalled a process that was still training (before its last
    epoch, and before summary.json); whether the trial really stopped early is decided by ``trial_outcome``."""

    def __init__(self, study_trial, metric: str, step_offset: int, epochs: int | None = None, on_start=None):
        self.trial, self.metric, self.offset, self.epochs = study_trial, metric, step_offset, epochs
        self.every = report_every(epochs)
        self.on_start = on_start  # also told of the process (the sweep's interrupt handling)
        self.pruned = False
        self.thread: threading.Thread | None = None

    def __call__(self, process, run_dir: Path):
        if self.on_start is not None:
            self.on_start(process, run_dir)
        self.thread = threading.Thread(target=self.watch, args=(process, Path(run_dir)), daemon=True)
        self.thread.start()

    def join(self):
        """Wait until the watcher has stopped reporting (before the trial is told its result)."""
        if self.thread is not None:
            self.thread.join()

    def still_training(self, process, run_dir: Path, latest_epoch: int) -> bool:
        """Whether stopping the process now would stop it early: not once it logged its last epoch, not once
        summary.json exists (early stopping, or the end), not once it exited.  poll() alone cannot tell: while
        run_trial waits for the process, poll() from this thread may answer None for a process that has exited."""
        if self.epochs is not None and latest_epoch >= self.epochs:
            return False
        return not (run_dir / "summary.json").exists() and process.poll() is None

    def watch(self, process, run_dir: Path, interval: float = 0.05):
        reported = 0
        metrics = run_dir / "metrics.jsonl"
        while process.poll() is None and not self.pruned:
            rows = []
            if metrics.exists():
                for line in metrics.read_text().splitlines()[reported:]:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        break
            new_step = False
            for row in rows:
                reported += 1
                epoch, value = row["epoch"], row.get(self.metric)
                if epoch % self.every and epoch != self.epochs:
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool):  # null: undefined this epoch
                    self.trial.report(value, self.offset + epoch)
                    new_step = True
            # the pruner judges the latest step; asking it takes a database round trip, during which the
            # trial trains on, so whether it is still training is checked before and after asking
            if new_step and self.still_training(process, run_dir, rows[-1]["epoch"]):
                if self.trial.should_prune() and self.still_training(process, run_dir, rows[-1]["epoch"]):
                    self.pruned = True
                    process.send_signal(signal.SIGTERM)
                    return
            time.sleep(interval)


def trial_outcome(outcome: dict, watch: PruneWatch | None, metric: str | None) -> dict:
    """The trial's outcome once the pruner may have signalled it: pruned only if the signal stopped it early.

    A trial that finished training is completed whatever the pruner decided meanwhile: it exited 0, or the
    signal reached it only on its way out (``run_trial`` then reads its summary.json).  A trial the signal did
    stop (it checkpointed: status interrupted; or it was killed by the SIGTERM before training ended) is pruned."""
    if watch is None or not watch.pruned:
        return outcome
    if outcome["status"] == "interrupted" or outcome.get("exit_code") in (-signal.SIGTERM, 128 + signal.SIGTERM):
        return {**outcome, "status": "pruned", "error": f"pruned by the median rule on {metric}"}
    return outcome  # completed, diverged, or failed on its own


def open_study(sweep, folder: Path, constant_liar: bool = False):
    """The study in optuna.db (created or continued) and how many of its points have ended.  A point whose
    trials were interrupted stays RUNNING in the study; opening fails it and asks for the same point again, so
    an interruption costs no point of the budget and completed seeds are not rerun."""
    optuna = optuna_module()
    config = sweep.config
    study = optuna.create_study(
        study_name=config.name,
        storage=f"sqlite:///{folder / 'optuna.db'}",
        load_if_exists=True,
        direction="maximize" if config.mode == "max" else "minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    states = optuna.trial.TrialState
    for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):  # left by an interrupted or killed sweep
        study.tell(stale.number, state=states.FAIL)
        study.enqueue_trial(stale.params, user_attrs={"requeued_from": stale.number})
    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs}
    finished = sum(t.state in (states.COMPLETE, states.PRUNED, states.FAIL) and t.number not in requeued for t in trials)
    # seeded by how far the study got, so a resumed study draws new points instead of replaying the first ones;
    # asked a batch at a time, the constant liar keeps the points of one batch apart
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + finished, constant_liar=constant_liar)
    return study, finished


def tell(study, study_trial, outcomes: list[dict], metric: str) -> None:
    """A point's result from its seeds' outcomes: the mean metric when all completed; pruned or failed else.
    A point with an interrupted seed is left RUNNING (resumed later)."""
    states = optuna_module().trial.TrialState
    statuses = {outcome["status"] for outcome in outcomes}
    if "interrupted" in statuses:
        return
    values = [outcome["metrics"].get(metric) for outcome in outcomes]
    if statuses == {"completed"} and all(v is not None for v in values):
        study.tell(study_trial, float(np.mean(values)))
    else:
        study.tell(study_trial, state=states.PRUNED if "pruned" in statuses else states.FAIL)


def run_tpe(sweep, folder: Path, ledger, previous: dict, workers: int, on_done, stopping, progress, on_start=None) -> None:
    """Trial by trial (``population: off``): ``workers`` points at a time, each point's seeds one after another,
    each seed its own process, pruned by a SIGTERM.  ``on_start(process, run_dir)``: told of each trial process
    (the sweep stops them on Ctrl-C)."""
    from nnctl.sweeps import Trial, prepare_trial_folder, run_trial

    optuna = optuna_module()
    config = sweep.config
    study, finished = open_study(sweep, folder)
    states = optuna.trial.TrialState
    space = distributions(optuna, config.parameters)
    metric_for_pruning = prune_metric(sweep)
    epochs = sweep.base.training.epochs
    lock = threading.Lock()

    def one_point(_):
        if stopping.is_set():
            return
        with lock:
            study_trial = study.ask(space)
        params = {key: study_trial.params[key] for key in config.parameters}
        trial_epochs = params.get("training.epochs", epochs)  # a swept epoch count is the trial's own
        trial_epochs = trial_epochs if isinstance(trial_epochs, int) and not isinstance(trial_epochs, bool) else None
        values, state = [], states.COMPLETE
        for index, seed in enumerate(config.seeds):
            trial = Trial(params, seed, study_trial.number)
            if previous.get(trial.id, {}).get("event") == "completed":
                values.append(previous[trial.id]["metrics"].get(config.metric))
                continue
            if stopping.is_set():
                return  # left RUNNING: resumed later
            ledger.write("pending", trial)
            run_dir = prepare_trial_folder(folder, trial)
            ledger.write("running", trial, run_dir=f"trials/{trial.id}")
            progress("running", trial, {})
            watch = PruneWatch(study_trial, metric_for_pruning, index * epochs, trial_epochs, on_start) if metric_for_pruning else None
            overrides = [*config.overrides, *trial.overrides]
            outcome = run_trial(str(sweep.base_path), overrides, str(run_dir), False, watch or on_start)
            if watch is not None:
                watch.join()
            outcome = trial_outcome(outcome, watch, metric_for_pruning)
            outcome = on_done(trial, outcome)  # as recorded: interrupted when the sweep was stopped by a signal
            if outcome["status"] == "interrupted":
                return  # left RUNNING in the study: resumed later
            if outcome["status"] != "completed":
                state = states.PRUNED if outcome["status"] == "pruned" else states.FAIL
                break
            values.append(outcome["metrics"].get(config.metric))
        with lock:
            if state == states.COMPLETE and all(v is not None for v in values):
                study.tell(study_trial, float(np.mean(values)))
            else:
                study.tell(study_trial, state=state if state != states.COMPLETE else states.FAIL)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_point, range(max(0, config.trials - finished))))


#: ``method: tpe`` with populations: points asked at a time per worker (a batch trains as populations)
POINTS_PER_WORKER = 8


class PointWatch:
    """Reads the metrics logs of a batch's trials as they grow; for each point, reports the mean over its seeds
    of the per-epoch metric to Optuna (every k-th epoch, once every seed has logged it) and, when the pruner says
    so, asks the point's trials to stop: a ``stop-requested`` file in each run folder, which a population member
    (and a single run) honours at the end of its epoch, checkpointing as for a SIGTERM, the others untouched."""

    def __init__(self, points: dict[int, tuple], metric: str, interval: float = 0.1):
        self.points = points  # number -> (study trial, [run folders of its seeds], its epochs or None)
        self.metric, self.interval = metric, interval
        self.pruned: set[int] = set()
        self.logs: dict[Path, tuple[int, str, dict]] = {}  # run folder -> (bytes read, a line in progress, epoch -> value)
        self.reported: dict[int, int] = {}  # point -> the last epoch reported
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self) -> "PointWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def values(self, run_dir: Path) -> dict[int, float]:
        """The metric by epoch in a run's metrics.jsonl, read on from where the last call stopped."""
        offset, partial, values = self.logs.get(run_dir, (0, "", {}))
        try:
            with open(run_dir / "metrics.jsonl", "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return values
        lines = (partial + chunk.decode("utf-8", "replace")).split("\n")
        for line in lines[:-1]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            value = row.get(self.metric) if isinstance(row, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(row.get("epoch"), int):
                values[row["epoch"]] = value
        self.logs[run_dir] = (offset + len(chunk), lines[-1], values)
        return values

    def watch(self) -> None:
        while not self.stopped.wait(self.interval):
            for number, (study_trial, run_dirs, epochs) in self.points.items():
                if number not in self.pruned:
                    self.judge(number, study_trial, run_dirs, epochs)

    def judge(self, number: int, study_trial, run_dirs: list[Path], epochs: int | None) -> None:
        every = report_every(epochs)
        seeds = [self.values(run_dir) for run_dir in run_dirs]
        common = set.intersection(*(set(values) for values in seeds))
        new = sorted(e for e in common if e > self.reported.get(number, 0) and (e % every == 0 or e == epochs))
        for epoch in new:
            study_trial.report(float(np.mean([values[epoch] for values in seeds])), epoch)
            self.reported[number] = epoch
        if new and study_trial.should_prune():
            self.pruned.add(number)
            for run_dir, values in zip(run_dirs, seeds):  # not a run that has logged its last epoch or ended
                if not (epochs and max(values, default=0) >= epochs) and not (run_dir / "summary.json").exists():
                    (run_dir / STOP_REQUEST).touch()


def run_tpe_batches(sweep, folder: Path, ledger, previous: dict, workers: int, on_done, stopping, progress, mode: str, on_start=None) -> None:
    """With populations (``population: auto | on``): ask a batch of points, train all their seeds at once as
    populations over the workers (``population_units``), prune a point by its seeds' mean per-epoch metric
    (``PointWatch``), tell the study each point's result, ask the next batch."""
    from nnctl.sweeps import LocalExecutor, Trial, Unit, population_units, prepare_trial_folder

    optuna = optuna_module()
    config = sweep.config
    study, finished = open_study(sweep, folder, constant_liar=True)
    space = distributions(optuna, config.parameters)
    metric_for_pruning = prune_metric(sweep)
    remaining = config.trials - finished
    while remaining > 0 and not stopping.is_set():
        asked = [study.ask(space) for _ in range(min(remaining, POINTS_PER_WORKER * workers))]
        remaining -= len(asked)
        trials = {t.number: [Trial({key: t.params[key] for key in config.parameters}, seed, t.number) for seed in config.seeds] for t in asked}
        outcomes: dict[str, dict] = {}
        todo, watched, points = [], set(), {}
        for study_trial in asked:
            run_dirs = []  # the point's seeds the watcher reads: those this batch trains and those already completed
            for trial in trials[study_trial.number]:
                if trial.id in watched:  # a point asked twice (TPE may repeat a choice): trained and judged once
                    continue
                watched.add(trial.id)
                if previous.get(trial.id, {}).get("event") == "completed":
                    outcomes[trial.id] = {"status": "completed", "metrics": previous[trial.id]["metrics"]}
                    run_dirs.append(folder / previous[trial.id]["run_dir"])
                else:
                    ledger.write("pending", trial)
                    todo.append(trial)
                    run_dirs.append(prepare_trial_folder(folder, trial))
            if any(trial in todo for trial in trials[study_trial.number]):
                epochs = study_trial.params.get("training.epochs", sweep.base.training.epochs)  # a swept epoch count
                points[study_trial.number] = (study_trial, run_dirs, epochs if isinstance(epochs, int) else None)
        run_dir_of = {trial.id: folder / "trials" / trial.id for trial in todo}
        watch = PointWatch(points, metric_for_pruning) if metric_for_pruning else None

        def units():
            for members in population_units(sweep, todo, mode, workers):
                for trial in members:
                    ledger.write("running", trial, run_dir=f"trials/{trial.id}")
                    progress("running", trial, {})
                yield Unit(str(sweep.base_path), [(t, [*config.overrides, *t.overrides], str(run_dir_of[t.id])) for t in members], on_start)

        def member_done(trial: Trial, outcome: dict) -> dict:
            if watch is not None and trial.point in watch.pruned and outcome["status"] == "interrupted":
                outcome = {**outcome, "status": "pruned", "error": f"pruned by the median rule on {metric_for_pruning}"}
            outcomes[trial.id] = on_done(trial, outcome)
            return outcomes[trial.id]

        with watch if watch is not None else contextlib.nullcontext():
            LocalExecutor(workers).run(units(), member_done, stopping)
        for run_dir in run_dir_of.values():  # a request that came as its run was ending, never taken
            (run_dir / STOP_REQUEST).unlink(missing_ok=True)
        for study_trial in asked:
            seeds = [outcomes.get(trial.id, {"status": "interrupted"}) for trial in trials[study_trial.number]]
            tell(study, study_trial, seeds, config.metric)

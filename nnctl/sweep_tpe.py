"""``method: tpe``: parameter points chosen by Optuna's TPE sampler through ask/tell, poor points pruned
early by a median rule on their per-epoch metric.  The study lives in the sweep folder (optuna.db), so
``--resume`` continues it.

Each Optuna trial is one parameter point; its value is the mean of the metric over the sweep's seeds,
which run one after another.  While a seed trains, its metrics.jsonl is read as it grows and each epoch
is reported at step seed_index * epochs + epoch, so every point is compared with the others at the same
stage; a pruned point's training process is stopped (SIGTERM: it checkpoints and exits cleanly).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise NnctlError("method tpe needs Optuna: pip install 'nnctl[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(optuna, parameters: dict) -> dict:
    from nnctl.sweep import Distribution

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


class PruneWatch:
    """Reads a running trial's metrics.jsonl, reports each epoch to Optuna, stops the process if pruned."""

    def __init__(self, study_trial, metric: str, step_offset: int):
        self.trial, self.metric, self.offset = study_trial, metric, step_offset
        self.pruned = False
        self.thread: threading.Thread | None = None

    def __call__(self, process, run_dir: Path):
        self.thread = threading.Thread(target=self.watch, args=(process, Path(run_dir)), daemon=True)
        self.thread.start()

    def join(self):
        """Wait until the watcher has stopped reporting (before the trial is told its result)."""
        if self.thread is not None:
            self.thread.join()

    def watch(self, process, run_dir: Path):
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
            for row in rows:
                reported += 1
                self.trial.report(row[self.metric], self.offset + row["epoch"])
                if self.trial.should_prune():
                    self.pruned = True
                    process.send_signal(signal.SIGTERM)
                    return
            time.sleep(0.05)


def run_tpe(sweep, folder: Path, ledger, previous: dict, workers: int, on_done, stopping, progress) -> None:
    from nnctl.sweep import Trial, prepare_trial_folder, run_trial

    optuna = optuna_module()
    config = sweep.config
    storage = f"sqlite:///{folder / 'optuna.db'}"
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        load_if_exists=True,
        direction="maximize" if config.mode == "max" else "minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    states = optuna.trial.TrialState
    for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):  # left by a killed sweep
        study.tell(stale.number, state=states.FAIL)
    finished = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL)))
    # seeded by how far the study got, so a resumed study draws new points instead of replaying the first ones
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + finished)
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
        values, state = [], states.COMPLETE
        for index, seed in enumerate(config.seeds):
            trial = Trial(params, seed, study_trial.number)
            if previous.get(trial.id, {}).get("event") == "completed":
                values.append(previous[trial.id]["metrics"].get(config.metric))
                continue
            ledger.write("pending", trial)
            run_dir = prepare_trial_folder(folder, trial)
            ledger.write("running", trial, run_dir=f"trials/{trial.id}")
            progress("running", trial, {})
            watch = PruneWatch(study_trial, metric_for_pruning, index * epochs) if metric_for_pruning else None
            overrides = [*config.overrides, *trial.overrides]
            outcome = run_trial(str(sweep.base_path), overrides, str(run_dir), False, watch)
            if watch is not None:
                watch.join()
            if watch is not None and watch.pruned and outcome["status"] != "completed":  # not if it finished first
                outcome = {**outcome, "status": "pruned", "error": f"pruned by the median rule on {metric_for_pruning}"}
            on_done(trial, outcome)
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

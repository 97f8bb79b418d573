"""Sweeps end to end through the CLI: grid, random and TPE; the ledger, summary.csv, failures, resume,
worker-count independence, a real Dask cluster on loopback, and scripting helpers."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl, read_jsonl, train_json
from test_cli_errors import assert_clean_error

SPIRAL = CONFIGS / "spiral.yaml"


def write_sweep(folder: Path, body: str, name="sweep.yaml") -> Path:
    path = folder / name
    path.write_text(f"base: {SPIRAL}\n" + body)
    return path


def sweep_dir(out: Path) -> Path:
    (folder,) = (out / "sweeps").iterdir()
    return folder


def read_summary(folder: Path) -> list[dict]:
    with open(folder / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


GRID = """name: grid
seeds: [0, 1]
metric: test_accuracy
parameters:
  model.layers.0.activation: [tanh, relu]
  optimizer.lr: [0.1, 0.03]
overrides: [training.epochs=15]
"""


def test_grid_sweep_writes_ledger_summary_and_trial_runs(tmp_path):
    result = nnctl("sweep", write_sweep(tmp_path, GRID), "--out", tmp_path / "out", "--workers", "2")
    assert result.returncode == 0, result.stderr
    folder = sweep_dir(tmp_path / "out")
    assert "grid: test_accuracy (max)" in result.stdout and str(folder) in result.stdout
    assert (folder / "sweep.yaml").is_file()
    events = read_jsonl(folder / "trials.jsonl")
    final = {e["trial"]: e for e in events}
    assert len(final) == 8 and all(e["event"] == "completed" for e in final.values())
    for trial_id, event in final.items():
        kinds = [e["event"] for e in events if e["trial"] == trial_id]
        assert kinds == ["pending", "running", "completed"]
        assert event["run_dir"] == f"trials/{trial_id}" and event["duration"] > 0
        summary = json.loads((folder / event["run_dir"] / "summary.json").read_text())
        assert summary["test_accuracy"] == event["metrics"]["test_accuracy"]
        config = (folder / event["run_dir"] / "config.yaml").read_text()
        assert f"seed: {event['seed']}" in config and "epochs: 15" in config
    rows = read_summary(folder)
    assert len(rows) == 4
    means = [float(r["test_accuracy_mean"]) for r in rows]
    assert means == sorted(means, reverse=True)  # best first
    for row in rows:
        accuracies = [
            e["metrics"]["test_accuracy"] for e in final.values()
            if e["params"] == {"model.layers.0.activation": row["model.layers.0.activation"], "optimizer.lr": float(row["optimizer.lr"])}
        ]  # fmt: skip
        assert len(accuracies) == 2 and row["count"] == "2"
        assert float(row["test_accuracy_mean"]) == pytest.approx(np.mean(accuracies))
        assert float(row["test_accuracy_std"]) == pytest.approx(np.std(accuracies, ddof=1))


def test_serial_and_parallel_sweeps_give_identical_results(tmp_path):
    path = write_sweep(tmp_path, GRID)
    for workers, out in (("1", "serial"), ("2", "parallel")):
        assert nnctl("sweep", path, "--out", tmp_path / out, "--workers", workers, "--json").returncode == 0
    serial, parallel = (read_summary(sweep_dir(tmp_path / out)) for out in ("serial", "parallel"))
    assert without_times(serial) == without_times(parallel)


def test_populations_give_the_same_sweep_as_one_process_per_trial(tmp_path):
    """--population on trains the grid's trials of one shape (layer sizes) together; every trial folder holds what its own
    nnctl train process writes (metrics rows and checkpoint arrays), so summary.csv is the same."""
    path = write_sweep(tmp_path, GRID)
    runs = {}
    for mode in ("off", "on"):
        result = nnctl("sweep", path, "--out", tmp_path / mode, "--workers", "2", "--population", mode, "--json")
        assert result.returncode == 0, result.stderr
        runs[mode] = sweep_dir(tmp_path / mode)
    assert without_times(read_summary(runs["off"])) == without_times(read_summary(runs["on"]))
    trials = sorted(p.name for p in (runs["off"] / "trials").iterdir())
    assert trials == sorted(p.name for p in (runs["on"] / "trials").iterdir()) and len(trials) == 8
    populations = {json.loads((runs["on"] / "trials" / t / "run.json").read_text()).get("population") for t in trials}
    assert populations == {4}  # the 8 trials are one shape (their activations differ), split over the two workers
    for trial in trials:
        alone, together = (runs[mode] / "trials" / trial for mode in ("off", "on"))
        rows = [[{k: v for k, v in json.loads(line).items() if k != "train_seconds"} for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (alone, together)]
        assert rows[0] == rows[1]
        with np.load(alone / "checkpoints" / "last.npz") as a, np.load(together / "checkpoints" / "last.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(a[k].tobytes() == b[k].tobytes() for k in a.files if k != "meta")
    bad = nnctl("sweep", path, "--out", tmp_path / "bad", "--population", "sometimes")
    assert bad.returncode == 2 and "--population: 'sometimes' is not allowed; allowed: auto, on, off" in bad.stderr


def test_auto_stacks_small_networks_and_leaves_large_ones_alone(tmp_path):
    """population: auto stacks trials whose widest layer product per batch is at most POPULATION_AUTO_WORK
    (8 hidden units at batch 128: 16 384) and trains the others alone (4096 units: 128 x 4096 x 16, 8 million)."""
    from nnctl.sweeps import Trial, load_sweep, population_units

    body = "name: auto\nseeds: [0, 1, 2]\nparameters:\n  model.layers.0.units: [8, 4096]\noverrides: [training.batch_size=128]\n"
    sweep = load_sweep(write_sweep(tmp_path, body))
    trials = [Trial({"model.layers.0.units": units}, seed, i) for i, units in enumerate((8, 4096)) for seed in (0, 1, 2)]
    units = population_units(sweep, trials, "auto", workers=1)
    assert sorted([trial.params["model.layers.0.units"] for trial in unit] for unit in units) == [[8, 8, 8], [4096], [4096], [4096]]
    assert len(population_units(sweep, trials, "on", workers=1)) == 2
    assert len(population_units(sweep, trials, "off", workers=1)) == 6


def test_failed_and_diverged_trials_do_not_stop_the_sweep(tmp_path):
    body = """name: failing
seeds: [0]
parameters:
  optimizer.lr: [0.03, -1.0, 1.0e+6]
  model.layers.0.activation: [relu]
overrides: [training.epochs=10, model.layers.1.activation=relu]
"""
    result = nnctl("sweep", write_sweep(tmp_path, body), "--out", tmp_path / "out", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["trials"] == 3 and report["failed"] == 2
    final = {e["params"]["optimizer.lr"]: e for e in read_jsonl(sweep_dir(tmp_path / "out") / "trials.jsonl")}
    assert final[0.03]["event"] == "completed"
    assert final[-1.0]["event"] == "failed" and "greater than 0" in final[-1.0]["error"]
    assert final[1.0e6]["event"] == "diverged" and "diverged" in final[1.0e6]["error"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: trial")]
    assert len(errors) == 2 and any("greater than 0" in line for line in errors)


def test_fail_fast_stops_scheduling(tmp_path):
    body = "name: ff\nseeds: [0]\nparameters:\n  optimizer.lr: [-1.0, 0.01, 0.02, 0.03]\noverrides: [training.epochs=3]\n"
    result = nnctl("sweep", write_sweep(tmp_path, body), "--out", tmp_path / "out", "--fail-fast", "--json")
    assert result.returncode == 1
    final = {e["trial"]: e["event"] for e in read_jsonl(sweep_dir(tmp_path / "out") / "trials.jsonl")}
    assert list(final.values()).count("completed") == 0


def processes_of(folder: Path) -> list[int]:
    """Live processes (not zombies) whose command line names ``folder``: a sweep's trials name their run folder."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(folder).encode() in (proc / "cmdline").read_bytes():
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(proc.name))
        except OSError:  # it ended meanwhile
            continue
    return found


def assert_no_processes_left(folder: Path, within: float = 0.0) -> None:
    deadline = time.monotonic() + within
    while processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_of(folder) == [], f"processes left running in {folder}"


def wait_for_ledger(out: Path, ready, process: subprocess.Popen, timeout: float = 120) -> Path:
    """The sweep folder under ``out`` once ``ready(folder, final_events)`` holds (while ``process`` runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before it got there"
        ledgers = list(out.glob("sweeps/*/trials.jsonl"))
        try:
            if ledgers and ready(ledgers[0].parent, {e["trial"]: e for e in read_jsonl(ledgers[0])}):
                return ledgers[0].parent
        except json.JSONDecodeError:  # a line being written
            pass
        time.sleep(0.02)
    raise AssertionError("the sweep did not get there in time")


def a_trial_is_training(done: int):
    """``done`` trials completed and another one is inside its training loop (it has logged an epoch)."""

    def ready(folder: Path, final: dict) -> bool:
        if sum(e["event"] == "completed" for e in final.values()) < done:
            return False
        for event in final.values():
            metrics = folder / f"trials/{event['trial']}/metrics.jsonl"
            if event["event"] == "running" and metrics.exists() and 0 < len(metrics.read_text().splitlines()) < 80:
                return True
        return False

    return ready


def resume_command(stderr: str, folder: Path) -> list[str]:
    """The command the interrupted sweep prints; checks the line: counts, folder, options."""
    final = {e["trial"]: e["event"] for e in read_jsonl(folder / "trials.jsonl")}
    done = list(final.values()).count("completed")
    line = stderr.strip().splitlines()[-1]
    assert line == f"interrupted: sweep stopped; {done} of 6 trials done; continue with: nnctl sweep --resume {folder} --workers 2", stderr
    assert "interrupted" in final.values()  # the trials it stopped
    trained = [t for t, e in final.items() if e == "interrupted" and (folder / f"trials/{t}/metrics.jsonl").exists()]
    assert trained  # the trial seen training
    for trial in trained:  # stopped inside its training loop: it checkpointed (the sweep sent it SIGTERM)
        summary = json.loads((folder / f"trials/{trial}/summary.json").read_text())
        assert summary["status"] == "interrupted" and "SIGTERM" in summary["stop_reason"]
    assert_no_processes_left(folder)  # the sweep waited for the trials it stopped
    nnctl_, *arguments = line.split("continue with: ")[1].split()
    return [sys.executable, "-m", nnctl_, *arguments]


def test_interrupted_and_killed_sweeps_resume_to_the_same_summary(tmp_path):
    """SIGKILL, then Ctrl-C (SIGINT), then SIGTERM on the resumed sweep, then the printed resume command to
    the end: the summary equals an uninterrupted sweep's, and no trial ran twice once it completed.  Trial by
    trial (--population off, kept by --resume): populations are the next test."""
    body = "name: long\nseeds: [0, 1, 2]\nparameters:\n  optimizer.lr: [0.1, 0.03]\noverrides: [training.epochs=240]\nexecutor: {population: 'off'}\n"
    path = write_sweep(tmp_path, body)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "sweep", path, "--out", out, "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folder = wait_for_ledger(out, lambda folder, final: sum(e["event"] == "completed" for e in final.values()) >= 1, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert_no_processes_left(folder, within=10)  # its trial dies with it (PR_SET_PDEATHSIG)
    done_before = {e["trial"] for e in read_jsonl(folder / "trials.jsonl") if e["event"] == "completed"}

    command = [sys.executable, "-m", "nnctl", "sweep", "--resume", str(folder), "--workers", "2"]  # no FILE needed
    for signal_number, done in ((signal.SIGINT, 2), (signal.SIGTERM, 3)):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_ledger(out, a_trial_is_training(done), process)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + signal_number, stderr
        assert "Traceback" not in stderr
        command = resume_command(stderr, folder)

    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    events = read_jsonl(folder / "trials.jsonl")
    final = {e["trial"]: e["event"] for e in events}
    assert len(final) == 6 and set(final.values()) == {"completed"}
    for trial in done_before:  # not run again
        assert [e["event"] for e in events if e["trial"] == trial].count("running") == 1
    reference = nnctl("sweep", path, "--out", tmp_path / "fresh", "--workers", "2")
    assert reference.returncode == 0
    assert without_times(read_summary(folder)) == without_times(read_summary(sweep_dir(tmp_path / "fresh")))


def test_killed_and_interrupted_populations_resume_to_the_same_summary(tmp_path):
    """Populations: SIGKILL once a short population has completed while a long one trains, then Ctrl-C on the
    resumed sweep while the long one trains again, then the printed command to the end: the completed members
    are not rerun, and the summary equals an uninterrupted sweep's."""
    body = "name: pops\nseeds: [0, 1, 2]\nparameters:\n  training.epochs: [20, 1500]\noverrides: [data.samples=200]\n"
    path = write_sweep(tmp_path, body)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "sweep", path, "--out", out, "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folder = wait_for_ledger(out, the_long_population_trains, process)  # the short population ended
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert_no_processes_left(folder, within=10)
    done_before = {e["trial"] for e in read_jsonl(folder / "trials.jsonl") if e["event"] == "completed"}
    assert len(done_before) == 3
    started = len(read_jsonl(folder / "trials.jsonl"))
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "sweep", "--resume", str(folder), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    def resumed(folder: Path, final: dict) -> bool:  # the long population trains again, in new folders
        restarted = sum(e["event"] == "running" for e in read_jsonl(folder / "trials.jsonl")[started:]) >= 3
        return restarted and the_long_population_trains(folder, final)

    wait_for_ledger(out, resumed, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    interrupted = [json.loads((folder / f"trials/{t}/summary.json").read_text()) for t, e in latest_events(folder).items() if e == "interrupted"]
    assert len(interrupted) == 3 and all(s["status"] == "interrupted" for s in interrupted)  # every member checkpointed
    result = subprocess.run(resume_command(stderr, folder), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    events = read_jsonl(folder / "trials.jsonl")
    assert set(latest_events(folder).values()) == {"completed"} and len(latest_events(folder)) == 6
    for trial in done_before:  # not run again
        assert [e["event"] for e in events if e["trial"] == trial].count("running") == 1
    reference = nnctl("sweep", path, "--out", tmp_path / "fresh", "--workers", "2")
    assert reference.returncode == 0
    assert without_times(read_summary(folder)) == without_times(read_summary(sweep_dir(tmp_path / "fresh")))


def latest_events(folder: Path) -> dict[str, str]:
    return {e["trial"]: e["event"] for e in read_jsonl(folder / "trials.jsonl")}


def the_long_population_trains(folder: Path, final: dict) -> bool:
    """Three trials completed, and a running one has logged an epoch (its metrics file is not empty)."""
    if sum(e["event"] == "completed" for e in final.values()) < 3:
        return False
    logs = [folder / f"trials/{t}/metrics.jsonl" for t, e in final.items() if e["event"] == "running"]
    return any(log.exists() and log.stat().st_size > 0 for log in logs)


def test_random_sweep_samples_within_the_distributions(tmp_path):
    body = """name: random
method: random
trials: 5
seed: 3
seeds: [0]
parameters:
  optimizer.lr: {distribution: loguniform, low: 0.001, high: 0.3}
  model.layers.0.units: {distribution: int, low: 2, high: 12}
  model.layers.0.activation: [tanh, relu]
overrides: [training.epochs=5]
"""
    path = write_sweep(tmp_path, body)
    assert nnctl("sweep", path, "--out", tmp_path / "a", "--json").returncode == 0
    final = {e["trial"]: e for e in read_jsonl(sweep_dir(tmp_path / "a") / "trials.jsonl")}
    assert len(final) == 5
    for event in final.values():
        params = event["params"]
        assert 0.001 <= params["optimizer.lr"] <= 0.3 and 2 <= params["model.layers.0.units"] <= 12
        assert isinstance(params["model.layers.0.units"], int)
    assert nnctl("sweep", path, "--out", tmp_path / "b", "--json").returncode == 0  # the same seed, the same points
    assert without_times(read_summary(sweep_dir(tmp_path / "a"))) == without_times(read_summary(sweep_dir(tmp_path / "b")))


def test_tpe_sweep_with_pruning_and_resume(tmp_path):
    body = """name: tpe
method: tpe
trials: 6
seeds: [0]
metric: test_accuracy
parameters:
  optimizer.lr: {distribution: loguniform, low: 0.0005, high: 0.5}
  model.layers.0.units: [4, 16]
overrides: [training.epochs=100, data.val_fraction=0.2]
"""
    path = write_sweep(tmp_path, body)
    result = nnctl("sweep", path, "--out", tmp_path / "out", "--workers", "2", "--json")
    assert result.returncode == 0, result.stderr
    folder = sweep_dir(tmp_path / "out")
    assert (folder / "optuna.db").is_file()
    final = {e["trial"]: e for e in read_jsonl(folder / "trials.jsonl")}
    assert len(final) == 6 and {e["event"] for e in final.values()} <= {"completed", "pruned"}
    for event in final.values():
        assert 0.0005 <= event["params"]["optimizer.lr"] <= 0.5
        rows = read_jsonl(folder / event["run_dir"] / "metrics.jsonl")
        status = json.loads((folder / event["run_dir"] / "summary.json").read_text())["status"]
        if event["event"] == "pruned":  # stopped early: it checkpointed mid-training
            assert 0 < len(rows) < 100 and status == "interrupted"
        else:  # a completed trial trained all its epochs (never one that finished and is called pruned)
            assert len(rows) == 100 and status == "completed"
    (folder / "sweep.yaml").write_text((folder / "sweep.yaml").read_text().replace("trials: 6", "trials: 8"))
    resumed = nnctl("sweep", "--resume", folder, "--workers", "2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    import optuna

    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == 8
    assert len({e["trial"] for e in read_jsonl(folder / "trials.jsonl")}) == 8


class AlwaysPrune:
    """An Optuna trial as the watcher sees it, whose pruner says stop at every step."""

    def __init__(self):
        self.reported = []

    def report(self, value, step):
        self.reported.append(step)

    def should_prune(self):
        return True


class TrialProcess:
    """A trial process as the watcher sees it: poll() answers None the first ``polls`` times -- as it may,
    from the watcher's thread, for a process that has exited while run_trial waits for it -- then 0."""

    def __init__(self, polls: int):
        self.polls, self.signals, self.returncode = polls, [], None

    def poll(self):
        self.polls -= 1
        if self.polls < 0:
            self.returncode = 0
        return self.returncode

    def send_signal(self, signum):
        self.signals.append(signum)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A real run folder of a training that ended: 5 epochs with a validation split."""
    run = tmp_path_factory.mktemp("finished") / "run"
    result = nnctl("train", SPIRAL, "--run-dir", run, "--json", "--set", "training.epochs=5", "--set", "data.val_fraction=0.2")
    assert result.returncode == 0, result.stderr
    return run


def copy_run(run: Path, to: Path, epochs: int | None = None, summary: bool = True) -> Path:
    """``run``'s files in ``to``, its metrics log cut to ``epochs`` rows, with or without summary.json."""
    to.mkdir()
    for name in ("metrics.jsonl", "run.json", "config.yaml") + (("summary.json",) if summary else ()):
        text = (run / name).read_text()
        if name == "metrics.jsonl" and epochs is not None:
            text = "".join(text.splitlines(keepends=True)[:epochs])
        (to / name).write_text(text)
    return to


@pytest.mark.parametrize(
    "epochs_logged, summary", [(5, False), (5, True), (3, True)], ids=["last epoch logged", "ended", "early stopping"]
)
def test_the_pruner_does_not_stop_a_trial_whose_training_ended(tmp_path, finished_run, epochs_logged, summary):
    """The watcher reads the log behind the training: when it reads the last epoch, or once summary.json
    exists, there is nothing left to stop early, whatever the pruner says (the flaky TPE sweep of #11)."""
    from nnctl.sweep_tpe import PruneWatch

    run = copy_run(finished_run, tmp_path / "run", epochs_logged, summary)
    trial, process = AlwaysPrune(), TrialProcess(polls=5)
    watch = PruneWatch(trial, "val_accuracy", 100, epochs=5)
    watch.watch(process, run, interval=0)
    assert process.signals == [] and not watch.pruned
    assert trial.reported == [100 + epoch for epoch in range(1, epochs_logged + 1)]  # every epoch still reported


def test_the_pruner_stops_a_trial_still_training(tmp_path, finished_run):
    from nnctl.sweep_tpe import PruneWatch

    run = copy_run(finished_run, tmp_path / "run", epochs=3, summary=False)
    process = TrialProcess(polls=5)
    watch = PruneWatch(AlwaysPrune(), "val_accuracy", 0, epochs=5)
    watch.watch(process, run, interval=0)
    assert process.signals == [signal.SIGTERM] and watch.pruned


def test_a_batch_point_is_judged_by_its_seeds_mean_and_its_unfinished_seeds_asked_to_stop(tmp_path, finished_run):
    """With populations, a point's seeds train at once: the watcher reports the mean over the seeds at every
    epoch that all have logged, and a pruned point's seeds still training get a stop-requested file."""
    from nnctl.runs import STOP_REQUEST
    from nnctl.sweep_tpe import PointWatch

    seeds = [copy_run(finished_run, tmp_path / "seed-0", epochs=3, summary=False), copy_run(finished_run, tmp_path / "seed-1", epochs=2, summary=False)]
    ended = copy_run(finished_run, tmp_path / "seed-2", summary=True)

    class Recording(AlwaysPrune):
        def report(self, value, step):
            self.reported.append((step, value))

    trial = Recording()
    watch = PointWatch({0: (trial, [*seeds, ended], 5)}, "val_accuracy")
    watch.judge(0, trial, [*seeds, ended], 5)
    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert trial.reported == [(e, pytest.approx(rows[e - 1]["val_accuracy"])) for e in (1, 2)]  # epoch 3: one seed lacks it
    assert watch.pruned == {0}
    assert [(run / STOP_REQUEST).exists() for run in (*seeds, ended)] == [True, True, False]  # the ended one: nothing to stop


def test_tpe_with_populations_asks_batches_and_prunes_whole_points(tmp_path):
    """method tpe with populations (the default): points asked a batch at a time (8 per worker), every seed
    of a batch trained at once as populations; a point is pruned or completed as a whole, a pruned seed having
    stopped early, a completed one having trained every epoch."""
    body = """name: tpe-batches
method: tpe
trials: 11
seeds: [0, 1]
metric: test_accuracy
parameters:
  optimizer.lr: {distribution: loguniform, low: 0.0001, high: 1.0}
overrides: [training.epochs=60, data.val_fraction=0.2]
"""
    result = nnctl("sweep", write_sweep(tmp_path, body), "--out", tmp_path / "out", "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr
    folder = sweep_dir(tmp_path / "out")
    final = {e["trial"]: e for e in read_jsonl(folder / "trials.jsonl")}
    assert len(final) == 22 and {e["event"] for e in final.values()} <= {"completed", "pruned"}
    by_point = {}
    for event in final.values():
        by_point.setdefault(event["params"]["optimizer.lr"], []).append(event)
        info = json.loads((folder / event["run_dir"] / "run.json").read_text())
        rows = read_jsonl(folder / event["run_dir"] / "metrics.jsonl")
        assert info["population"] in (6, 16), info  # the first batch: 8 points x 2 seeds; the second: 3 x 2
        if event["event"] == "pruned":
            assert len(rows) < 60 and json.loads((folder / event["run_dir"] / "summary.json").read_text())["status"] == "interrupted"
        else:
            assert len(rows) == 60
    import optuna

    study = optuna.load_study(study_name="tpe-batches", storage=f"sqlite:///{folder / 'optuna.db'}")
    states = {t.params["optimizer.lr"]: t.state.name for t in study.trials}
    assert len(states) == 11 and set(states.values()) <= {"COMPLETE", "PRUNED"}
    for lr, events in by_point.items():  # a point is pruned as a whole, told to the study as such
        assert len(events) == 2 and states[lr] == ("PRUNED" if any(e["event"] == "pruned" for e in events) else "COMPLETE")


def test_tpe_batches_train_a_point_asked_twice_once(tmp_path):
    """With few values to choose from, TPE asks the same point twice in one batch: its trials (one folder each)
    are trained once and both asks are told their result."""
    body = "name: repeats\nmethod: tpe\ntrials: 6\nseeds: [0]\nparameters:\n  optimizer.lr: [0.1, 0.03]\noverrides: [training.epochs=3]\n"
    result = nnctl("sweep", write_sweep(tmp_path, body), "--out", tmp_path / "out", "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr
    folder = sweep_dir(tmp_path / "out")
    final = {e["trial"]: e for e in read_jsonl(folder / "trials.jsonl")}
    assert len(final) == 2 and {e["event"] for e in final.values()} == {"completed"}
    import optuna

    study = optuna.load_study(study_name="repeats", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == 6 and {t.state.name for t in study.trials} == {"COMPLETE"}


def test_a_trial_is_pruned_only_if_the_signal_stopped_it_early():
    from nnctl.sweep_tpe import PruneWatch, trial_outcome

    watch = PruneWatch(AlwaysPrune(), "val_accuracy", 0, epochs=5)
    watch.pruned = True  # the watcher signalled it
    completed = {"status": "completed", "exit_code": 0, "metrics": {"test_accuracy": 0.9}, "duration": 1.0}
    assert trial_outcome(completed, watch, "val_accuracy") == completed
    for stopped in ({"status": "interrupted", "exit_code": 143}, {"status": "failed", "exit_code": -signal.SIGTERM}):
        outcome = trial_outcome({**stopped, "metrics": {}, "duration": 1.0}, watch, "val_accuracy")
        assert outcome["status"] == "pruned" and "median rule on val_accuracy" in outcome["error"]
    failed = {"status": "failed", "exit_code": 1, "error": "boom", "metrics": {}, "duration": 1.0}
    assert trial_outcome(failed, watch, "val_accuracy") == failed
    watch.pruned = False
    interrupted = {"status": "interrupted", "exit_code": 143, "metrics": {}, "duration": 1.0}
    assert trial_outcome(interrupted, watch, "val_accuracy") == interrupted


def test_a_trial_killed_on_its_way_out_after_training_is_completed(tmp_path):
    """A signal that lands after training ended (summary.json written, run.json marked) cannot stop it
    early; the process may die of it while exiting, or have exited: either way the trial is completed."""
    from nnctl.sweeps import run_trial

    def kill_once_trained(process, run_dir):
        def kill():
            while process.poll() is None:
                try:
                    if json.loads((run_dir / "run.json").read_text()).get("status") == "completed":
                        process.send_signal(signal.SIGTERM)
                        return
                except (OSError, ValueError):
                    pass
                time.sleep(0.001)

        threading.Thread(target=kill, daemon=True).start()

    outcome = run_trial(str(SPIRAL), ["training.epochs=3"], str(tmp_path / "run"), False, kill_once_trained)
    assert outcome["status"] == "completed", outcome
    assert outcome["metrics"]["epochs_run"] == 3 and "test_accuracy" in outcome["metrics"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"


def test_one_line_sweep(tmp_path):
    result = nnctl(
        "sweep", SPIRAL, "-p", "optimizer.lr=0.3,0.03", "-p", "model.layers.0.units=4,8", "--seeds", "0,1",
        "--set", "training.epochs=5", "--out", tmp_path / "out", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"] == 8 and len(report["leaderboard"]) == 4
    assert Path(report["sweep_dir"]).name.startswith("spiral-")


def test_a_sweep_over_seeds_alone(tmp_path):
    """"How stable is this config?": --seeds without -p (or a sweep file without parameters) trains the config
    once per seed; summary.csv has one row, the mean and std over the seeds; the plot shows each seed's run."""
    result = nnctl("sweep", SPIRAL, "--seeds", "0,1,2", "--set", "training.epochs=5", "--out", tmp_path / "line", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"] == 3 and len(report["leaderboard"]) == 1
    folder = Path(report["sweep_dir"])
    (row,) = read_summary(folder)
    accuracies = [json.loads((run / "summary.json").read_text())["test_accuracy"] for run in (folder / "trials").iterdir()]
    assert row["count"] == "3" and float(row["test_accuracy_mean"]) == pytest.approx(np.mean(accuracies), abs=1e-12)
    assert float(row["test_accuracy_std"]) == pytest.approx(np.std(accuracies, ddof=1), abs=1e-12)
    assert list(row)[:3] == ["count", "failed", "pruned"]  # no parameter columns

    file = write_sweep(tmp_path, "name: stable\nseeds: [0, 1, 2]\noverrides: [training.epochs=5]\n")
    from_file = nnctl("sweep", file, "--out", tmp_path / "file")
    assert from_file.returncode == 0, from_file.stderr
    assert "stable: test_accuracy (max)" in from_file.stdout and " ± " in from_file.stdout  # the leaderboard's one row
    assert without_times(read_summary(sweep_dir(tmp_path / "file"))) == without_times([row])

    plotted = nnctl("plot", folder, "--out", tmp_path / "seeds.png")
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from nnctl.plots import sweep_figure

    figure = sweep_figure(folder)
    assert figure.texts[0].get_text().startswith("sweep spiral: test_accuracy over 3 seeds, ")  # the seeds' figure
    (axes,) = figure.axes
    assert sorted(axes.lines[-1].get_ydata()) == sorted(accuracies) and axes.get_xlabel() == "seed"


def test_the_default_metric_is_the_tasks_score_and_a_bare_parameters_key_is_none(tmp_path):
    from nnctl.sweeps import load_sweep

    regression = tmp_path / "reg.yaml"
    regression.write_text(f"base: {CONFIGS / 'reg_plane.yaml'}\nseeds: [0, 1]\nparameters:\n")
    sweep = load_sweep(regression)
    assert (sweep.config.metric, sweep.config.mode, sweep.config.parameters) == ("test_r2", "max", {})
    classification = load_sweep(write_sweep(tmp_path, "parameters:\n  optimizer.lr: [0.1]\n"))
    assert (classification.config.metric, classification.config.mode) == ("test_accuracy", "max")


def test_sweep_command_lines_that_do_not_fit_are_one_line(tmp_path):
    from conftest import nnctl_in_process

    file = write_sweep(tmp_path, "seeds: [0, 1]\n")
    cases = [
        ((SPIRAL,), "an experiment config, not a sweep file"),  # neither -p nor --seeds
        ((file, "--seeds", "3,4"), "a sweep file sets its own seeds and metric"),
        ((file, "--metric", "test_loss"), "a sweep file sets its own seeds and metric"),
        ((write_sweep(tmp_path, "method: random\ntrials: 3\n", "r.yaml"),), "method random draws parameter points"),
        ((SPIRAL, "--metric", "test_loss"), "--metric ranks the points of a sweep: give -p key.path=v1,v2 and/or --seeds"),
        ((tmp_path, "--seeds", "0"), "a folder; continue a sweep folder with nnctl sweep --resume"),
    ]
    for args, fragment in cases:
        assert_clean_error(nnctl_in_process("sweep", *args, "--out", tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


BAD = {
    "unknown parameter path": ("parameters:\n  optimizer.lrr: [0.1]\n", ["unknown parameter path 'optimizer.lrr'", "did you mean 'optimizer.lr'"]),
    "empty grid": ("parameters:\n  optimizer.lr: []\n", ["parameters", "at least 1 item"]),
    "low above high": (
        "method: random\ntrials: 3\nparameters:\n  optimizer.lr: {distribution: uniform, low: 0.5, high: 0.1}\n",
        ["low must be below high"],
    ),
    "metric nobody produces": ("metric: val_accuracy\nparameters:\n  optimizer.lr: [0.1]\n", ["no run of this sweep produces 'val_accuracy'", "available: train_loss"]),
    "distribution in a grid": ("parameters:\n  optimizer.lr: {distribution: uniform, low: 0.1, high: 0.5}\n", ["a grid takes a list of values"]),
    "random without trials": ("method: random\nparameters:\n  optimizer.lr: [0.1]\n", ["needs trials"]),
    "unknown key": ("seeds: [0]\nparamters:\n  optimizer.lr: [0.1]\n", ["unknown key 'paramters'", "did you mean 'parameters'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sweep_files(tmp_path, case):
    body, fragments = BAD[case]
    assert_clean_error(nnctl("sweep", write_sweep(tmp_path, body), "--out", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_resume_on_a_folder_that_is_not_a_sweep(tmp_path):
    assert_clean_error(nnctl("sweep", SPIRAL, "--resume", tmp_path), "not a sweep folder")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_dask_scheduler_fails_within_seconds(tmp_path):
    started = time.monotonic()
    result = nnctl("sweep", write_sweep(tmp_path, GRID), "--executor", "dask", "--address", f"tcp://127.0.0.1:{free_port()}", "--out", tmp_path / "o")
    assert_clean_error(result, "cannot reach the Dask scheduler")
    assert time.monotonic() - started < 30


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and two single-threaded worker processes on 127.0.0.1 (no nanny: one process each,
    faster to start, and a killed worker stays dead).  Worker i's scratch folders (TMPDIR) are
    ``tmp_path/wi-tmp``, so the test can see when it trains a trial."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    scheduler = subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    scratch = [tmp_path / f"w{i}-tmp" for i in range(2)]
    workers = []
    for i, tmp in enumerate(scratch):
        tmp.mkdir()
        workers.append(subprocess.Popen(
            [bin_dir / "dask", "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}", "--death-timeout", "10"],
            stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "TMPDIR": str(tmp)},
        ))  # fmt: skip
    from dask.distributed import Client

    try:
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers, logs, scratch
    finally:  # the workers first: a worker whose scheduler is gone waits for it (up to --death-timeout)
        for group in (workers, [scheduler]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def test_dask_sweep_survives_a_killed_worker(tmp_path, dask_cluster):
    address, workers, logs, scratch = dask_cluster
    body = GRID.replace("seeds: [0, 1]", "seeds: [0]").replace("training.epochs=15", "training.epochs=150")
    path = write_sweep(tmp_path, body)
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "sweep", path, "--executor", "dask", "--address", address, "--out", tmp_path / "dask", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    training = []  # the worker that trains a trial (or a population) first: the scheduler chooses which
    while not training:
        training = [i for i in (0, 1) if any(m.stat().st_size for m in scratch[i].glob("nnctl-*/run*/metrics.jsonl"))]
        assert time.monotonic() < deadline and process.poll() is None, "no worker ever trained a trial"
        time.sleep(0.02)
    os.killpg(workers[training[0]].pid, signal.SIGKILL)  # the worker, in the middle of a trial
    assert_no_processes_left(scratch[training[0]], within=10)  # its trial dies with it (PR_SET_PDEATHSIG)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "Remove worker" in (logs / "scheduler.log").read_text()  # the worker was lost while the sweep ran
    report = json.loads(stdout)
    assert report["trials"] == 4 and report["failed"] == 0  # the lost trials were run again, on the other worker
    folder = sweep_dir(tmp_path / "dask")
    for event in {e["trial"]: e for e in read_jsonl(folder / "trials.jsonl")}.values():
        assert (folder / event["run_dir"] / "checkpoints/last.npz").is_file()  # shipped back from the worker
    local = nnctl("sweep", path, "--out", tmp_path / "local", "--workers", "2")
    assert local.returncode == 0
    assert without_times(read_summary(folder)) == without_times(read_summary(sweep_dir(tmp_path / "local")))


def test_runs_list_and_compare(tmp_path):
    a = train_json(SPIRAL, "--set", "training.epochs=3", out=tmp_path)["run_dir"]
    b = train_json(SPIRAL, "--set", "training.epochs=4", "--set", "optimizer.lr=0.1", out=tmp_path)["run_dir"]
    listed = nnctl("runs", "list", tmp_path, "--json")
    assert listed.returncode == 0
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["run_dir"] for e in entries] == sorted([a, b])
    assert all(e["status"] == "completed" and "test_accuracy" in e["metrics"] for e in entries)
    table = nnctl("runs", "list", tmp_path)
    assert table.returncode == 0 and Path(a).name in table.stdout
    compared = json.loads(nnctl("runs", "compare", a, b, "--json").stdout)
    assert compared["differing_config"] == {"optimizer.lr": [0.03, 0.1], "training.epochs": [3, 4]}
    assert len(compared["metrics"]["test_accuracy"]) == 2
    assert_clean_error(nnctl("runs", "compare", a), "two or more")
    assert_clean_error(nnctl("runs", "list", tmp_path / "nope"), "no such folder")

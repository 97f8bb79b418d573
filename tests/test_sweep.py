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


def test_resume_after_killing_the_sweep_reruns_only_unfinished_trials(tmp_path):
    body = "name: long\nseeds: [0, 1, 2]\nparameters:\n  optimizer.lr: [0.1, 0.03]\noverrides: [training.epochs=120]\n"
    path = write_sweep(tmp_path, body)
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "sweep", path, "--out", tmp_path / "out", "--workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    ledger = None
    while time.monotonic() < deadline:
        ledgers = list((tmp_path / "out").glob("sweeps/*/trials.jsonl"))
        if ledgers and sum(e["event"] == "completed" for e in read_jsonl(ledgers[0])) >= 2:
            ledger = ledgers[0]
            break
        time.sleep(0.02)
    assert ledger is not None, "the sweep did not complete two trials"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {e["trial"] for e in read_jsonl(ledger) if e["event"] == "completed"}
    result = nnctl("sweep", path, "--resume", ledger.parent, "--json")
    assert result.returncode == 0, result.stderr
    events = read_jsonl(ledger)
    final = {e["trial"]: e["event"] for e in events}
    assert len(final) == 6 and set(final.values()) == {"completed"}
    for trial in done_before:  # not run again
        assert [e["event"] for e in events if e["trial"] == trial].count("running") == 1
    reference = nnctl("sweep", path, "--out", tmp_path / "fresh", "--workers", "2")
    assert reference.returncode == 0
    assert without_times(read_summary(ledger.parent)) == without_times(read_summary(sweep_dir(tmp_path / "fresh")))


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
overrides: [training.epochs=300, data.val_fraction=0.2]
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
        if event["event"] == "pruned":
            rows = read_jsonl(folder / event["run_dir"] / "metrics.jsonl")
            assert 0 < len(rows) < 300  # stopped early
    (folder / "sweep.yaml").write_text((folder / "sweep.yaml").read_text().replace("trials: 6", "trials: 8"))
    resumed = nnctl("sweep", path, "--resume", folder, "--json")
    assert resumed.returncode == 0, resumed.stderr
    import optuna

    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == 8
    assert len({e["trial"] for e in read_jsonl(folder / "trials.jsonl")}) == 8


def test_one_line_sweep(tmp_path):
    result = nnctl(
        "sweep", SPIRAL, "-p", "optimizer.lr=0.3,0.03", "-p", "model.layers.0.units=4,8", "--seeds", "0,1",
        "--set", "training.epochs=5", "--out", tmp_path / "out", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"] == 8 and len(report["leaderboard"]) == 4
    assert Path(report["sweep_dir"]).name.startswith("spiral-")


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
    """A real scheduler and two single-threaded worker processes on 127.0.0.1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    scheduler = subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            [bin_dir / "dask", "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}", "--death-timeout", "30"],
            stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for i in range(2)
    ]
    from dask.distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    yield address, workers, logs
    for process in [*workers, scheduler]:
        if process.poll() is None:
            process.terminate()
    for process in [*workers, scheduler]:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_dask_sweep_survives_a_killed_worker(tmp_path, dask_cluster):
    address, workers, logs = dask_cluster
    body = GRID.replace("training.epochs=15", "training.epochs=700")  # about 1-2 s a trial
    path = write_sweep(tmp_path, body)
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "sweep", path, "--executor", "dask", "--address", address, "--out", tmp_path / "dask", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)  # both workers are busy with a trial
    os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and the trial it runs
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "Remove worker" in (logs / "scheduler.log").read_text()  # w0 was lost while the sweep ran
    report = json.loads(stdout)
    assert report["trials"] == 8 and report["failed"] == 0
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

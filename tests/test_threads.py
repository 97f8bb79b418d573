"""training.threads: a fixed count repeats bit for bit, and what ``auto`` chooses (no timings here: speed
is measured in benchmarks/bench.py, idle and with a busy core)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from conftest import read_jsonl, train_json
from nnctl import threads

# an MNIST-shaped network (784-256-256-10, batch 128) on a little random data: auto watches the load for it
MNIST_SHAPED = """
name: mnist-shaped
seed: 3
data: {{dataset: npz, path: {path}, val_fraction: 0.2, test_fraction: 0.0}}
model:
  layers:
    - {{type: dense, units: 256, activation: relu}}
    - {{type: dense, units: 256, activation: relu}}
    - {{type: dense, units: 10}}
optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
training: {{epochs: 2, batch_size: 128, threads: {threads}}}
"""


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def train(tmp_path: Path, data: Path, setting, name: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(MNIST_SHAPED.format(path=json.dumps(str(data)), threads=setting))
    return Path(train_json(config, out=tmp_path / name)["run_dir"])


def same_arrays(a: Path, b: Path) -> bool:
    with np.load(a / "checkpoints/last.npz") as one, np.load(b / "checkpoints/last.npz") as other:
        assert one.files == other.files
        return all(np.array_equal(one[name], other[name]) for name in one.files if name != "meta.json")


def metrics_without_times(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in read_jsonl(run / "metrics.jsonl")]


@pytest.fixture
def mnist_shaped_data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((1280, 784), dtype=np.float32)
    y = rng.permutation(np.arange(len(x)) % 10)
    path = tmp_path / "mnist-shaped.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.mark.parametrize("count", [1, 2])
def test_a_fixed_thread_count_repeats_bit_for_bit(tmp_path, mnist_shaped_data, count):
    first, second = (train(tmp_path, mnist_shaped_data, count, f"threads-{count}-{i}") for i in (1, 2))
    assert same_arrays(first, second)
    assert metrics_without_times(first) == metrics_without_times(second)
    info = json.loads((first / "run.json").read_text())
    assert info["blas_threads"] == count and "auto_threads" not in info


def test_auto_records_the_threads_it_used(tmp_path, mnist_shaped_data):
    run = train(tmp_path, mnist_shaped_data, "auto", "auto")
    info = json.loads((run / "run.json").read_text())
    assert info["blas_threads"] == "auto"
    used = info["auto_threads"]
    assert set(used) == {"seconds", "changes"} and used["changes"] >= 0
    assert used["seconds"] and {int(n) for n in used["seconds"]} <= set(range(1, threads.cores() + 1))


def test_auto_is_one_thread_for_a_playground_size_model(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    playground = 10 * 8 * 8  # batch 10, an 8 x 8 hidden layer
    mnist = 128 * 784 * 256
    assert threads.resolve("auto", playground) == 1
    assert threads.resolve("auto", mnist) == "auto"
    assert threads.resolve(3, playground) == 3  # a count is the user's
    monkeypatch.setattr(threads, "cores", lambda: 1)
    assert threads.resolve("auto", mnist) == 1


@pytest.mark.parametrize(
    "cores, busy, current, expected",
    [
        (2, 0.0, 2, 2),
        (2, 0.2, 2, 2),  # a little load elsewhere: keep both cores
        (2, 0.5, 2, 1),  # half a core taken: leave it
        (2, 1.0, 2, 1),  # a CPU burner
        (2, 2.0, 2, 1),  # never fewer than one
        (2, 0.2, 1, 1),  # not yet free enough to go back up
        (2, 0.05, 1, 2),
        (4, 1.0, 4, 3),
        (4, 9.0, 4, 1),
        (1, 0.0, 1, 1),
    ],
)
def test_auto_leaves_the_cores_other_processes_keep_busy(cores, busy, current, expected):
    assert threads.threads_for_load(cores, busy, current) == expected


def test_cpu_clock_subtracts_this_process_own_time(monkeypatch):
    readings = iter([(0.0, 10.0, 1.0), (2.0, 13.0, 2.0)])  # 3 busy CPU-seconds in 2 s, 1 of them ours
    monkeypatch.setattr(threads.CpuClock, "read", lambda self: next(readings))
    assert threads.CpuClock().busy_elsewhere() == pytest.approx(1.0)


def test_the_load_watcher_follows_the_load_and_restores_the_blas_threads(monkeypatch):
    load = {"busy": 1.0}
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads.CpuClock, "busy_elsewhere", lambda self: load["busy"])

    def wait_for(count):
        deadline = time.monotonic() + 30
        while blas_threads() != {count} and time.monotonic() < deadline:
            time.sleep(0.01)
        return blas_threads()

    before = blas_threads()
    watcher = threads.LoadWatcher(interval=0.01, first_look=0.0)
    with watcher:
        assert wait_for(1) == {1}  # decided before training starts: a core is busy
        load["busy"] = 0.0
        assert wait_for(2) == {2}
        load["busy"] = 1.0
        assert wait_for(1) == {1}
    assert blas_threads() == before
    record = watcher.record()
    assert record["changes"] >= 2 and set(record["seconds"]) == {"1", "2"}


def test_a_fixed_count_is_set_while_training_and_restored_after():
    before = blas_threads()
    with threads.training_threads(1):
        assert blas_threads() == {1}
    assert blas_threads() == before


def test_a_run_whose_auto_thread_count_changed_says_so(tmp_path):
    """Not silent: when auto changed the count (so the last bits depend on the load), the run says how to pin it."""
    from types import SimpleNamespace

    from nnctl.runs import RunFolder
    from nnctl.training import auto_threads_note

    run = RunFolder(tmp_path)
    run.update_run_info(auto_threads={"seconds": {"1": 2.5, "2": 4.0}, "changes": 3})
    note = auto_threads_note(SimpleNamespace(threads="auto"), run)
    assert "1 for 2.5 s, 2 for 4 s" in note and "set training.threads to a number" in note
    run.update_run_info(auto_threads={"seconds": {"2": 6.5}, "changes": 0})
    assert auto_threads_note(SimpleNamespace(threads="auto"), run) == ""
    assert auto_threads_note(SimpleNamespace(threads=2), run) == ""

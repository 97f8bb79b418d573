"""Runs that survive: exact resume after SIGINT/SIGTERM/SIGKILL, atomic checkpoints, divergence handling,
hostile input, and property-based tests of the config loader."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CONFIGS, nnctl, read_jsonl, train_json
from test_cli_errors import assert_clean_error

# Small but not instant: about 20-40 ms an epoch, so a signal lands in the middle of training.
BASE = """
name: resume
seed: 7
data: {dataset: digits, val_fraction: 0.1, test_fraction: 0.2}
model:
  layers:
    - {type: dense, units: 192, activation: tanh}
    - {type: dense, units: 10}
optimizer: {name: sgd, lr: 0.02, momentum: 0.9}
training: {epochs: 60, batch_size: 16, checkpoint_every: 3, select_best: {monitor: val_accuracy}}
"""
EVERYTHING = """
name: resume
seed: 11
data: {dataset: digits, val_fraction: 0.1, test_fraction: 0.2, augment: {shift: 1, rotate: 8, noise_std: 0.05}}
model:
  layers:
    - {type: dense, units: 192}
    - {type: batchnorm}
    - {type: activation, name: relu}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 10}
optimizer: {name: adam, lr: 0.002}
training:
  epochs: 50
  batch_size: 16
  checkpoint_every: 4
  lr_schedule: {type: reduce_on_plateau, patience: 2, factor: 0.5}
  early_stopping: {monitor: val_loss, patience: 40, restore_best: true}
"""
CONFIGS_TO_RESUME = {"sgd-momentum": BASE, "adam-dropout-batchnorm-augment": EVERYTHING}


def strip_times(rows):
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


def assert_same_run(reference: Path, resumed: Path):
    for which in ("last", "best"):
        with np.load(reference / f"checkpoints/{which}.npz") as a, np.load(resumed / f"checkpoints/{which}.npz") as b:
            assert a.files == b.files
            for name in a.files:
                if name != "meta.json":
                    assert np.array_equal(a[name], b[name]), (which, name)
            meta_a, meta_b = json.loads(str(a["meta.json"])), json.loads(str(b["meta.json"]))
            assert meta_a["train_state"] == meta_b["train_state"] and meta_a["epoch"] == meta_b["epoch"]
    assert strip_times(read_jsonl(reference / "metrics.jsonl")) == strip_times(read_jsonl(resumed / "metrics.jsonl"))
    assert (reference / "metrics.csv").read_text().count("\n") == (resumed / "metrics.csv").read_text().count("\n")
    summary_a, summary_b = (json.loads((run / "summary.json").read_text()) for run in (reference, resumed))
    summary_a.pop("train_seconds_total")
    summary_b.pop("train_seconds_total")
    assert summary_a == summary_b


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Each config trained once without interruption."""
    folder = tmp_path_factory.mktemp("reference")
    runs = {}
    for name, text in CONFIGS_TO_RESUME.items():
        config = folder / f"{name}.yaml"
        config.write_text(text)
        runs[name] = (config, Path(train_json(config, out=folder / "runs")["run_dir"]))
    return runs


def start_and_signal(config: Path, out: Path, after_rows: int, signum: int) -> tuple[subprocess.Popen, Path]:
    """Start `nnctl train` and send ``signum`` once metrics.jsonl has ``after_rows`` rows."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", config, "--out", out, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        metrics = list(out.glob("*/metrics.jsonl"))
        if metrics and len(metrics[0].read_text().splitlines()) >= after_rows:
            process.send_signal(signum)
            return process, metrics[0].parent
        if process.poll() is not None:
            pytest.fail(f"training ended before the signal: {process.stderr.read()}")
        time.sleep(0.002)
    pytest.fail("training did not start")


@pytest.mark.parametrize(
    "name, after_rows, signum, code",
    [
        ("sgd-momentum", 2, signal.SIGINT, 130),
        ("sgd-momentum", 14, signal.SIGTERM, 143),
        ("adam-dropout-batchnorm-augment", 5, signal.SIGINT, 130),
        ("adam-dropout-batchnorm-augment", 21, signal.SIGTERM, 143),
    ],
)
def test_signal_then_resume_equals_an_uninterrupted_run(reference_runs, tmp_path, name, after_rows, signum, code):
    config, reference = reference_runs[name]
    process, run = start_and_signal(config, tmp_path / "runs", after_rows, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"continue with: nnctl resume {run}" in stderr
    stopped = json.loads((run / "run.json").read_text())
    assert stopped["status"] == "interrupted" and "continue with" in stopped["message"]
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    result = nnctl("resume", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert_same_run(reference, run)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and len(info["resumes"]) == 1
    assert "message" not in info  # the old "stopped ... continue with" no longer describes the run


@pytest.mark.parametrize("name, after_rows", [("sgd-momentum", 8), ("adam-dropout-batchnorm-augment", 10)])
def test_sigkill_then_resume_from_the_last_checkpoint(reference_runs, tmp_path, name, after_rows):
    config, reference = reference_runs[name]
    process, run = start_and_signal(config, tmp_path / "runs", after_rows, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # nobody could say otherwise
    rows_before = len(read_jsonl(run / "metrics.jsonl"))
    result = nnctl("train", config, "--resume", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert_same_run(reference, run)  # rows written after the checkpoint were cut, then recomputed
    assert rows_before >= after_rows


def test_resume_with_a_changed_config_is_refused_unless_safe_and_forced(reference_runs, tmp_path):
    config, reference = reference_runs["sgd-momentum"]
    changed = nnctl("resume", reference, "--set", "optimizer.lr=0.5", "--set", "training.epochs=70")
    assert_clean_error(changed, "differs from the config the run was trained with", "optimizer.lr: 0.02 -> 0.5", "training.epochs: 60 -> 70", "refused")
    forced = nnctl("resume", reference, "--set", "optimizer.lr=0.5", "--force")
    assert_clean_error(forced, "refused even with --force", "optimizer.lr")
    finished = nnctl("resume", reference)
    assert_clean_error(finished, "already finished its 60 epochs")
    other = tmp_path / "other.yaml"
    other.write_text(BASE.replace("units: 192", "units: 64"))
    assert_clean_error(nnctl("train", other, "--resume", reference), "model.layers.0.units: 192 -> 64")
    assert_clean_error(nnctl("resume", tmp_path), "not a run folder")


def test_forced_longer_run_equals_training_that_long_from_the_start(tmp_path):
    config = tmp_path / "short.yaml"
    config.write_text(BASE.replace("epochs: 60", "epochs: 6"))
    short = Path(train_json(config, out=tmp_path / "a")["run_dir"])
    result = nnctl("resume", short, "--set", "training.epochs=9", "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    long_config = tmp_path / "long.yaml"
    long_config.write_text(BASE.replace("epochs: 60", "epochs: 9"))
    long = Path(train_json(long_config, out=tmp_path / "b")["run_dir"])
    with np.load(short / "checkpoints/last.npz") as a, np.load(long / "checkpoints/last.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("model/"))
    assert strip_times(read_jsonl(short / "metrics.jsonl")) == strip_times(read_jsonl(long / "metrics.jsonl"))


# ---------------------------------------------------------------------------------- atomic writes


def test_a_failure_between_write_and_replace_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    from nnctl import runs

    path = tmp_path / "last.npz"
    runs.save_checkpoint(path, {"model/w": np.arange(3.0)}, {"format": runs.CHECKPOINT_FORMAT, "epoch": 1})

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "replace", crash)
    with pytest.raises(OSError):
        runs.save_checkpoint(path, {"model/w": np.arange(5.0)}, {"format": runs.CHECKPOINT_FORMAT, "epoch": 2})
    arrays, meta = runs.load_checkpoint(path)
    assert meta["epoch"] == 1 and list(arrays["model/w"]) == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]  # no temporary file left behind


def test_killing_a_checkpoint_writer_never_leaves_a_broken_checkpoint(tmp_path):
    """A child process rewrites a large checkpoint in a loop; SIGKILL it at varied moments, then load."""
    script = (
        "import numpy as np, sys\n"
        "from nnctl import runs\n"
        "big = np.random.default_rng(0).random(4_000_000)\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    runs.save_checkpoint(sys.argv[1], {'model/w': big + i}, {'format': runs.CHECKPOINT_FORMAT, 'epoch': i})\n"
        "    print(i, flush=True)\n"
    )
    path = tmp_path / "last.npz"
    for delay in (0.31, 0.47, 0.62, 0.83):
        process = subprocess.Popen([sys.executable, "-c", script, path], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # one complete checkpoint exists
        time.sleep(delay)
        process.kill()
        process.wait()
        from nnctl import runs

        arrays, meta = runs.load_checkpoint(path)
        assert arrays["model/w"][0] == pytest.approx(np.random.default_rng(0).random(1)[0] + meta["epoch"])


def test_disk_full_while_checkpointing_is_a_clear_error(tmp_path, monkeypatch):
    from nnctl import runs, training
    from nnctl.config import load_config
    from nnctl.errors import NnctlError

    calls = {"n": 0}
    real = runs.atomic_write_bytes

    def fill_up(path, data):
        if Path(path).suffix == ".npz":
            calls["n"] += 1
            if calls["n"] > 2:  # epoch 0 and epoch 5 are written
                raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(training, "atomic_write_bytes", fill_up)  # what a checkpoint is written with
    loaded = load_config(CONFIGS / "spiral.yaml", ["training.epochs=30", "training.checkpoint_every=5"])
    with pytest.raises(NnctlError) as failure:
        training.run_training(loaded, tmp_path)
    run = next(tmp_path.iterdir())
    # the file, the reason, and the run's real state: what the last checkpoint holds and how to go on
    assert str(failure.value) == (
        f"{run}/checkpoints/last.npz: cannot write the checkpoint: No space left on device; the run stopped after "
        f"epoch 10; checkpoints/last.npz holds epoch 5; continue with: nnctl resume {run}"
    )
    arrays, meta = runs.load_checkpoint(run / "checkpoints/last.npz")
    assert meta["epoch"] == 5
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "holds epoch 5" in info["error"]
    monkeypatch.setattr(training, "atomic_write_bytes", real)  # space is free again: the run goes on and completes
    from nnctl.resume import resume_run

    assert resume_run(run).status == "completed"
    assert [row["epoch"] for row in read_jsonl(run / "metrics.jsonl")] == list(range(1, 31))
    assert "error" not in json.loads((run / "run.json").read_text())


def test_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_clean_error(nnctl("train", CONFIGS / "spiral.yaml", "--out", blocker / "runs"), "cannot create the output folder")


# ------------------------------------------------------------------------------------- divergence


def test_rollback_lowers_the_learning_rate_and_carries_on(runs):
    summary = train_json(
        CONFIGS / "reg_plane.yaml",
        "--set", "optimizer.lr=0.6",
        "--set", "training.on_nonfinite=rollback",
        "--set", "training.lr_factor=0.1",
        "--set", "training.max_rollbacks=4",
        "--set", "training.epochs=15",
        out=runs,
    )  # fmt: skip
    assert summary["status"] == "completed" and summary["rollbacks"] >= 1
    assert summary["test_r2"] > 0.5
    run = Path(summary["run_dir"])
    rows = read_jsonl(run / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == list(range(1, 16))
    assert rows[-1]["lr"] < 0.6 and rows[-1]["rollbacks"] == summary["rollbacks"]
    events = json.loads((run / "run.json").read_text())["rollbacks"]
    assert len(events) == summary["rollbacks"] and events[0]["lr_scale"] == pytest.approx(0.1)


def test_rollback_gives_up_after_max_rollbacks(tmp_path):
    result = nnctl(
        "train", CONFIGS / "reg_plane.yaml", "--set", "optimizer.lr=1e6", "--set", "training.on_nonfinite=rollback",
        "--set", "training.max_rollbacks=2", "--out", tmp_path, "--json",
    )  # fmt: skip
    assert result.returncode == 3
    summary = json.loads(result.stdout)
    assert summary["status"] == "diverged" and summary["rollbacks"] == 2


# ------------------------------------------------------------------------------------ hostile input


def test_alias_bomb_is_refused_quickly(tmp_path):
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.monotonic()
    assert_clean_error(nnctl("train", path), "too many aliases", "refused")
    assert time.monotonic() - started < 30


def test_deeply_nested_yaml_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")
    assert_clean_error(nnctl("validate", path), "deep.yaml")


def test_a_validation_fraction_too_small_for_one_row(tmp_path):
    result = nnctl("train", CONFIGS / "spiral.yaml", "--set", "data.val_fraction=0.0001", "--set", "training.early_stopping={monitor: val_loss}", "--out", tmp_path)
    assert_clean_error(result, "data.val_fraction", "too small to hold out a single validation row")


def test_huge_yaml_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "w") as handle:
        handle.write("# padding\n" * 200_000)
    assert_clean_error(nnctl("validate", path), "too large for a config")


def test_absurd_sizes_are_refused_before_allocating():
    samples = nnctl("train", CONFIGS / "spiral.yaml", "--set", "data.samples=10_000_000_000")
    assert_clean_error(samples, "data.samples", "would need about", "GB of memory", "available")
    layer = nnctl("validate", CONFIGS / "spiral.yaml", "--set", "model.layers.1.units=1000000000")
    assert_clean_error(layer, "model.layers.1.units", "would need about", "GB of memory")


def test_edited_run_config_is_reported_with_its_place(tmp_path):
    run = Path(train_json(CONFIGS / "spiral.yaml", "--set", "training.epochs=2", out=tmp_path)["run_dir"])
    text = (run / "config.yaml").read_text().replace("lr: 0.03", "lr: fast")
    (run / "config.yaml").write_text(text)
    line = text.splitlines().index("  lr: fast") + 1
    for command in (("eval", run), ("resume", run)):
        assert_clean_error(nnctl(*command), f"config.yaml:{line}:", "optimizer.lr", "valid number")


def test_checkpoint_with_a_pickle_inside_is_refused(tmp_path):
    run = Path(train_json(CONFIGS / "spiral.yaml", "--set", "training.epochs=2", out=tmp_path)["run_dir"])
    with np.load(run / "checkpoints/last.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["model/layers.0.weight"] = np.array([{"payload": "os.system"}], dtype=object)
    np.savez(run / "checkpoints/last.npz", **arrays)
    assert_clean_error(nnctl("eval", run), "Python objects (pickle); refused")


# ---------------------------------------------------------------------- property-based config tests

KEYS = ["name", "seed", "data", "dataset", "samples", "noise", "model", "layers", "type", "units", "activation",
        "optimizer", "lr", "momentum", "training", "epochs", "batch_size", "loss", "features", "rate", "x"]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["spiral", "dense", "tanh", "sgd", "mlp", "relu", "cross_entropy", "mse", "circle", "1e-3"]),
    st.text(max_size=12),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5)
    ),
    max_leaves=25,
)


def load_or_clean_error(text: str, overrides=()):
    from nnctl.config import config_from_text
    from nnctl.errors import NnctlError

    try:
        return config_from_text(text, "random.yaml", overrides)
    except NnctlError as exc:
        assert str(exc).strip(), "an error must say something"
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_yaml_documents_give_a_config_or_a_clean_error(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    load_or_clean_error(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_a_config_or_a_clean_error(text):
    load_or_clean_error(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=30) | st.from_regex(r"[a-z_.0-9]{1,25}=[^\n]{0,15}", fullmatch=True), max_size=3))
def test_random_set_overrides_give_a_config_or_a_clean_error(overrides):
    load_or_clean_error((CONFIGS / "spiral.yaml").read_text(), overrides)

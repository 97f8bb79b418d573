"""Run integrity: which weights score the test set, resume and eval against the checkpoint's own config,
one writer per run folder, metrics durable before checkpoints, runs killed at awkward moments, file
permissions and strict JSON."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl, read_jsonl, train_json
from test_cli_errors import assert_clean_error

SPIRAL = ["--set", "training.epochs=30", "--set", "data.val_fraction=0.1"]


def strict_json(text: str):
    """json.loads that refuses NaN and infinities, as a strict JSON reader does."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def summary_of(run: Path) -> dict:
    return strict_json((run / "summary.json").read_text())


def eval_json(target: Path, split: str = "test") -> dict:
    result = nnctl("eval", target, "--split", split, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------------------- which weights are scored


def test_the_final_weights_are_scored_unless_selection_is_asked_for(runs):
    run = Path(train_json(CONFIGS / "spiral.yaml", *SPIRAL, out=runs)["run_dir"])
    summary = summary_of(run)
    assert summary["checkpoint"] == "checkpoints/last.npz" and summary["scored_epoch"] == 30
    assert "final weights" in summary["scored_because"] and "no model selection" in summary["scored_because"]
    assert not (run / "checkpoints/best.npz").exists()  # validation data alone selects nothing
    assert eval_json(run)["test_accuracy"] == summary["test_accuracy"]


def test_select_best_scores_the_best_epoch_by_its_monitor_and_mode(runs):
    run = Path(train_json(CONFIGS / "spiral.yaml", *SPIRAL, "--set", "training.select_best={monitor: val_loss, mode: max}", out=runs)["run_dir"])
    rows = read_jsonl(run / "metrics.jsonl")
    worst = max(rows, key=lambda row: row["val_loss"])["epoch"]  # mode max on a loss: the user asked for it
    summary = summary_of(run)
    assert summary["scored_epoch"] == summary["best_epoch"] == worst and summary["checkpoint"] == "checkpoints/best.npz"
    assert "val_loss (max)" in summary["scored_because"] and "training.select_best" in summary["scored_because"]
    with np.load(run / "checkpoints/best.npz") as best:
        assert json.loads(str(best["meta.json"]))["epoch"] == worst
    assert eval_json(run)["test_loss"] == summary["test_loss"]


def test_early_stopping_restores_the_best_weights_only_when_asked(runs):
    stopping = "training.early_stopping={monitor: val_accuracy, patience: 3}"
    plain = summary_of(Path(train_json(CONFIGS / "spiral.yaml", *SPIRAL, "--set", stopping, out=runs)["run_dir"]))
    assert plain["stop_reason"].startswith("early stopping") and plain["scored_epoch"] == plain["epochs_run"]
    restored = summary_of(
        Path(train_json(CONFIGS / "spiral.yaml", *SPIRAL, "--set", stopping.replace("}", ", restore_best: true}"), out=runs)["run_dir"])
    )
    assert restored["scored_epoch"] == restored["best_epoch"] == restored["epochs_run"] - 3
    assert "early_stopping.restore_best" in restored["scored_because"]


def test_two_different_selections_are_refused(tmp_path):
    result = nnctl(
        "validate", CONFIGS / "spiral.yaml", *SPIRAL,
        "--set", "training.early_stopping={monitor: val_loss, restore_best: true}",
        "--set", "training.select_best={monitor: val_accuracy}",
    )  # fmt: skip
    assert_clean_error(result, "training.select_best", "keep one of them")


# ------------------------------------------------------------- the checkpoint's config is the truth


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("short")
    return Path(train_json(CONFIGS / "spiral.yaml", "--set", "training.epochs=8", "--set", "training.checkpoint_every=4", out=out)["run_dir"])


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / run.name))


def test_resume_after_editing_config_yaml_is_refused_naming_the_key(short_run, tmp_path):
    run = copy_run(short_run, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.03", "lr: 0.3"))
    assert_clean_error(nnctl("resume", run), "config.yaml differs from the config the run was trained with", "optimizer.lr: 0.03 -> 0.3")
    assert read_jsonl(run / "metrics.jsonl") == read_jsonl(short_run / "metrics.jsonl")  # nothing touched
    # a resume-safe key edited in the file needs --force, as with --set
    config.write_text(config.read_text().replace("lr: 0.3", "lr: 0.03").replace("epochs: 8", "epochs: 10"))
    assert_clean_error(nnctl("resume", run), "training.epochs: 8 -> 10", "--force")
    result = nnctl("resume", run, "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    assert summary_of(run)["epochs_run"] == 10


def test_eval_and_predict_after_editing_the_seed_refuse_instead_of_scoring_another_split(short_run, tmp_path):
    run = copy_run(short_run, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("seed: 0", "seed: 5", 1))
    assert_clean_error(nnctl("eval", run), "config.yaml: differs from the config its checkpoint was trained with", "seed: 0 -> 5")
    points = tmp_path / "points.csv"
    points.write_text("x1,x2\n0.5,1.0\n")
    assert_clean_error(nnctl("predict", run, points), "seed: 0 -> 5")
    # the checkpoint file itself carries its config: it scores what training scored
    assert eval_json(run / "checkpoints/last.npz")["test_accuracy"] == summary_of(short_run)["test_accuracy"]


def test_a_forged_summary_cannot_point_eval_outside_the_run(short_run, tmp_path):
    run = copy_run(short_run, tmp_path)
    summary = summary_of(run)
    (run / "summary.json").write_text(json.dumps({**summary, "checkpoint": "../../../etc/passwd"}))
    assert_clean_error(nnctl("eval", run), "summary.json: checkpoint", "allowed: checkpoints/last.npz")
    (run / "summary.json").write_text("[1, 2]")
    assert_clean_error(nnctl("eval", run), "summary.json: not a summary")
    (run / "run.json").write_text('"running"')
    assert_clean_error(nnctl("resume", run), "run.json: not a run.json")


# ------------------------------------------------------------------------ one writer per run folder

SLOW = ["--set", "training.epochs=400", "--set", "data.samples=2000", "--set", "training.checkpoint_every=1"]


def start_training(out: Path, *extra) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", str(CONFIGS / "spiral.yaml"), *SLOW, *extra, "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = [p for p in out.glob("*") if (p / "metrics.jsonl").exists()] if out.exists() else []
        if runs and len(read_jsonl(runs[0] / "metrics.jsonl")) >= 2:
            return process, runs[0]
        time.sleep(0.05)
    process.kill()
    raise AssertionError("training did not start")


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    process, run = start_training(tmp_path / "runs")
    try:
        for command in (["resume", run], ["train", CONFIGS / "spiral.yaml", *SLOW, "--resume", run]):
            assert_clean_error(nnctl(*command), "another nnctl process", f"pid {process.pid}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # the kernel dropped the lock with the process: the run can be continued now (a few epochs more than its
    # checkpoint holds, to keep the test short), and its log has no hole or repeat
    with np.load(run / "checkpoints/last.npz") as last:
        epochs = json.loads(str(last["meta.json"]))["epoch"] + 3
    result = nnctl("resume", run, "--set", f"training.epochs={epochs}", "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    assert [row["epoch"] for row in read_jsonl(run / "metrics.jsonl")] == list(range(1, epochs + 1))


# ---------------------------------------------------------------- what a kill or a power cut leaves


def test_a_checkpoint_is_never_durable_before_the_metrics_rows_it_covers(tmp_path, monkeypatch):
    """Model a power cut: only what was fsynced survives.  Every time a checkpoint is made durable (its
    rename), the metrics log's durable content must already hold every epoch the checkpoint covers."""
    from nnctl import runs, training
    from nnctl.config import load_config

    durable_rows: dict[str, int] = {}
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith("metrics.jsonl"):
            durable_rows["metrics"] = Path(path).read_text().count("\n")
        return real_fsync(fd)

    checked = []

    def checking_replace(src, dst):
        if str(dst).endswith("last.npz"):
            epoch = json.loads(str(np.load(src)["meta.json"]))["epoch"]
            assert durable_rows.get("metrics", 0) >= epoch, f"checkpoint of epoch {epoch} before its metrics rows were durable"
            checked.append(epoch)
        return real_replace(src, dst)

    monkeypatch.setattr(runs.os, "fsync", recording_fsync)
    monkeypatch.setattr(runs.os, "replace", checking_replace)
    loaded = load_config(CONFIGS / "spiral.yaml", ["training.epochs=6", "training.checkpoint_every=2"])
    training.run_training(loaded, tmp_path)
    assert checked == [0, 2, 4, 6]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(short_run, tmp_path):
    run = copy_run(short_run, tmp_path)
    for leftover in ("summary.json", "metrics.jsonl", "metrics.csv", "checkpoints/last.npz"):
        (run / leftover).unlink()
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))  # what SIGKILL at start-up leaves
    (run / "checkpoints/.last.npz.k2x9.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    (run / ".run.json.a1b2.tmp").write_text("{")
    result = nnctl("resume", run, "--quiet")
    assert result.returncode == 0, result.stderr
    strip = lambda rows: [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]  # noqa: E731
    assert strip(read_jsonl(run / "metrics.jsonl")) == strip(read_jsonl(short_run / "metrics.jsonl"))
    assert summary_of(run)["test_accuracy"] == summary_of(short_run)["test_accuracy"]
    assert not list(run.rglob("*.tmp"))  # what killed writes left is cleaned up
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def test_a_run_killed_after_its_last_checkpoint_gets_its_summary_on_resume(short_run, tmp_path):
    run = copy_run(short_run, tmp_path)
    (run / "summary.json").unlink()
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    result = nnctl("resume", run, "--json")
    assert result.returncode == 0, result.stderr
    written, original = summary_of(run), summary_of(short_run)
    assert {k: v for k, v in written.items() if k != "train_seconds_total"} == {k: v for k, v in original.items() if k != "train_seconds_total"}
    assert_clean_error(nnctl("resume", run), "already finished")


def test_a_real_sigkill_at_start_up_or_mid_run_is_always_resumable(tmp_path):
    reference = Path(train_json(CONFIGS / "spiral.yaml", "--set", "training.epochs=12", out=tmp_path / "reference")["run_dir"])
    resumed = 0
    for delay in (0.0, 0.05, 0.3):  # right after the run folder appears, during the first epochs, later
        out = tmp_path / f"killed-{delay}"
        process = subprocess.Popen([sys.executable, "-m", "nnctl", "train", str(CONFIGS / "spiral.yaml"), "--set", "training.epochs=12", "--out", str(out), "--quiet"])
        deadline = time.monotonic() + 30
        while not list(out.glob("*/run.json")) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        process.kill()
        process.wait()
        run = next(out.iterdir())
        if (run / "summary.json").exists() and summary_of(run)["status"] == "completed":
            continue  # it finished before the kill
        result = nnctl("resume", run, "--quiet")
        assert result.returncode == 0, (delay, result.stderr)
        assert summary_of(run)["test_loss"] == summary_of(reference)["test_loss"], delay
        resumed += 1
    assert resumed >= 1


# ------------------------------------------------------------------------- permissions and JSON


def test_files_respect_the_umask_and_keep_an_existing_files_mode(tmp_path):
    out = tmp_path / "runs"
    result = subprocess.run(
        ["sh", "-c", f'umask 027 && exec "{sys.executable}" -m nnctl train "{CONFIGS / "spiral.yaml"}" --set training.epochs=2 --out "{out}" --quiet'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = Path(result.stdout.strip())
    for name in ("config.yaml", "run.json", "summary.json", "metrics.jsonl", "checkpoints/last.npz"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o640, name
    points, predictions = tmp_path / "points.csv", tmp_path / "predictions.csv"
    points.write_text("x1,x2\n0.5,1.0\n")
    predictions.write_text("old\n")
    predictions.chmod(0o644)
    assert nnctl("predict", run, points, "--out", predictions).returncode == 0
    assert stat.S_IMODE(predictions.stat().st_mode) == 0o644 and "prediction" in predictions.read_text()


def constant_target_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = ["a,b,y"] + [f"{a:.4f},{b:.4f},1.5" for a, b in rng.uniform(-1, 1, (60, 2))]
    path = tmp_path / "flat.csv"
    path.write_text("\n".join(rows) + "\n")
    config = tmp_path / "flat.yaml"
    config.write_text(
        "name: flat\ndata: {dataset: csv, path: flat.csv, target: y, val_fraction: 0.2}\n"
        "model: {layers: [{type: dense, units: 4, activation: tanh}, {type: dense, units: 1}]}\n"
        "loss: mse\ntraining: {epochs: 3, batch_size: 8}\n"
    )
    return config


def test_undefined_r2_is_written_as_null_and_cannot_be_monitored(tmp_path):
    config = constant_target_csv(tmp_path)
    run = Path(train_json(config, out=tmp_path / "runs")["run_dir"])
    summary = summary_of(run)  # strict: a bare NaN would fail to parse
    assert summary["test_r2"] is None and summary["val_r2"] is None
    for line in (run / "metrics.jsonl").read_text().splitlines():
        assert strict_json(line)["val_r2"] is None
    for path in (run / "run.json",):
        strict_json(path.read_text())
    assert_clean_error(
        nnctl("train", config, "--set", "training.early_stopping={monitor: val_r2}", "--out", tmp_path / "more"),
        "training.early_stopping.monitor", "val_r2 is undefined", "monitor val_loss",
    )  # fmt: skip
    assert not (tmp_path / "more").exists() or not any((tmp_path / "more").iterdir())


# ------------------------------------------------------------------- resume edge cases found in review


def test_a_forced_resume_killed_at_once_resumes_without_force_again(short_run, tmp_path, monkeypatch):
    from nnctl import training
    from nnctl.resume import resume_run

    run = copy_run(short_run, tmp_path)

    def killed(self):
        raise SystemExit(137)  # dies before its first new checkpoint

    monkeypatch.setattr(training.Trainer, "fit", killed)
    with pytest.raises(SystemExit):
        resume_run(run, overrides=["training.epochs=12"], force=True)
    monkeypatch.undo()
    assert resume_run(run).status == "completed"  # config.yaml and last.npz agree: no --force needed
    assert summary_of(run)["epochs_run"] == 12


def test_fewer_epochs_than_already_trained_are_refused(short_run, tmp_path):
    run = copy_run(short_run, tmp_path)
    assert_clean_error(nnctl("resume", run, "--set", "training.epochs=5", "--force"), "training.epochs 5 is fewer than the run has already trained (8)")


def test_a_lost_best_checkpoint_is_rebuilt_from_last_on_resume(tmp_path):
    selecting = ["--set", "training.epochs=8", "--set", "data.val_fraction=0.2", "--set", "training.select_best={monitor: val_accuracy}"]
    reference = Path(train_json(CONFIGS / "spiral.yaml", *selecting, "--set", "training.checkpoint_every=4", out=tmp_path / "a")["run_dir"])
    run = copy_run(reference, tmp_path)
    (run / "checkpoints/best.npz").unlink()  # as if killed between writing last.npz and best.npz ... or best.npz lost
    (run / "summary.json").unlink()
    assert nnctl("resume", run, "--quiet").returncode == 0
    assert summary_of(run)["test_accuracy"] == summary_of(reference)["test_accuracy"]
    assert eval_json(run)["test_accuracy"] == summary_of(reference)["test_accuracy"]


def test_a_checkpoint_of_another_format_version_is_refused_for_resume_not_for_eval(short_run, tmp_path):
    from nnctl.runs import load_checkpoint, save_checkpoint

    run = copy_run(short_run, tmp_path)
    arrays, meta = load_checkpoint(run / "checkpoints/last.npz")
    save_checkpoint(run / "checkpoints/last.npz", arrays, {**meta, "version": 1, "train_state": {"tracker": {}}})
    (run / "summary.json").unlink()
    assert_clean_error(nnctl("resume", run, "--set", "training.epochs=9", "--force"), "checkpoint version 1", "evaluated, not resumed")
    assert eval_json(run)["test_accuracy"] == summary_of(short_run)["test_accuracy"]


def test_selection_settings_that_agree_or_do_not_apply(tmp_path):
    same = nnctl(
        "validate", CONFIGS / "spiral.yaml", *SPIRAL, "--set", "training.select_best={monitor: val_loss, mode: min}",
        "--set", "training.early_stopping={monitor: val_loss, restore_best: true}",
    )  # fmt: skip
    assert same.returncode == 0, same.stderr  # auto on a loss is min: the same selection, said twice
    pocket = nnctl("validate", CONFIGS / "perceptron_and.yaml", "--set", "training.early_stopping={monitor: train_loss}")
    assert_clean_error(pocket, "training.early_stopping", "pocket algorithm")

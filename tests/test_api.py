"""The Python API (nnctl.train, load, sweep, Run): the same numbers, files and messages as the CLI, compared
with real ``nnctl`` processes; quiet, never exiting, signal handlers left as found; cheap to import."""

from __future__ import annotations

import base64
import csv
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import nnctl
from conftest import CONFIGS, nnctl as cli, read_jsonl, train_json

SPIRAL = CONFIGS / "spiral.yaml"
#: a run with validation data, best-epoch selection (best.npz) and several checkpoints; NumPy numbers are numbers
SETTINGS = {"training.epochs": np.int64(25), "data.val_fraction": np.float64(0.2), "training.select_best": {"monitor": "val_loss"}, "training.checkpoint_every": 5}
SET_ARGS = ["training.epochs=25", "data.val_fraction=0.2", "training.select_best={monitor: val_loss}", "training.checkpoint_every=5"]


def without_times(row: dict) -> dict:
    return {key: value for key, value in row.items() if "seconds" not in key}


def cli_error(result: subprocess.CompletedProcess) -> str:
    """The message of the CLI's ``error: ...`` lines."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    return "\n".join(line.removeprefix("error: ") for line in result.stderr.strip().splitlines())


def assert_same_run(api_run: Path, cli_run: Path) -> None:
    """Metrics rows and summary (minus timings), config.yaml, and every checkpoint array, bit for bit."""
    assert [without_times(row) for row in read_jsonl(api_run / "metrics.jsonl")] == [without_times(row) for row in read_jsonl(cli_run / "metrics.jsonl")]
    summaries = [without_times(json.loads((run / "summary.json").read_text())) for run in (api_run, cli_run)]
    assert summaries[0] == summaries[1]
    assert (api_run / "config.yaml").read_text() == (cli_run / "config.yaml").read_text()
    checkpoints = sorted(p.name for p in (cli_run / "checkpoints").iterdir())
    assert checkpoints == sorted(p.name for p in (api_run / "checkpoints").iterdir()) and "best.npz" in checkpoints
    for name in checkpoints:
        with np.load(api_run / "checkpoints" / name, allow_pickle=False) as ours, np.load(cli_run / "checkpoints" / name, allow_pickle=False) as theirs:
            assert sorted(ours.files) == sorted(theirs.files)
            for key in theirs.files:
                assert ours[key].dtype == theirs[key].dtype and np.array_equal(ours[key], theirs[key]), (name, key)


# ---------------------------------------------------------------------------------------- the names


def test_all_lists_exactly_the_public_api():
    assert sorted(nnctl.__all__) == ["NnctlError", "Run", "Sweep", "__version__", "load", "sweep", "train"]
    for name in nnctl.__all__:
        assert getattr(nnctl, name) is not None and name in dir(nnctl)
    from nnctl.errors import ConfigError, NnctlError

    assert nnctl.NnctlError is NnctlError and issubclass(ConfigError, nnctl.NnctlError)  # one exception type
    with pytest.raises(AttributeError):
        nnctl.no_such_name  # noqa: B018


def test_importing_nnctl_loads_neither_numpy_nor_the_api():
    code = "import sys, nnctl; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    heavy = [name for name in loaded if name.split(".")[0] in ("numpy", "yaml", "pydantic", "rich", "typer", "matplotlib", "threadpoolctl")]
    assert heavy == [] and [name for name in loaded if name.startswith("nnctl")] == ["nnctl", "nnctl.errors"]
    # nnctl.sweep stays the function when the sweep module is imported (it is nnctl.sweeps)
    code = "import nnctl, nnctl.sweeps, nnctl.cli; print(callable(nnctl.sweep), type(nnctl.sweeps).__name__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["True", "module"]


# ------------------------------------------------------------------------------------------ training


def test_train_gives_the_cli_run_bit_for_bit(tmp_path, monkeypatch, capfd):
    cli_run = Path(train_json(SPIRAL, *[arg for setting in SET_ARGS for arg in ("--set", setting)], out=tmp_path / "cli")["run_dir"])
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    from_dict = nnctl.train(yaml.safe_load(SPIRAL.read_text()), SETTINGS, out="api")
    from_file = nnctl.train(SPIRAL, SET_ARGS, out=tmp_path / "api", name="spiral-b")
    assert capfd.readouterr() == ("", "")  # quiet by default
    assert_same_run(from_dict.path, cli_run)
    assert from_file.path.name.startswith("spiral-b-") and from_file.config == {**from_dict.config, "name": "spiral-b"}
    # the thread count is the CLI's choice (one BLAS thread for a model this small)
    assert json.loads((from_dict.path / "run.json").read_text())["blas_threads"] == json.loads((cli_run / "run.json").read_text())["blas_threads"] == 1
    # what the run offers, read back from the folder
    assert from_dict.status == "completed" and from_dict.message == ""
    assert from_dict.summary == json.loads((from_dict.path / "summary.json").read_text())
    assert from_dict.metrics == read_jsonl(from_dict.path / "metrics.jsonl") and len(from_dict.metrics) == 25
    assert from_dict.column("val_loss") == [row["val_loss"] for row in from_dict.metrics]
    assert from_dict.config["training"]["select_best"]["monitor"] == "val_loss" and from_dict.config["optimizer"]["lr"] == 0.03
    cli_eval = json.loads(cli("eval", cli_run, "--split", "val", "--json").stdout)
    assert from_dict.evaluate("val") == {key: value for key, value in cli_eval.items() if key.startswith("val_")}
    assert from_dict.evaluate() == {key: from_dict.summary[key] for key in ("test_loss", "test_accuracy")}
    assert nnctl.load(tmp_path / "api" / "spiral-b@latest").path == from_file.path
    assert nnctl.load("api/spiral@latest").path.resolve() == from_dict.path.resolve()


def test_train_with_progress_prints_what_nnctl_train_prints(tmp_path, capfd):
    nnctl.train(SPIRAL, {"training.epochs": 3}, out=tmp_path, progress=True)
    out = capfd.readouterr().out
    assert out.startswith("run folder ") and "epoch 3/3  train_loss" in out


def test_a_diverged_run_is_returned_with_the_cli_message(tmp_path):
    settings = ["optimizer.lr=1e6", "training.epochs=5"]
    result = cli("train", CONFIGS / "reg_plane.yaml", *[arg for setting in settings for arg in ("--set", setting)], "--out", tmp_path / "cli", "--quiet")
    assert result.returncode == 3
    run = nnctl.train(CONFIGS / "reg_plane.yaml", settings, out=tmp_path / "api")
    assert run.status == "diverged" and run.summary["status"] == "diverged"
    expected = result.stderr.strip().removeprefix("error: ").replace(str(Path(result.stdout.strip())), str(run.path))
    assert run.message == expected and run.message.startswith("training diverged")


# -------------------------------------------------------------------------------------------- errors


def test_errors_raise_nnctl_error_with_the_cli_message(tmp_path, capfd):
    config = yaml.safe_load(SPIRAL.read_text())
    bad = {**config, "optimizer": {"name": "sgd", "lr": -1}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(nnctl.NnctlError) as error:
        nnctl.train(bad, out=tmp_path)
    message = cli_error(cli("train", tmp_path / "bad.yaml", "--out", tmp_path))
    assert str(error.value).startswith("<dict>: optimizer.lr: ")
    assert str(error.value).removeprefix("<dict>") == re.sub(r"^\S+bad\.yaml:\d+:\d+", "", message)
    # overrides: the --set message, whichever form they take
    expected = cli_error(cli("train", SPIRAL, "--set", "optimizer.lrr=0.1", "--out", tmp_path))
    for overrides in ({"optimizer.lrr": 0.1}, ["optimizer.lrr=0.1"]):
        with pytest.raises(nnctl.NnctlError, match="did you mean 'lr'") as error:
            nnctl.train(SPIRAL, overrides, out=tmp_path)
        assert str(error.value) == expected
    with pytest.raises(nnctl.NnctlError, match=r"^overrides: optimizer.lr: <object object .*> \(object\) is not a config value"):
        nnctl.train(SPIRAL, {"optimizer.lr": object()})
    with pytest.raises(nnctl.NnctlError, match="config: expected the path of a YAML file or a dict, not int"):
        nnctl.train(3)
    with pytest.raises(nnctl.NnctlError, match=r"overrides: 'optimizer.lr=0.1': give a list"):
        nnctl.train(SPIRAL, "optimizer.lr=0.1")
    with pytest.raises(nnctl.NnctlError) as error:
        nnctl.train(tmp_path / "missing.yaml")
    assert str(error.value) == cli_error(cli("train", tmp_path / "missing.yaml"))
    assert not (tmp_path / "spiral").exists() and not list(tmp_path.glob("spiral-*"))  # no run folder was started
    assert capfd.readouterr() == ("", "")


def test_load_refuses_what_the_cli_refuses(tmp_path):
    run = nnctl.train(SPIRAL, {"training.epochs": 2}, out=tmp_path / "runs")
    with pytest.raises(nnctl.NnctlError, match="no such run folder"):
        nnctl.load(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(nnctl.NnctlError) as error:
        nnctl.load(tmp_path / "plain")
    assert str(error.value) == cli_error(cli("resume", tmp_path / "plain"))
    with pytest.raises(nnctl.NnctlError) as error:
        nnctl.load(tmp_path / "runs" / "nothing@latest")
    assert str(error.value) == cli_error(cli("eval", tmp_path / "runs" / "nothing@latest"))
    (run.path / "summary.json").write_text("[1, 2]")
    with pytest.raises(nnctl.NnctlError) as error:
        nnctl.load(run.path)
    assert str(error.value) == cli_error(cli("eval", run.path)) and "summary.json: not a summary" in str(error.value)
    (run.path / "run.json").write_text('"running"')
    with pytest.raises(nnctl.NnctlError) as error:
        nnctl.load(run.path)
    assert str(error.value) == cli_error(cli("resume", run.path))
    assert repr(run) == f"Run({str(run.path)!r})"  # a damaged folder still has a repr


# ---------------------------------------------------------------------------------------- prediction


def predict_cli(run: Path, inputs: Path, *extra) -> list[list[str]]:
    result = cli("predict", run, inputs, *extra)
    assert result.returncode == 0, result.stderr
    return list(csv.reader(result.stdout.splitlines()))[1:]


def test_predict_gives_what_nnctl_predict_gives(tmp_path):
    points = np.random.default_rng(1).uniform(-6, 6, size=(40, 2))
    (tmp_path / "points.csv").write_text("x1,x2\n" + "".join(f"{a},{b}\n" for a, b in points.tolist()))
    spiral = nnctl.train(SPIRAL, {"training.epochs": 20}, out=tmp_path)
    expected = predict_cli(spiral.path, tmp_path / "points.csv", "--proba")
    assert list(spiral.predict(points)) == [row[0] for row in expected]
    assert list(spiral.predict(points.tolist())) == [row[0] for row in expected]  # a list of rows
    probabilities = spiral.predict_proba(points)
    assert spiral.classes == ["0", "1"] and probabilities.shape == (40, 2)
    assert [[f"{p:.6g}" for p in row] for row in probabilities] == [row[1:] for row in expected]

    plane = nnctl.train(CONFIGS / "reg_plane.yaml", {"training.epochs": 5}, out=tmp_path)
    values = plane.predict(points)
    assert values.dtype == np.float64 and list(values) == [float(row[0]) for row in predict_cli(plane.path, tmp_path / "points.csv")]

    images = np.random.default_rng(2).integers(0, 17, size=(6, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "images.npz", x=images)
    digits = nnctl.train(CONFIGS / "digits_mlp.yaml", {"training.epochs": 2}, out=tmp_path)
    expected = [row[0] for row in predict_cli(digits.path, tmp_path / "images.npz")]
    assert list(digits.predict(images)) == list(digits.predict(images.reshape(6, 64))) == expected

    with pytest.raises(nnctl.NnctlError, match=r"^x: rows have 3 values; the model takes 2$"):
        spiral.predict(np.zeros((2, 3)))
    with pytest.raises(nnctl.NnctlError, match="x: not a table of rows"):
        spiral.predict([[1.0, 2.0], [3.0]])
    with pytest.raises(nnctl.NnctlError, match=r"x has dtype <U\d+; features must be numbers"):
        spiral.predict([["a", "b"]])
    with pytest.raises(nnctl.NnctlError, match="x: row 1 contains NaN or infinity"):
        spiral.predict([[1.0, 2.0], [np.nan, 0.0]])
    with pytest.raises(nnctl.NnctlError, match="^x holds images of 2x8 pixels; the model was trained on 8x8$"):
        digits.predict(np.zeros((1, 2, 8)))
    with pytest.raises(nnctl.NnctlError, match="--proba needs a classifier"):
        plane.predict_proba(points)
    with pytest.raises(nnctl.NnctlError, match="split: 'everything' is not allowed; allowed: test, val, train"):
        spiral.evaluate("everything")


# ---------------------------------------------------------------------------------------- notebooks


def test_a_run_shows_its_summary_and_curves_in_a_notebook(tmp_path, monkeypatch):
    run = nnctl.train(SPIRAL, {"training.epochs": 5}, out=tmp_path)
    page = run._repr_html_()
    for key in run.summary:
        assert f">{key}</td>" in page
    assert f">{run.summary['test_accuracy']:.4f}</td>" in page
    (encoded,) = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert base64.b64decode(encoded).startswith(b"\x89PNG")
    assert repr(run) == f"Run({str(run.path)!r}, status='completed', test_accuracy={run.summary['test_accuracy']:.4g}, test_loss={run.summary['test_loss']:.4g})"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed: the table alone
    page = run._repr_html_()
    assert page.startswith("<table>") and "<img" not in page


# ------------------------------------------------------------------------------------------- sweeps

GRID = {
    "name": "grid",
    "seeds": [0, 1],
    "parameters": {"optimizer.lr": [0.3, 0.03], "model.layers.0.activation": ["tanh", "relu"]},
    "overrides": ["training.epochs=8"],
}


def read_summary_csv(folder: Path) -> list[dict]:
    with open(folder / "summary.csv", newline="") as handle:
        return [without_times(row) for row in csv.DictReader(handle)]


def test_sweep_gives_the_cli_sweep(tmp_path, monkeypatch):
    sweep_file = tmp_path / "grid.yaml"
    sweep_file.write_text(yaml.safe_dump({"base": str(SPIRAL), **GRID}))
    assert cli("sweep", sweep_file, "--out", tmp_path / "cli", "--json").returncode == 0
    (cli_folder,) = (tmp_path / "cli" / "sweeps").iterdir()
    expected = read_summary_csv(cli_folder)
    monkeypatch.chdir(tmp_path)
    from_file = nnctl.sweep(sweep_file, out="file")
    from_dict = nnctl.sweep({"base": yaml.safe_load(SPIRAL.read_text()), **GRID}, out="dict")  # the base config as a dict
    grid = nnctl.sweep(SPIRAL, params=GRID["parameters"], seeds=[0, 1], overrides={"training.epochs": 8}, out="grid")
    for result in (from_file, from_dict, grid):
        assert read_summary_csv(result.folder) == expected
        assert [without_times({key: "" if value is None else str(value) for key, value in row.items()}) for row in result.rows] == expected
        assert result.failed == [] and result.interrupted is None
    assert (from_dict.folder / "base.yaml").is_file()  # the trials' base config, as the sweep folder records it
    assert yaml.safe_load((from_dict.folder / "sweep.yaml").read_text())["base"] == str(from_dict.folder / "base.yaml")
    best = from_file.best
    assert best is from_file.rows[0] and best["test_accuracy_mean"] == max(row["test_accuracy_mean"] for row in from_file.rows)
    assert from_file.best_params == {key: best[key] for key in GRID["parameters"]}
    runs = from_file.runs
    assert len(runs) == 8 and all(run.status == "completed" for run in runs)
    ledger = {record["trial"]: record for record in read_jsonl(from_file.folder / "trials.jsonl")}
    assert sorted(run.summary["test_accuracy"] for run in runs) == sorted(record["metrics"]["test_accuracy"] for record in ledger.values())
    assert "<caption>grid: test_accuracy (max), best first" in from_file._repr_html_() and repr(from_file).startswith(f"Sweep({str(from_file.folder)!r}, 4 points, best")
    again = nnctl.sweep(from_file.folder)  # a finished sweep folder: summarized again, nothing trains
    assert again.rows == from_file.rows and again.folder == from_file.folder


def test_a_sweep_over_seeds_alone(tmp_path):
    stable = nnctl.sweep(SPIRAL, seeds=[0, 1], overrides={"training.epochs": 3}, out=tmp_path)
    assert stable.parameters == [] and len(stable.rows) == 1 and stable.rows[0]["count"] == 2
    assert stable.best_params == {} and len(stable.runs) == 2
    with pytest.raises(nnctl.NnctlError, match="seeds and metric go with an experiment config"):
        nnctl.sweep(stable.folder, seeds=[3])


def test_sweep_errors_are_the_cli_errors(tmp_path):
    with pytest.raises(nnctl.NnctlError, match=r"^nnctl.sweep\(\): parameters: unknown parameter path 'optimizer.lrr' \(did you mean 'optimizer.lr'\?\)"):
        nnctl.sweep(SPIRAL, params={"optimizer.lrr": [0.1]}, out=tmp_path)
    with pytest.raises(nnctl.NnctlError, match="^population: 'sometimes' is not allowed; allowed: auto, on, off$"):
        nnctl.sweep(SPIRAL, params={"optimizer.lr": [0.1]}, population="sometimes", out=tmp_path)
    with pytest.raises(nnctl.NnctlError, match="^<dict>: metric: no run of this sweep produces 'test_r2'"):
        nnctl.sweep({"base": str(SPIRAL), "metric": "test_r2", "parameters": {"optimizer.lr": [0.1]}}, out=tmp_path)
    with pytest.raises(nnctl.NnctlError, match="seeds and metric go with an experiment config"):
        nnctl.sweep({"base": str(SPIRAL), "parameters": {"optimizer.lr": [0.1]}}, seeds=[0, 1])
    assert not (tmp_path / "sweeps").exists()


# ------------------------------------------------------------------------------------------ signals

INTERRUPTED = """
import json, pathlib, signal, sys
import nnctl

def mine(signum, frame):
    raise RuntimeError("the script's own handler")

signal.signal(signal.SIGINT, mine)
signal.signal(signal.SIGTERM, mine)
out, settings = sys.argv[1], json.loads(sys.argv[2])
nnctl.train(sys.argv[3], {"training.epochs": 2}, out=out + "/quick")
report = {"kept": signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine}
print("ready", flush=True)
try:
    nnctl.train(sys.argv[3], settings, out=out + "/slow")
except KeyboardInterrupt as exc:
    report["interrupt"] = str(exc)
report["kept_after"] = signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
(run,) = [nnctl.load(path) for path in pathlib.Path(out, "slow").iterdir()]
report["status"] = run.status
report["resumed"] = run.resume().summary["epochs_run"]
print("ready", flush=True)
report["after_sigterm"] = nnctl.train(sys.argv[3], settings, out=out + "/slow2").status  # returned, not raised
print(json.dumps(report), flush=True)
"""


def wait_for_rows(folder: Path, rows: int = 2) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = list(folder.glob("*/metrics.jsonl"))
        if logs and len(read_jsonl(logs[0])) >= rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"no run in {folder} trained {rows} epochs")


SWEEP_INTERRUPTED = """
import json, pathlib, sys
import nnctl

out, base = sys.argv[1], sys.argv[2]
report = {}
print("ready", flush=True)
try:
    nnctl.sweep(base, seeds=[0, 1], overrides={"training.epochs": 150, "data.samples": 2000}, out=out)
except KeyboardInterrupt as exc:
    report["interrupt"] = str(exc)
(folder,) = pathlib.Path(out, "sweeps").iterdir()
done = nnctl.sweep(folder)  # the folder continues the sweep, as nnctl sweep --resume
report["rows"] = [{"count": row["count"], "failed": row["failed"]} for row in done.rows]
report["statuses"] = sorted(run.status for run in done.runs)
report["epochs"] = sorted(run.summary["epochs_run"] for run in done.runs)
print(json.dumps(report), flush=True)
"""


def test_ctrl_c_stops_a_sweep_with_keyboard_interrupt_and_its_folder_continues_it(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent(SWEEP_INTERRUPTED))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, script, out, SPIRAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "ready":
        raise AssertionError(process.communicate(timeout=60)[1])
    deadline = time.monotonic() + 60
    while not any(len(read_jsonl(log)) >= 2 for log in out.glob("sweeps/*/trials/*/metrics.jsonl")):
        assert time.monotonic() < deadline and process.poll() is None, "no trial trained two epochs"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    report = json.loads(stdout.splitlines()[-1])
    assert re.search(r"nnctl sweep --resume .* \(from Python: nnctl.sweep\('.*'\)\)$", report["interrupt"]), report["interrupt"]
    assert report["rows"] == [{"count": 2, "failed": 0}]
    assert report["statuses"] == ["completed", "completed"] and report["epochs"] == [150, 150]


def test_ctrl_c_stops_at_a_checkpoint_raises_keyboard_interrupt_and_resumes_sigterm_returns(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    settings = {"training.epochs": 200, "data.samples": 2000, "training.checkpoint_every": 1}  # seconds: the signal comes first
    process = subprocess.Popen([sys.executable, script, tmp_path, json.dumps(settings), SPIRAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for folder, signum in (("slow", signal.SIGINT), ("slow2", signal.SIGTERM)):
        if process.stdout.readline().strip() != "ready":
            raise AssertionError(process.communicate(timeout=60)[1])
        wait_for_rows(tmp_path / folder)
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["kept"] and report["kept_after"]
    assert re.match(r"SIGINT: stopped in epoch \d+.* and saved a checkpoint; continue with: nnctl resume .*\(from Python: nnctl.load\(.*\)\.resume\(\)\)$", report["interrupt"])
    assert report["status"] == "interrupted" and report["resumed"] == 200 and report["after_sigterm"] == "interrupted"

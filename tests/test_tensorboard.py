"""TensorBoard logging (``training.loggers: [tensorboard]``) and a sweep's HParams data, read back with
TensorBoard's own reader (``EventAccumulator``) and the hparams plugin's parsers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from conftest import CONFIGS, nnctl, nnctl_in_process, read_jsonl, train_json
from test_cli_errors import assert_clean_error

SPIRAL = CONFIGS / "spiral.yaml"
LOGGED = ["--set", "training.loggers=[tensorboard]"]


def events(folder: Path) -> EventAccumulator:
    """Every event of the event files in ``folder`` (no sampling), as TensorBoard loads them."""
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def histograms(accumulator: EventAccumulator) -> dict[str, list[tuple[int, tuple]]]:
    """(step, (min, max, num, sum, sum_squares, bucket_limit, bucket)) of every histogram, by tag."""

    def fields(h) -> tuple:
        return h.min, h.max, h.num, h.sum, h.sum_squares, tuple(h.bucket_limit), tuple(h.bucket)

    return {tag: [(e.step, fields(e.histogram_value)) for e in accumulator.Histograms(tag)] for tag in accumulator.Tags()["histograms"]}


def as_logged(value) -> float:
    """A metrics.jsonl number as TensorBoard holds a scalar: float32 (NaN for JSON's null)."""
    return float(np.float32(math.nan if value is None else value))


def test_every_metric_is_a_scalar_each_epoch_and_histograms_come_every_checkpoint_every_epochs(tmp_path):
    settings = ["--set", "training.epochs=12", "--set", "training.checkpoint_every=4", "--set", "data.val_fraction=0.2"]
    run = Path(train_json(SPIRAL, *LOGGED, *settings, out=tmp_path)["run_dir"])
    rows = read_jsonl(run / "metrics.jsonl")
    logged = events(run / "tensorboard")
    values = scalars(logged)
    metrics = [key for key in rows[0] if key != "epoch"]
    assert set(metrics) == {"lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "train_seconds"}
    for metric in metrics:
        assert values[metric] == [(row["epoch"], as_logged(row[metric])) for row in rows], metric

    with np.load(run / "checkpoints/last.npz") as last:
        model = {name.removeprefix("model/"): last[name] for name in last.files if name.startswith("model/")}
    weights = [name for name in model if name.endswith(("weight", "bias"))]
    assert len(weights) == 6
    assert set(values) == set(metrics) | {f"grad_norm/{name}" for name in weights} | {"grad_norm/total"}
    histos = histograms(logged)
    assert set(histos) == {f"model/{name}" for name in model} | {f"gradients/{name}" for name in weights}
    for tag, series in {**histos, **{t: v for t, v in values.items() if t.startswith("grad_norm/")}}.items():
        assert [step for step, _ in series] == [4, 8, 12], tag
    for name, array in model.items():  # the last histogram is of the weights the final checkpoint holds
        low, high, count, total, squares, limits, buckets = histos[f"model/{name}"][-1][1]
        array = array.astype(np.float64)
        assert (low, high, count) == (array.min(), array.max(), array.size)
        assert math.isclose(total, array.sum(), rel_tol=1e-9, abs_tol=1e-12) and math.isclose(squares, (array**2).sum(), rel_tol=1e-9)
        assert sum(buckets) == array.size and limits[0] <= low and limits[-1] >= high
    for step_index in range(3):  # each norm is the square root of its gradient histogram's sum of squares
        norms = [values[f"grad_norm/{name}"][step_index][1] for name in weights]
        for name, norm in zip(weights, norms):
            assert math.isclose(norm, math.sqrt(histos[f"gradients/{name}"][step_index][1][4]), rel_tol=1e-5)
        assert math.isclose(values["grad_norm/total"][step_index][1], math.hypot(*norms), rel_tol=1e-5)


def test_a_perceptron_logs_its_rows_and_weights(tmp_path):
    run = Path(train_json(CONFIGS / "perceptron_and.yaml", *LOGGED, "--set", "training.checkpoint_every=2", out=tmp_path)["run_dir"])
    rows = read_jsonl(run / "metrics.jsonl")
    logged = events(run / "tensorboard")
    values = scalars(logged)
    assert set(values) == {key for key in rows[0] if key != "epoch"} >= {"mistakes", "train_accuracy"}
    assert values["mistakes"] == [(row["epoch"], row["mistakes"]) for row in rows]
    assert {tag: [step for step, _ in series] for tag, series in histograms(logged).items()} == {
        "model/layers.0.weight": list(range(2, len(rows) + 1, 2)),
        "model/layers.0.threshold": list(range(2, len(rows) + 1, 2)),
    }


def test_fixed_weight_models_have_no_epochs_to_log():
    assert_clean_error(
        nnctl_in_process("validate", CONFIGS / "mcculloch_pitts_and.yaml", *LOGGED),
        "training.loggers: a mcculloch_pitts model has fixed weights and no epochs to log",
    )


def test_a_run_killed_mid_training_and_resumed_logs_each_epoch_once_with_the_resumed_values(tmp_path):
    settings = [*LOGGED, "--set", "data.samples=2000", "--set", "training.epochs=200", "--set", "training.checkpoint_every=50"]
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "train", str(SPIRAL), *settings, "--out", str(out), "--quiet"])
    try:
        # wait until the event file holds epochs beyond a checkpoint's (flushed every second), then SIGKILL
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            folders = list(out.glob("*/tensorboard"))
            logged = [step for step, _ in scalars(events(folders[0])).get("train_loss", [])] if folders else []
            if logged and logged[-1] > 50 and logged[-1] % 50 >= 3:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("training did not log beyond its first checkpoint in time")
    finally:
        process.kill()
        process.wait()
    run = folders[0].parent
    with np.load(run / "checkpoints/last.npz") as last:
        checkpoint = json.loads(str(last["meta.json"]))["epoch"]
    killed_steps = [step for step, _ in scalars(events(run / "tensorboard"))["train_loss"]]
    assert killed_steps[-1] > checkpoint > 0  # the files hold epochs the resumed run trains again
    resumed_at = time.time()
    result = nnctl("resume", run, "--quiet")
    assert result.returncode == 0, result.stderr

    reference = Path(train_json(SPIRAL, *settings, out=tmp_path / "reference")["run_dir"])
    rows = read_jsonl(run / "metrics.jsonl")
    logged, uninterrupted = events(run / "tensorboard"), events(reference / "tensorboard")
    values = scalars(logged)
    assert set(values) == set(scalars(uninterrupted))
    for metric in rows[0]:
        if metric != "epoch":  # every epoch once, with the resumed run's numbers (train_seconds tells them apart)
            assert values[metric] == [(row["epoch"], as_logged(row[metric])) for row in rows], metric
    assert {k: v for k, v in values.items() if k != "train_seconds"} == {k: v for k, v in scalars(uninterrupted).items() if k != "train_seconds"}
    assert [e.step for e in logged.Scalars("lr") if e.wall_time >= resumed_at] == list(range(checkpoint + 1, 201))
    assert histograms(logged) == histograms(uninterrupted)
    assert [step for step, _ in histograms(logged)["model/layers.0.weight"]] == [50, 100, 150, 200]
    assert len(list((run / "tensorboard").iterdir())) == 2  # one event file per process


def test_a_population_member_logs_exactly_what_its_single_run_logs(tmp_path):
    from nnctl.config import load_config
    from nnctl.population import run_population
    from nnctl.training import run_training

    shared = ["training.loggers=[tensorboard]", "training.epochs=8", "training.checkpoint_every=4", "data.val_fraction=0.2", "training.threads=1"]
    members = [["optimizer.lr=0.1"], ["optimizer.lr=0.03", "seed=1"], ["optimizer.lr=0.05", "seed=2"]]
    results = run_population([load_config(SPIRAL, [*shared, *member]) for member in members], run_dirs=[tmp_path / f"member-{i}" for i in range(3)])
    assert [result.status for result in results] == ["completed"] * 3
    single = run_training(load_config(SPIRAL, [*shared, *members[1]]), tmp_path, run_dir=tmp_path / "single")
    member, alone = events(tmp_path / "member-1" / "tensorboard"), events(single.run_dir / "tensorboard")
    without_seconds = lambda values: {tag: series for tag, series in values.items() if tag != "train_seconds"}  # noqa: E731
    assert without_seconds(scalars(member)) == without_seconds(scalars(alone))
    assert histograms(member) == histograms(alone)
    assert [step for step, _ in scalars(member)["train_seconds"]] == list(range(1, 9))
    assert scalars(member)["train_loss"] != scalars(events(tmp_path / "member-0" / "tensorboard"))["train_loss"]


HPARAMS_SWEEP = """name: hparams
seeds: [0, 1]
parameters:
  optimizer.lr: [0.03, 1.0e+6]
  model.layers.0.activation: [tanh, relu]
overrides: [training.epochs=6, model.layers.1.activation=relu, "training.loggers=[tensorboard]"]
"""


def test_a_sweep_writes_its_trials_hyperparameters_and_summary_numbers_for_the_hparams_tab(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {SPIRAL}\n{HPARAMS_SWEEP}")
    result = nnctl("sweep", path, "--out", tmp_path / "out", "--workers", "2", "--json")
    assert result.returncode == 1, result.stderr  # the lr 1e6 trials diverge
    (folder,) = (tmp_path / "out" / "sweeps").iterdir()

    content = events(folder).PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    domains = {info.name: [getattr(v, v.WhichOneof("kind")) for v in info.domain_discrete.values] for info in experiment.hparam_infos}
    assert domains == {"optimizer.lr": [0.03, 1.0e6], "model.layers.0.activation": ["tanh", "relu"], "seed": [0.0, 1.0]}
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert metrics[0] == "summary/test_accuracy" and set(metrics) == {
        f"summary/{name}" for name in ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "epochs_run", "train_seconds_total")
    }

    ledger = {record["trial"]: record for record in read_jsonl(folder / "trials.jsonl")}
    assert sorted(record["event"] for record in ledger.values()) == ["completed"] * 4 + ["diverged"] * 4
    for trial, record in ledger.items():
        logged = events(folder / "trials" / trial / "tensorboard")
        content = logged.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
        end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
        values = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
        assert values == {**record["params"], "seed": record["seed"]}
        assert end.status == (api_pb2.STATUS_SUCCESS if record["event"] == "completed" else api_pb2.STATUS_FAILURE)
        summary = json.loads((folder / "trials" / trial / "summary.json").read_text())
        numbers = scalars(logged)
        for tag in metrics:
            name = tag.removeprefix("summary/")
            if summary.get(name) is not None:
                assert numbers[tag] == [(summary["epochs_run"], as_logged(summary[name]))], (trial, tag)
        if record["event"] == "completed":  # the per-epoch curves sit in the same run, beside the session
            assert [step for step, _ in numbers["train_loss"]] == list(range(1, 7))


def test_a_sweep_with_distributions_gives_their_intervals_as_domains(tmp_path):
    from nnctl.loggers import SweepHParams

    SweepHParams({"optimizer.lr": (1e-4, 1.0), "model.layers.1": [{"type": "dropout", "rate": 0.2}, None], "seed": [0]}, ["test_loss"]).write_experiment(tmp_path)
    content = events(tmp_path).PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.EXPERIMENT_TAG]
    lr, layer, seed = hparams_metadata.parse_experiment_plugin_data(content).hparam_infos
    assert (lr.type, lr.domain_interval.min_value, lr.domain_interval.max_value) == (api_pb2.DATA_TYPE_FLOAT64, 1e-4, 1.0)
    assert layer.type == api_pb2.DATA_TYPE_STRING
    assert [v.string_value for v in layer.domain_discrete.values] == ['{"rate": 0.2, "type": "dropout"}', "null"]
    assert seed.type == api_pb2.DATA_TYPE_FLOAT64


# ----------------------------------------------------------------------------- without the extra


BLOCK_TENSORBOARDX = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorboardX" or name.startswith("tensorboardX."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["nnctl", *sys.argv[1:]]
from nnctl.cli import main
main()
"""


def without_tensorboardx(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", textwrap.dedent(BLOCK_TENSORBOARDX), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_missing_extra_is_one_clear_line_before_anything_is_written(tmp_path):
    message = 'error: --set training.loggers=[tensorboard]: training.loggers: tensorboard needs tensorboardX: pip install "nnctl[tensorboard]"\n'
    for command in (["train", SPIRAL], ["sweep", SPIRAL, "-p", "optimizer.lr=0.1,0.03"]):
        result = without_tensorboardx(*command, *LOGGED, "--out", tmp_path / command[0])
        assert (result.returncode, result.stdout, result.stderr) == (2, "", message), command
        assert not (tmp_path / command[0]).exists()
    # a run that logged can still be evaluated (and its checkpoint's config read) without the extra
    run = Path(train_json(SPIRAL, *LOGGED, "--set", "training.epochs=3", out=tmp_path / "logged")["run_dir"])
    result = without_tensorboardx("eval", run, "--json")
    assert result.returncode == 0, result.stderr
    resumed = without_tensorboardx("resume", run, "--set", "training.epochs=4", "--force")
    assert resumed.returncode == 2 and len(resumed.stderr.splitlines()) == 1, resumed.stderr
    assert resumed.stderr.startswith(f"error: {run}/config.yaml:") and resumed.stderr.endswith(message.removeprefix("error: --set training.loggers=[tensorboard]"))
    assert [row["epoch"] for row in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    # what is logged never changes the numbers: such a run resumes without its logger
    resumed = without_tensorboardx("resume", run, "--set", "training.epochs=4", "--set", "training.loggers=[]", "--force", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert [step for step, _ in scalars(events(run / "tensorboard"))["train_loss"]] == [1, 2, 3]


def test_a_resume_may_switch_the_logger_on_with_force(tmp_path):
    run = Path(train_json(SPIRAL, "--set", "training.epochs=5", out=tmp_path)["run_dir"])
    assert_clean_error(nnctl("resume", run, *LOGGED), "resume with --force to change training.checkpoint_every, training.epochs, training.loggers")
    result = nnctl("resume", run, *LOGGED, "--set", "training.epochs=8", "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(run / "metrics.jsonl")
    assert scalars(events(run / "tensorboard"))["train_loss"] == [(row["epoch"], as_logged(row["train_loss"])) for row in rows[5:]]


def test_a_run_without_loggers_never_imports_tensorboardx_and_one_with_them_never_imports_torch(tmp_path):
    script = f"""
import sys
from pathlib import Path
from nnctl.config import load_config
from nnctl.training import run_training
run_training(load_config({str(SPIRAL)!r}, ["training.epochs=3"]), Path({str(tmp_path)!r}))
print("tensorboardX" in sys.modules, "tensorboard" in sys.modules)
run_training(load_config({str(SPIRAL)!r}, ["training.epochs=3", "training.loggers=[tensorboard]"]), Path({str(tmp_path)!r}))
print("tensorboardX" in sys.modules, "torch" in sys.modules)  # tensorboardX's writer would import torch (1.6 s)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout == "False False\nTrue False\n", result.stderr
    assert len(list(tmp_path.glob("*/tensorboard"))) == 1

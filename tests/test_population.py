"""A population's members write exactly what ``nnctl train`` writes for each of them alone: the same metrics
rows (but the seconds), checkpoint arrays, summary, whatever their seeds and hyperparameters, and however
each run ends (all epochs, early stopping, divergence)."""

from __future__ import annotations

import json

import pytest

from nnctl.config import validate_config
from nnctl.population import population_key, run_population
from nnctl.runs import load_checkpoint
from nnctl.training import run_training
from nnctl.yamlio import Locations

TIMING = ("train_seconds", "train_seconds_total")


def loaded(base: dict, **changes) -> object:
    config = json.loads(json.dumps(base))
    for dotted, value in changes.items():
        target = config
        *path, last = dotted.split("__")
        for key in path:
            target = target.setdefault(key, {})
        target[last] = value
    return validate_config(config, Locations("test"))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def run_files(run) -> dict:
    metrics = run / "metrics.jsonl"  # a run that diverged in its first epoch has no rows
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    summary = {k: v for k, v in json.loads((run / "summary.json").read_text()).items() if k not in TIMING}
    checkpoints = {path.name: load_checkpoint(path)[0] for path in sorted((run / "checkpoints").glob("*.npz"))}
    return {"config": (run / "config.yaml").read_text(), "rows": without_timing(rows), "summary": summary, "checkpoints": checkpoints}


def assert_same_runs(alone: dict, together: dict) -> None:
    assert together["config"] == alone["config"]
    assert together["rows"] == alone["rows"]
    assert together["summary"] == alone["summary"]
    assert together["checkpoints"].keys() == alone["checkpoints"].keys()
    for name, arrays in alone["checkpoints"].items():
        assert arrays.keys() == together["checkpoints"][name].keys(), name
        for key, value in arrays.items():
            other = together["checkpoints"][name][key]
            assert value.dtype == other.dtype and value.tobytes() == other.tobytes(), (name, key)


SPIRAL = {
    "name": "pop", "seed": 0, "data": {"dataset": "spiral", "noise": 0.1, "samples": 200, "val_fraction": 0.2},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 2}]},
    "optimizer": {"name": "sgd", "lr": 0.03}, "training": {"epochs": 12, "batch_size": 10, "checkpoint_every": 5},
}  # fmt: skip
BATCHNORM_DROPOUT = {
    **SPIRAL,
    "model": {"layers": [
        {"type": "dense", "units": 8}, {"type": "batchnorm"}, {"type": "activation", "name": "relu"}, {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 6, "activation": "tanh"}, {"type": "dense", "units": 2},
    ], "regularization": {"l2": 0.001}},
}  # fmt: skip
LINEAR_MSE = {
    **SPIRAL, "loss": "mse",
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "identity"}, {"type": "dense", "units": 2}]},
}  # fmt: skip

CASES = {
    "seeds": (SPIRAL, [{"seed": s} for s in range(4)]),
    "momentum-lr-l1": (SPIRAL, [{"seed": s, "optimizer__momentum": 0.5 + 0.1 * s, "optimizer__lr": 0.01 * (s + 1), "model__regularization": {"l1": 1e-4 * (s + 1)}} for s in range(3)]),
    "adam-schedule": (SPIRAL, [{"seed": s, "optimizer": {"name": "adam", "lr": 0.002 * (s + 1)}, "training__lr_schedule": {"type": "step", "step_size": 4, "gamma": 0.5 + 0.1 * s}} for s in range(3)]),
    "batchnorm-dropout-augment": (BATCHNORM_DROPOUT, [{"seed": s, "model__layers": [*BATCHNORM_DROPOUT["model"]["layers"][:3], {"type": "dropout", "rate": 0.1 * (s + 1)}, *BATCHNORM_DROPOUT["model"]["layers"][4:]], "data__augment": {"noise_std": 0.05 * s + 0.01}} for s in range(3)]),
    "early-stopping-and-selection": (SPIRAL, [{"seed": s, "training__epochs": 30, "training__early_stopping": {"monitor": "val_loss", "patience": 2 + s, "restore_best": True}, "optimizer__lr": 0.3} for s in range(3)]),
    "activations": (SPIRAL, [{"seed": s, "model__layers": [{"type": "dense", "units": 8, "activation": a}, SPIRAL["model"]["layers"][1], SPIRAL["model"]["layers"][2]]} for s, a in enumerate(["relu", "tanh", {"name": "leaky_relu", "slope": 0.2}, "relu", "sigmoid"])]),
    "one-diverges": (LINEAR_MSE, [{"seed": 1, "optimizer__lr": 0.01}, {"seed": 2, "optimizer__lr": 50.0}, {"seed": 3, "optimizer__lr": 0.02}]),
    "one-classifier-diverges": ({**LINEAR_MSE, "loss": "cross_entropy"}, [{"seed": 1, "optimizer__lr": 0.01}, {"seed": 2, "optimizer__lr": 1e30}, {"seed": 3}]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_member_writes_what_nnctl_train_writes_alone(case, tmp_path):
    base, variations = CASES[case]
    configs = [loaded(base, **variation) for variation in variations]
    assert len({population_key(c.config) for c in configs}) == 1 and population_key(configs[0].config) is not None
    alone = [run_training(c, tmp_path / f"alone-{i}", command=["test"]).run_dir for i, c in enumerate(configs)]
    together = [result.run_dir for result in run_population(configs, tmp_path / "together", command=["test"])]
    statuses = []
    for one, other in zip(alone, together):
        assert_same_runs(run_files(one), run_files(other))
        statuses.append(json.loads((other / "summary.json").read_text())["status"])
    if case.startswith("one-"):
        assert statuses == ["completed", "diverged", "completed"]
    if case == "early-stopping-and-selection":
        assert len({len(run_files(run)["rows"]) for run in together}) > 1  # the members stopped at different epochs


@pytest.mark.parametrize("batch_by_batch", [False, True])
def test_members_with_the_same_data_share_one_copy_gathered_by_epoch_or_by_batch(batch_by_batch, tmp_path, monkeypatch):
    """Four members on two datasets hold two copies of the data, not four; gathered for a whole epoch (small
    data) or batch by batch (data too large to copy per member), each member's run is what it is alone."""
    from nnctl import population as pop

    configs = [loaded(SPIRAL, seed=s, data__seed=5 + s // 2, optimizer__momentum=0.8) for s in range(4)]
    alone = [run_training(c, tmp_path / f"alone-{i}", command=["test"]).run_dir for i, c in enumerate(configs)]
    seen = []

    class Recording(pop.Population):
        def bind(self, active):
            super().bind(active)
            seen.append(len(self.training_rows))

    monkeypatch.setattr(pop, "Population", Recording)
    if batch_by_batch:
        monkeypatch.setattr(pop, "EPOCH_GATHER_BYTES", 0)
    together = [result.run_dir for result in run_population(configs, tmp_path / "together", command=["test"])]
    assert seen == [2]
    for one, other in zip(alone, together):
        assert_same_runs(run_files(one), run_files(other))


def test_runs_that_differ_in_shape_or_in_a_switch_are_not_one_population():
    base = loaded(SPIRAL).config
    for changes in ({"training__batch_size": 20}, {"optimizer__momentum": 0.9}, {"model__regularization": {"l2": 0.1}}, {"training__grad_clip": 1.0}):
        assert population_key(loaded(SPIRAL, **changes).config) != population_key(base), changes
    assert population_key(loaded(SPIRAL, training__on_nonfinite="rollback").config) is None
    assert population_key(loaded(SPIRAL, seed=9, optimizer__lr=0.5).config) == population_key(base)
    relu = [{**SPIRAL["model"]["layers"][0], "activation": "relu"}, *SPIRAL["model"]["layers"][1:]]
    assert population_key(loaded(SPIRAL, model__layers=relu).config) == population_key(base)  # activations may differ


def test_a_signal_stops_every_member_inside_its_epoch_and_each_resumes_alone_to_the_same_run(tmp_path):
    """SIGTERM in the middle of an epoch: every member still training checkpoints where it is, exactly as a
    single run does; ``nnctl resume`` of each then ends with what an uninterrupted ``nnctl train`` writes."""
    import signal

    from nnctl import population as pop
    from nnctl.resume import resume_run
    from nnctl.runs import RunFolder

    variations = [{"seed": s, "optimizer__momentum": 0.9, "optimizer__lr": 0.01 * (s + 1), "model__layers": BATCHNORM_DROPOUT["model"]["layers"]} for s in range(3)]
    configs = [loaded(SPIRAL, **variation) for variation in variations]
    alone = [run_training(c, tmp_path / f"alone-{i}", command=["test"]).run_dir for i, c in enumerate(configs)]

    class StoppedMidway(pop.Population):
        def bind(self, active):
            super().bind(active)
            step, steps = self.optimizer.step, [0]

            def counting_step():
                step()
                steps[0] += 1
                if steps[0] == 7 * 6 + 3:  # epoch 8 (60 training rows: 6 batches an epoch), batch 3
                    self.stop_signal = signal.SIGTERM

            self.optimizer.step = counting_step

    original = pop.Population
    pop.Population = StoppedMidway
    try:
        results = run_population(configs, tmp_path / "together", command=["test"])
    finally:
        pop.Population = original
    assert [r.status for r in results] == ["interrupted"] * 3
    assert all("epoch 8, row 30 of 60" in r.message for r in results), results[0].message
    for one, result in zip(alone, results):
        resumed = resume_run(RunFolder(result.run_dir).path, None, [], False, command=["test"])
        assert resumed.status == "completed"
        assert_same_runs(run_files(one), run_files(result.run_dir))


def test_a_member_asked_to_stop_ends_there_and_the_others_go_on_as_alone(tmp_path):
    """A sweep's pruner writes stop-requested into one member's run folder: that member checkpoints and ends
    (interrupted) at the end of the epoch; the others' runs are still bit for bit what they are alone, and the
    stopped one, resumed alone, ends as if never stopped."""
    from nnctl import population as pop
    from nnctl.resume import resume_run
    from nnctl.runs import STOP_REQUEST

    configs = [loaded(SPIRAL, seed=s, optimizer__momentum=0.9, optimizer__lr=0.01 * (s + 1)) for s in range(3)]
    alone = [run_training(c, tmp_path / f"alone-{i}", command=["test"]).run_dir for i, c in enumerate(configs)]
    run_dirs = [tmp_path / "together" / f"member-{i}" for i in range(3)]

    class PrunedAtEpoch4(pop.Population):
        def train_epoch(self):
            rows = super().train_epoch()
            if rows[0]["epoch"] == 4:
                (run_dirs[1] / STOP_REQUEST).touch()
            return rows

    original = pop.Population
    pop.Population = PrunedAtEpoch4
    try:
        results = run_population(configs, command=["test"], run_dirs=run_dirs)
    finally:
        pop.Population = original
    assert [r.status for r in results] == ["completed", "interrupted", "completed"]
    assert len(run_files(run_dirs[1])["rows"]) == 4 and results[1].message.startswith("stop-requested: stopped in epoch 4")
    for one, other in zip(alone, run_dirs):
        if other != run_dirs[1]:
            assert_same_runs(run_files(one), run_files(other))
    assert not (run_dirs[1] / STOP_REQUEST).exists()  # the request was taken: resuming trains on
    assert resume_run(run_dirs[1], None, [], False, command=["test"]).status == "completed"
    assert_same_runs(run_files(alone[1]), run_files(run_dirs[1]))



def test_a_single_run_asked_to_stop_ends_there_and_resumes_as_if_never_stopped(tmp_path, monkeypatch):
    """``touch RUN/stop-requested`` stops a single run at the end of its epoch as a SIGTERM would (status
    interrupted, exit code 143, the file taken); ``nnctl resume`` then ends as an uninterrupted run."""
    from nnctl.resume import resume_run
    from nnctl.runs import STOP_REQUEST, RunFolder
    from nnctl.training import Trainer

    config = loaded(SPIRAL, seed=3, optimizer__momentum=0.9)
    alone = run_training(config, tmp_path / "alone", command=["test"]).run_dir
    original = Trainer.accept_epoch

    def accept_and_ask_after_epoch_4(self, row):
        if row["epoch"] == 4:
            (self.run.path / STOP_REQUEST).touch()
        return original(self, row)

    monkeypatch.setattr(Trainer, "accept_epoch", accept_and_ask_after_epoch_4)
    stopped = run_training(config, tmp_path / "stopped", command=["test"])
    monkeypatch.setattr(Trainer, "accept_epoch", original)
    assert (stopped.status, stopped.exit_code) == ("interrupted", 143)
    assert stopped.message.startswith("stop-requested: stopped in epoch 4")
    assert len(run_files(stopped.run_dir)["rows"]) == 4 and not (stopped.run_dir / STOP_REQUEST).exists()
    resumed = resume_run(RunFolder(stopped.run_dir).path, None, [], False, command=["test"])
    assert resumed.status == "completed"
    assert_same_runs(run_files(alone), run_files(stopped.run_dir))
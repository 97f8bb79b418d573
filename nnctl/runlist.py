"""``nnctl runs list`` and ``nnctl runs compare``: run folders as data, for people and for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from nnctl.config import flatten
from nnctl.errors import NnctlError
from nnctl.runref import natural_key
from nnctl.runs import RunFolder, is_run_dir

#: config keys worth a column in a listing
KEY_COLUMNS = ("data.dataset", "optimizer.name", "optimizer.lr", "training.epochs", "seed")


def read_run(path: Path) -> dict:
    run = RunFolder(path)
    info = run.read_run_info()
    config = yaml.safe_load(run.config_path.read_text())
    if not isinstance(config, dict):
        raise NnctlError(f"{run.config_path}: not a config (a mapping of keys is expected)")
    config = flatten(config)
    summary = run.read_summary() or {}
    metrics = {k: v for k, v in summary.items() if k.startswith(("test_", "val_", "train_")) and isinstance(v, (int, float))}
    name = config.get("name")
    return {
        "run_dir": str(path), "name": None if name is None else str(name), "status": info.get("status"),
        "started": info.get("started"), "config": config, "metrics": metrics,
    }  # fmt: skip


def list_runs(folder: Path) -> list[dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise NnctlError(f"{folder}: no such folder")
    candidates = [folder] if is_run_dir(folder) else sorted((p for p in folder.iterdir() if is_run_dir(p)), key=lambda p: natural_key(p.name))
    entries = []
    for path in candidates:
        try:
            run = read_run(path)
        except (OSError, ValueError, yaml.YAMLError, NnctlError) as exc:  # a run being written, or damaged
            reason = "damaged" if isinstance(exc, NnctlError) else type(exc).__name__
            entries.append({"run_dir": str(path), "name": None, "status": f"unreadable ({reason})", "config": {}, "metrics": {}})
            continue
        run["config"] = {key: run["config"].get(key) for key in KEY_COLUMNS if key in run["config"]}
        entries.append(run)
    return entries


def compare_runs(paths: list[Path]) -> dict:
    if len(paths) < 2:
        raise NnctlError("runs compare needs two or more run folders")
    for path in paths:
        if not is_run_dir(path):
            raise NnctlError(f"{path}: not a run folder (no run.json and config.yaml)")
    runs = [read_run(Path(p)) for p in paths]
    keys = sorted(set().union(*(run["config"] for run in runs)), key=natural_key)  # layers.2 before layers.10
    differing = {key: [run["config"].get(key) for run in runs] for key in keys if len({json.dumps(run["config"].get(key)) for run in runs}) > 1}
    metric_names = sorted(set().union(*(run["metrics"] for run in runs)), key=natural_key)
    return {
        "runs": [run["run_dir"] for run in runs],
        "status": [run["status"] for run in runs],
        "differing_config": differing,
        "metrics": {name: [run["metrics"].get(name) for run in runs] for name in metric_names},
    }

"""Continuing a run folder: ``nnctl resume RUN`` and ``nnctl train CONFIG --resume RUN``.

What a run was trained with is the config inside its last checkpoint, not ``config.yaml``, which anyone can
edit: the config to resume with (``config.yaml`` plus ``--set``, or ``CONFIG``) is compared with the
checkpoint's, and any difference is refused, except the resume-safe keys with ``--force``.

A run folder is continued in whatever state a kill left it:
- no checkpoint at all (killed while starting): it trains from the start, in the same folder;
- a checkpoint inside or after an epoch: training goes on from there, bit-identical to an uninterrupted run;
- every epoch done (or early stopping decided) but no final summary: the summary is written;
- temporary files of a write cut short are removed.
One process writes a run folder at a time (``runs.RunLock``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from nnctl.config import LoadedConfig, config_differences, config_from_text, is_resume_safe, load_config, resume_safe_keys
from nnctl.errors import NnctlError
from nnctl.runs import RunFolder, RunLock, is_run_dir, load_checkpoint, remove_temporary_files


def checkpoint_config(checkpoint: Path, meta: dict) -> LoadedConfig:
    """The config a checkpoint was trained with (embedded in its metadata)."""
    config = meta.get("config")
    if not isinstance(config, dict):
        raise NnctlError(f"{checkpoint}: the checkpoint's metadata has no config (written by another version?)")
    return config_from_text(yaml.safe_dump(config), f"{checkpoint} (embedded config)")


def describe_differences(differences) -> str:
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences)


def unsafe_differences(trained: LoadedConfig, other: LoadedConfig) -> list[tuple]:
    """The differences between two configs beyond the resume-safe keys (epochs, checkpoint frequency, name, loggers)."""
    safe = resume_safe_keys(trained.config)
    return [d for d in config_differences(trained.config, other.config) if not is_resume_safe(d[0], safe)]


def check_resume_config(run_dir: Path, trained: LoadedConfig, wanted: LoadedConfig, force: bool, source: str, meta: dict) -> None:
    """Refuse to resume with a config that differs from the one the run was trained with, except the
    resume-safe keys (more epochs, checkpoint frequency, name, loggers) when ``force`` is given."""
    started = int(meta.get("epoch", 0)) + bool((meta.get("train_state") or {}).get("progress"))
    if wanted.config.training.epochs < started:
        raise NnctlError(
            f"{run_dir}: training.epochs {wanted.config.training.epochs} is fewer than the run has already trained "
            f"({started}); resume with at least {started}"
        )
    differences = config_differences(trained.config, wanted.config)
    if not differences:
        return
    safe = resume_safe_keys(trained.config)
    listed = describe_differences(differences)
    unsafe = [key for key, _, _ in differences if not is_resume_safe(key, safe)]
    if unsafe:
        extra = " even with --force" if force else ""
        raise NnctlError(
            f"{run_dir}: {source} differs from the config the run was trained with ({listed}); refused{extra}: "
            f"changing {', '.join(unsafe)} would make the run differ from an uninterrupted one"
        )
    if not force:
        raise NnctlError(
            f"{run_dir}: {source} differs from the config the run was trained with ({listed}); "
            f"resume with --force to change {', '.join(sorted(safe - {'name'}))}"
        )


def resume_run(run_dir: Path, config_path: Path | None = None, overrides=(), force: bool = False, reporter=None, command=None):
    """Continue ``run_dir`` (see the module docstring); ``config_path`` defaults to the run's config.yaml."""
    from nnctl.training import resume_training

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise NnctlError(f"{run_dir}: not a run folder (no run.json and config.yaml)")
    run = RunFolder(run_dir)
    with RunLock(run_dir):
        run.read_run_info()  # a run.json that is not a JSON object is an error here, not half-way through
        remove_temporary_files(run_dir)
        source = str(config_path) if config_path is not None else "its config.yaml"
        if overrides:
            source += f" with --set {' '.join(overrides)}"
        wanted = load_config(config_path or run.config_path, list(overrides))
        checkpoint = None
        if run.checkpoint("last").exists():
            arrays, meta = load_checkpoint(run.checkpoint("last"))
            check_resume_config(run_dir, checkpoint_config(run.checkpoint("last"), meta), wanted, force, source, meta)
            checkpoint = (arrays, meta)
        return resume_training(wanted, run, reporter, command=command or sys.argv, checkpoint=checkpoint)

"""Run references: ``RUNS/NAME@latest`` names the newest run of a config without its timestamp.

``runs/iris@latest`` is the newest run folder in ``runs/`` whose config ``name`` is ``iris``;
``runs/@latest`` the newest run of any name.  "Newest" is by ``started`` in run.json, ties (runs started
within the same second) broken by the folder name in natural order (``iris-...-2`` before ``iris-...-10``).
A path that exists is always taken as it is, so a folder literally named ``iris@latest`` wins.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import yaml

from nnctl.errors import NnctlError
from nnctl.runs import is_run_dir

#: the one selector after ``@``
LATEST = "latest"
_REFERENCE = re.compile(r"^(?P<name>.*)@(?P<selector>[A-Za-z]+)$")
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def natural_key(text: str) -> tuple:
    """Sort key that orders the numbers inside a string by value: ``layers.2`` before ``layers.10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(text)) if part)


def run_name(path: Path) -> str | None:
    """The config ``name`` of a run folder, or None when its config cannot be read."""
    try:
        config = yaml.safe_load((Path(path) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = config.get("name") if isinstance(config, dict) else None
    return str(name) if name is not None else None


def run_started(path: Path) -> datetime:
    """When the run started (run.json ``started``); runs without a readable time count as the oldest."""
    try:
        started = json.loads((Path(path) / "run.json").read_text(encoding="utf-8")).get("started")
        moment = datetime.fromisoformat(str(started))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return _OLDEST
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def newest(paths) -> Path:
    return max(paths, key=lambda path: (run_started(path), natural_key(Path(path).name)))


def latest_runs(folder: Path) -> dict[str, Path]:
    """Config name -> its newest run folder, for the run folders directly inside ``folder``."""
    groups: dict[str, list[Path]] = {}
    for path in Path(folder).iterdir():
        if is_run_dir(path):
            name = run_name(path)
            if name is not None:
                groups.setdefault(name, []).append(path)
    return {name: newest(paths) for name, paths in groups.items()}


def resolve_run(arg: Path) -> Path:
    """``arg`` itself when it exists or is no reference; else the run folder that ``FOLDER/NAME@latest``
    (or ``FOLDER/@latest``) names."""
    arg = Path(arg)
    match = _REFERENCE.match(arg.name)
    if arg.exists() or match is None:
        return arg
    name, selector = match["name"], match["selector"]
    if selector != LATEST:
        raise NnctlError(f"{arg}: no such run folder, and '@{selector}' is not a run reference; use NAME@{LATEST} (the newest run of NAME)")
    folder = arg.parent
    if not folder.is_dir():
        raise NnctlError(f"{arg}: no folder {folder} to look for runs in")
    newest_of = latest_runs(folder)
    if not name:
        if not newest_of:
            raise NnctlError(f"{arg}: no run folders in {folder}")
        return newest(newest_of.values())
    if name not in newest_of:
        names = ", ".join(sorted(newest_of, key=natural_key)) or "none (no run folders)"
        raise NnctlError(f"{arg}: no run named {name!r} in {folder}; the names there: {names}")
    return newest_of[name]

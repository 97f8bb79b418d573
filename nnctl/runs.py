"""Run folders and checkpoints on disk.

A run folder holds::

    config.yaml          the resolved config (every default filled in, overrides applied)
    run.json             status (running, completed, diverged, converged, not_converged, failed, interrupted),
                         times, command, versions, BLAS threads, resumes and rollbacks
    metrics.jsonl        one JSON object per epoch
    metrics.csv          the same rows as CSV
    checkpoints/last.npz the weights after the last checkpointed epoch
    checkpoints/best.npz the best weights by the monitored metric (val_loss, or early_stopping.monitor)
    summary.json         final test metrics, best epoch, epochs run, training time

Checkpoints, config.yaml, run.json and summary.json are written atomically: to a temporary file in the
same folder, flushed and fsynced, then moved over the old one with ``os.replace``; a crash leaves either
the old or the new version.  The metrics files are append-only logs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from nnctl.data.files import is_zip
from nnctl.errors import NnctlError

CHECKPOINT_FORMAT = "nnctl-checkpoint"
CHECKPOINT_VERSION = 1
META_KEY = "meta.json"


# --------------------------------------------------------------------------------------------- files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power loss right after must not bring back the old file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NnctlError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NnctlError(f"{path}: not valid JSON ({exc})") from None


# --------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """An ``.npz`` of plain numeric arrays, plus the JSON metadata as a string array named ``meta.json``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{META_KEY: np.array(json.dumps(meta))})
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read every array eagerly (so a truncated file fails here) with pickles refused."""
    path = Path(path)
    if not path.is_file():
        raise NnctlError(f"{path}: checkpoint not found")
    if not is_zip(path):
        raise NnctlError(f"{path}: not a valid checkpoint: not an .npz file (empty, truncated or another format)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise NnctlError(f"{path}: the checkpoint contains Python objects (pickle); refused") from None
        raise NnctlError(f"{path}: not a valid checkpoint ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise NnctlError(f"{path}: not a valid checkpoint: truncated or not an .npz file ({exc})") from None
    meta_array = arrays.pop(META_KEY, None)
    try:
        meta = json.loads(str(meta_array)) if meta_array is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise NnctlError(f"{path}: not an nnctl checkpoint (no {META_KEY} with format {CHECKPOINT_FORMAT!r})")
    return arrays, meta


# ----------------------------------------------------------------------------------------- run folder


def create_run_dir(out_dir: Path, name: str) -> Path:
    """``<out_dir>/<name>-<YYYYmmdd-HHMMSS>``, or with ``-2``, ``-3``... when taken.  ``mkdir`` without
    ``exist_ok`` is atomic, so two processes started in the same second never share a folder."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnctlError(f"{out_dir}: cannot create the output folder: {exc.strerror}") from None
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1, 10_000):
        candidate = out_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise NnctlError(f"{candidate}: cannot create the run folder: {exc.strerror}") from None
        (candidate / "checkpoints").mkdir()
        return candidate
    raise NnctlError(f"{out_dir}: too many runs named {stem}")


def create_exact_run_dir(path: Path) -> Path:
    """A run folder at exactly ``path`` (for sweeps and scripts); refuses an existing folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise NnctlError(f"{path}: already exists; a run never overwrites another") from None
    except OSError as exc:
        raise NnctlError(f"{path}: cannot create the run folder: {exc.strerror}") from None
    (path / "checkpoints").mkdir()
    return path


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    run_json_path = property(lambda self: self.path / "run.json")
    metrics_jsonl_path = property(lambda self: self.path / "metrics.jsonl")
    metrics_csv_path = property(lambda self: self.path / "metrics.csv")
    summary_path = property(lambda self: self.path / "summary.json")

    def checkpoint(self, which: str) -> Path:
        return self.path / "checkpoints" / f"{which}.npz"

    def update_run_info(self, **fields) -> dict:
        info = read_json(self.run_json_path) if self.run_json_path.exists() else {}
        info.update(fields)
        write_json(self.run_json_path, info)
        return info

    def append_metrics(self, row: dict) -> None:
        """Append one epoch's row to metrics.jsonl and metrics.csv (the CSV header comes from the first row)."""
        with open(self.metrics_jsonl_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        new_csv = not self.metrics_csv_path.exists() or self.metrics_csv_path.stat().st_size == 0
        with open(self.metrics_csv_path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new_csv:
                writer.writeheader()
            writer.writerow(row)

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl; a last line cut short by a crash is skipped."""
        if not self.metrics_jsonl_path.exists():
            return []
        rows = []
        for line in self.metrics_jsonl_path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def rewrite_metrics(self, rows: list[dict]) -> None:
        """Replace metrics.jsonl and metrics.csv with ``rows`` (atomically), e.g. cut back to a checkpoint."""
        atomic_write_text(self.metrics_jsonl_path, "".join(json.dumps(row) + "\n" for row in rows))
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(self.metrics_csv_path, buffer.getvalue())


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "run.json").is_file() and (Path(path) / "config.yaml").is_file()

"""Run folders and checkpoints on disk.

A run folder holds::

    config.yaml          the resolved config (every default filled in, overrides applied)
    run.json             status (running, completed, diverged, converged, not_converged, failed, interrupted),
                         times, command, versions, BLAS threads, resumes and rollbacks
    metrics.jsonl        one JSON object per epoch
    metrics.csv          the same rows as CSV
    checkpoints/last.npz the weights after the last checkpointed epoch
    checkpoints/best.npz the best epoch by training.select_best (or early_stopping with restore_best), when asked
    summary.json         final test metrics, best epoch, epochs run, training time

Checkpoints, config.yaml, run.json and summary.json are written atomically: to a temporary file in the
same folder, flushed and fsynced, then moved over the old one with ``os.replace``; a crash leaves either
the old or the new version (and a temporary file, removed by the next resume).  The metrics files are
append-only logs, fsynced before every checkpoint.  Every JSON text is strict JSON: a non-finite number
(an undefined R², say) is written as null.  One process writes a run folder at a time (``RunLock``).
A single run writes its checkpoints as it goes; a population hands its members' to background threads
(``FileWriter``), so that their fsyncs overlap one another and the training, each file's writes in order.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import stat
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import numpy as np

from nnctl.errors import NnctlError
from nnctl.npz import npz_bytes

CHECKPOINT_FORMAT = "nnctl-checkpoint"
CHECKPOINT_VERSION = 2  # 2: best-epoch trackers by name (select_best, early stopping), strict JSON metadata
META_KEY = "meta.json"


# --------------------------------------------------------------------------------------------- files


TEMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it: done once, at import, before any thread starts
    os.umask(umask)
    return umask


UMASK = _read_umask()


def mode_for_writing(path: Path) -> int:
    """The permissions a file written to ``path`` gets: an existing file keeps its own, a new one gets 0666 less
    the umask, as ``open()`` would give it (``mkstemp`` alone would make every file 0600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~UMASK


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    mode = mode_for_writing(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, mode)
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


def write_output(path: Path, data: bytes | str) -> None:
    """A file a command was asked to write (--out): atomically, and an OSError as one line naming the file."""
    try:
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise NnctlError(f"{path}: cannot write: {exc.strerror or exc}") from None


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete the temporary files that writes killed half-way left in ``folder`` and its subfolders."""
    removed = []
    for tmp in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def strict_json(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, np.generic):
        return strict_json(value.item())
    return value


def json_text(value, indent: int | None = None) -> str:
    """Strict JSON (non-finite numbers as null) of ``value``."""
    try:  # most values hold only finite Python numbers: no copy needed (the same text either way)
        return json.dumps(value, indent=indent, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(strict_json(value), indent=indent, allow_nan=False)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json_text(obj, indent=2) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NnctlError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NnctlError(f"{path}: not valid JSON ({exc})") from None


def read_json_object(path: Path, what: str) -> dict:
    """A JSON file that must hold an object; anything else is an error naming the file."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise NnctlError(f"{path}: not a {what} (a JSON object is expected, found {type(value).__name__})")
    return value


# --------------------------------------------------------------------------------------- checkpoints


def checkpoint_bytes(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    """An ``.npz`` of plain numeric arrays, plus the JSON metadata as a string array named ``meta.json``."""
    return npz_bytes({**arrays, META_KEY: np.array(json_text(meta))})


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    atomic_write_bytes(path, checkpoint_bytes(arrays, meta))


class FileWriter:
    """Runs the writes it is given: at once (``threads=0``, a single run), or in background threads, where the
    writes of one path run one after another in the order given.  A write's error is raised by the next write
    to the same path or by ``wait``."""

    def __init__(self, threads: int = 0):
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="nnctl-writer") if threads else None
        self.pending: dict[Path, Future] = {}

    def write(self, path: Path, write: Callable[[], None]) -> None:
        if self.pool is None:
            write()
            return
        previous = self.pending.pop(path, None)
        if previous is not None:
            previous.result()
        self.pending[path] = self.pool.submit(write)

    def wait(self, folder: Path | None = None) -> None:
        """Return when every write given so far (into ``folder``, when given: one run's) has ended; raise the
        first error among them."""
        paths = [path for path in self.pending if folder is None or Path(path).is_relative_to(folder)]
        futures = [self.pending.pop(path) for path in paths]
        wait(futures)
        for future in futures:
            future.result()

    def close(self, errors: bool = True) -> None:
        """Wait for every write, then stop the threads; ``errors=False`` when another error is on its way out
        (the writes' own are then not raised)."""
        try:
            self.wait()
        except Exception:
            if errors:
                raise
        finally:
            if self.pool is not None:
                self.pool.shutdown()


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read every array eagerly (so a truncated file fails here) with pickles refused, and every size an
    array header or zip member declares checked before it is allocated; the metadata must be a JSON object
    whose known keys have the types nnctl writes."""
    from nnctl.data.files import read_npz_arrays

    path = Path(path)
    if not path.is_file():
        raise NnctlError(f"{path}: checkpoint not found")
    arrays, _ = read_npz_arrays(path, None, kind="checkpoint")
    meta_array = arrays.pop(META_KEY, None)
    meta = None
    if meta_array is not None and meta_array.ndim == 0 and meta_array.dtype.kind == "U":
        try:
            meta = json.loads(str(meta_array))
        except (json.JSONDecodeError, RecursionError):
            meta = None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise NnctlError(f"{path}: not an nnctl checkpoint (no {META_KEY} with format {CHECKPOINT_FORMAT!r})")

    def names(value) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    def whole(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    expected = {
        "n_features": (lambda v: whole(v, 1), "a whole number of at least 1"),
        "task": (lambda v: v in ("classification", "regression"), "classification or regression"),
        "class_names": (names, "a list of class names"),
        "input_columns": (lambda v: v is None or names(v), "a list of column names"),
        "image_shape": (lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(whole(n, 1) for n in v)), "[height, width]"),
        "playground_features": (lambda v: v is None or names(v), "a list of feature names"),
        "config": (lambda v: isinstance(v, dict), "a mapping (the run's config)"),
        "epoch": (lambda v: whole(v, 0), "a whole number"),
    }
    for key, (valid, allowed) in expected.items():
        if key in meta and not valid(meta[key]):
            shown = repr(meta[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise NnctlError(f"{path}: not a valid checkpoint: its {META_KEY} has {key}: {shown}; expected {allowed}")
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


METRICS_FLUSH_SECONDS = 1.0
STOP_REQUEST = "stop-requested"


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._metrics_files = None  # metrics.jsonl, metrics.csv and its writer, open while a run appends rows
        self._metrics_entry_synced = False
        self._metrics_flushed = -math.inf  # when the rows last reached the files (time.monotonic)

    config_path = property(lambda self: self.path / "config.yaml")
    run_json_path = property(lambda self: self.path / "run.json")
    metrics_jsonl_path = property(lambda self: self.path / "metrics.jsonl")
    metrics_csv_path = property(lambda self: self.path / "metrics.csv")
    summary_path = property(lambda self: self.path / "summary.json")

    def take_stop_request(self) -> bool:
        """Whether a ``stop-requested`` file (a sweep's pruner's) asks the run to stop; the file is removed, so
        that a later ``nnctl resume`` trains on."""
        try:
            (self.path / STOP_REQUEST).unlink()
        except FileNotFoundError:
            return False
        return True

    def checkpoint(self, which: str) -> Path:
        return self.path / "checkpoints" / f"{which}.npz"

    def read_run_info(self) -> dict:
        """run.json as a dict ({} before it is written)."""
        return read_json_object(self.run_json_path, "run.json") if self.run_json_path.exists() else {}

    def update_run_info(self, remove: tuple[str, ...] = (), **fields) -> dict:
        info = self.read_run_info()
        for key in remove:
            info.pop(key, None)
        info.update(fields)
        write_json(self.run_json_path, info)
        return info

    def read_summary(self) -> dict | None:
        """summary.json as a dict, None when there is none yet."""
        return read_json_object(self.summary_path, "summary") if self.summary_path.exists() else None

    def append_metrics(self, row: dict) -> None:
        """Append one epoch's row to metrics.jsonl and metrics.csv (the CSV header comes from the first row).
        Both files stay open until ``close_metrics``; rows reach the files at least every second (for whoever
        watches them) and always before a checkpoint (``flush_metrics``), which is all a resume needs."""
        if self._metrics_files is None:
            jsonl = open(self.metrics_jsonl_path, "a", encoding="utf-8")
            table = open(self.metrics_csv_path, "a", encoding="utf-8", newline="")
            self._metrics_files = (jsonl, table, csv.writer(table))
            if os.fstat(table.fileno()).st_size == 0:
                self._metrics_files[2].writerow(row)  # the header: the first row's keys
        jsonl, table, writer = self._metrics_files
        jsonl.write(json_text(row) + "\n")
        writer.writerow(row.values())
        if time.monotonic() - self._metrics_flushed >= METRICS_FLUSH_SECONDS:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        if self._metrics_files is not None:
            self._metrics_files[0].flush()
            self._metrics_files[1].flush()
        self._metrics_flushed = time.monotonic()

    def close_metrics(self) -> None:
        if self._metrics_files is not None:
            for handle in self._metrics_files[:2]:
                handle.close()
            self._metrics_files = None

    def sync_metrics(self) -> None:
        """fsync metrics.jsonl (its rows flushed by ``flush_metrics`` first): called before a checkpoint is
        written, so that it never outlives its rows.  (metrics.csv needs no fsync: resume rewrites it from
        metrics.jsonl's rows.)"""
        if not self.metrics_jsonl_path.exists():
            return
        fd = os.open(self.metrics_jsonl_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._metrics_entry_synced:  # the file's entry in the folder, once
            _fsync_folder(self.path)
            self._metrics_entry_synced = True

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl; a last line cut short by a crash (or not a row at all) ends them."""
        if not self.metrics_jsonl_path.exists():
            return []
        rows = []
        try:
            text = self.metrics_jsonl_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise NnctlError(f"{self.metrics_jsonl_path}: not a metrics log (not UTF-8 text)") from None
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                break
            rows.append(row)
        return rows

    def rewrite_metrics(self, rows: list[dict]) -> None:
        """Replace metrics.jsonl and metrics.csv with ``rows`` (atomically), e.g. cut back to a checkpoint."""
        self.close_metrics()
        atomic_write_text(self.metrics_jsonl_path, "".join(json_text(row) + "\n" for row in rows))
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(self.metrics_csv_path, buffer.getvalue())


class RunLock:
    """One writer per run folder: an exclusive ``flock`` on ``<run>/.lock``, held while training or resuming.
    The kernel releases it when the process ends, however it ends (SIGKILL included), so it is never stale."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, mode_for_writing(self.path))
        except OSError as exc:
            raise NnctlError(f"{self.path}: cannot lock the run folder: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise NnctlError(
                f"{self.path.parent}: another nnctl process (pid {holder}) is writing this run; "
                "one run folder has one writer: wait for it to end, or stop it first"
            ) from None
        except OSError as exc:  # e.g. ENOLCK on a network file system without locks
            os.close(fd)
            raise NnctlError(f"{self.path}: cannot lock the run folder: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "run.json").is_file() and (Path(path) / "config.yaml").is_file()

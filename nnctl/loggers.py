"""Loggers: where a run's epochs also go while it trains (``training.loggers``, none by default), and a sweep's
trials in TensorBoard's HParams tab.

``tensorboard`` (``pip install "nnctl[tensorboard]"``: tensorboardX) writes TensorBoard event files into
``RUN/tensorboard/``:

- every epoch, each number of the epoch's metrics.jsonl row (``lr``, ``train_*``, ``val_*``, ``train_seconds``,
  ...) as a scalar of the same name, at step = epoch;
- every ``training.checkpoint_every`` epochs (the epochs whose weights checkpoints/last.npz is written with), a
  histogram of every model array under its checkpoint name (``model/layers.0.weight``, biases, batch-norm
  statistics), of the gradient of the epoch's last step (``gradients/...``, as the optimizer used it: with the
  L1/L2 term and clipping), and that gradient's L2 norm as a scalar (``grad_norm/...``; ``grad_norm/total`` is
  the norm ``training.grad_clip`` clips).

The ``Trainer`` calls ``start`` before the first epoch it trains, ``epoch`` with every row it records, ``flush``
before every checkpoint and ``close`` when training ends or is interrupted.  A run without loggers has an
empty list of them: it imports nothing of tensorboardX and does no work for them.

Resuming.  Every process writes a new event file, and TensorBoard reads a folder's event files in name order,
which here is creation time to the nanosecond.  A file's first record after its version is a
``SessionLog.START`` at the first epoch its process trains, as tensorboardX's ``SummaryWriter(purge_step=...)``
writes it: TensorBoard then drops every event of earlier files at that step or later (``EventAccumulator``
purges on it; the Rust data server drops a tag's points from a step it is given again).  So the epochs a killed
run had logged after its last checkpoint, which the resumed run trains again, appear once, with the resumed
values.  As metrics.jsonl's rows, events reach the file at least every second (for TensorBoard to show a run
live) and before every checkpoint, so a checkpoint never covers an epoch that a kill took from the event file.
They are never fsynced: metrics.jsonl is the run's record, and a population's hundreds of fsyncs would hold up
its training thread (a power cut may cost the event files their last epochs, which a resume does not rewrite).

Why not ``SummaryWriter`` itself: it writes from a background thread fed through a multiprocessing queue (a
pipe and two threads per writer: a population of 256 members would hold 512 threads), its ``flush`` does not
wait for queued events, and two writers started in one folder within the same second get the same file name,
the second truncating the first (a run killed and resumed at once).  The format is small: TFRecords (length,
masked CRC-32C of the length, the data, masked CRC-32C of the data) of ``Event`` protos; tensorboardX gives
the protos and the CRC (computed by the crc32c package when it is installed: in pure Python the CRC alone costs
about 0.3 µs a byte).
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.runs import METRICS_FLUSH_SECONDS

#: the run folder's subfolder for TensorBoard's event files
TENSORBOARD_FOLDER = "tensorboard"
#: buckets of each histogram (tf.summary.histogram's default)
HISTOGRAM_BUCKETS = 30


def check_installed(loaded) -> None:
    """Before anything is written: the packages the config's loggers need are importable."""
    if "tensorboard" not in loaded.config.training.loggers:
        return
    try:
        import_tensorboardx()
    except ImportError as exc:
        missing = exc.name == "tensorboardX"
        why = "needs tensorboardX" if missing else f"cannot import tensorboardX ({exc})"
        raise loaded.error(("training", "loggers"), f'tensorboard {why}: pip install "nnctl[tensorboard]"') from None


def import_tensorboardx() -> None:
    """Import tensorboardX without torch: its writer module imports torch, when installed, for a type hint alone
    (1.6 s of a 1.8 s import, in every run and every sweep trial's process; nnctl uses neither), so torch is
    hidden while tensorboardX is imported, unless something imported it already."""
    if "torch" in sys.modules:
        import tensorboardX  # noqa: F401
        return
    sys.modules["torch"] = None  # `import torch` raises ImportError
    try:
        import tensorboardX  # noqa: F401
    finally:
        del sys.modules["torch"]


def make_loggers(config, run_dir: Path) -> list["TensorBoardLogger"]:
    """The config's loggers, not yet writing (``start`` opens their files); a name listed twice logs once."""
    folder = Path(run_dir) / TENSORBOARD_FOLDER
    return [TensorBoardLogger(folder, config.training.checkpoint_every) for _ in dict.fromkeys(config.training.loggers)]


class EventFile:
    """A new append-only event file in ``folder``: TFRecords of ``Event`` protos."""

    def __init__(self, folder: Path):
        from tensorboardX.proto.event_pb2 import Event

        folder.mkdir(parents=True, exist_ok=True)
        now = time.time_ns()
        # TensorBoard's name pattern (seconds, host), then nanoseconds: two files of one second still sort by age
        self.path = folder / f"events.out.tfevents.{now // 10**9}.{socket.gethostname()}.{now}.{os.getpid()}"
        self.file = open(self.path, "xb")  # never another file's name
        self.write(Event(wall_time=now / 1e9, file_version="brain.Event:2"))

    def write(self, event) -> None:
        masked_crc32c = protos()[2]
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self.file.write(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))

    def summary(self, step: int, values: list) -> None:
        """One event at ``step`` holding ``values`` (``Summary.Value`` protos)."""
        Event, Summary, _ = protos()
        self.write(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


@functools.cache
def protos() -> tuple:
    """tensorboardX's ``Event``, ``Summary`` and ``masked_crc32c``, imported at their first use (never when no
    logger is configured) and looked up once, not at every epoch."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.record_writer import masked_crc32c

    return Event, Summary, masked_crc32c


def scalar(tag: str, value: float):
    Summary = protos()[1]
    return Summary.Value(tag=tag, simple_value=float(value))


def histogram(tag: str, values: np.ndarray):
    """A histogram as ``tf.summary.histogram`` makes it: ``HISTOGRAM_BUCKETS`` buckets of equal width from the
    smallest value to the largest (±0.5 around a constant, as ``np.histogram``), each bucket given by its right
    edge; an empty first bucket ends at the smallest value, so that TensorBoard sees the left edge too."""
    from tensorboardX.proto.summary_pb2 import HistogramProto, Summary

    values = values.astype(np.float64).ravel()
    low, high = values.min(), values.max()
    left, right = (low, high) if high > low else (low - 0.5, high + 0.5)
    bucket = np.minimum(((values - left) * (HISTOGRAM_BUCKETS / (right - left))).astype(np.intp), HISTOGRAM_BUCKETS - 1)
    counts = np.bincount(bucket, minlength=HISTOGRAM_BUCKETS)
    histo = HistogramProto(
        min=low, max=high, num=values.size, sum=values.sum(), sum_squares=values @ values,
        bucket_limit=np.linspace(left, right, HISTOGRAM_BUCKETS + 1).tolist(), bucket=[0, *counts.tolist()],
    )  # fmt: skip
    return Summary.Value(tag=tag, histo=histo)


class TensorBoardLogger:
    """A run's event files in ``folder`` (see the module docstring for what is logged when)."""

    def __init__(self, folder: Path, every: int):
        self.folder = folder
        self.every = every  # histograms and gradient norms every this many epochs
        self.events: EventFile | None = None
        self.flushed = 0.0  # when the events last reached the file (time.monotonic)

    def start(self, first_epoch: int) -> None:
        """Open a new event file; events of earlier files from ``first_epoch`` on are stale (see Resuming)."""
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self.events = EventFile(self.folder)
        self.events.write(Event(wall_time=time.time(), step=first_epoch, session_log=SessionLog(status=SessionLog.START)))

    def epoch(self, row: dict, model) -> None:
        """The row's numbers as scalars; every ``every`` epochs the model's arrays and last gradient as well."""
        step = row["epoch"]
        values = [scalar(name, value) for name, value in row.items() if name != "epoch"]
        if step % self.every == 0:
            values += [histogram(f"model/{name}", array) for name, array in model.state_dict().items()]
            grads = {name: grad for name, _, grad in model.named_params()}  # none for a perceptron
            norms = {name: float(np.linalg.norm(grad)) for name, grad in grads.items()}
            values += [histogram(f"gradients/{name}", grad) for name, grad in grads.items()]
            values += [scalar(f"grad_norm/{name}", norm) for name, norm in norms.items()]
            if norms:
                values.append(scalar("grad_norm/total", math.hypot(*norms.values())))
        self.events.summary(step, values)
        if time.monotonic() - self.flushed >= METRICS_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.events is not None:
            self.events.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None


# ------------------------------------------------------------------------------ sweeps: the HParams tab


class SweepHParams:
    """A sweep in TensorBoard's HParams tab (``tensorboard --logdir SWEEP``).

    The sweep folder holds the experiment: every swept parameter and ``seed`` with its domain (the listed values,
    or a distribution's interval), and the metrics: the numbers of a trial's summary.json, as ``summary/<name>``.
    Each trial that ended (completed: a success; diverged or failed: a failure; not one pruned or interrupted) is a
    session in its run's ``tensorboard/`` folder, beside the run's per-epoch events: its parameter values, its
    status, and those numbers as scalars at its last epoch.  ``domains`` maps each parameter to its list of values
    or its (low, high) interval."""

    def __init__(self, domains: dict[str, list | tuple[float, float]], metrics: list[str]):
        self.domains = domains
        self.metrics = metrics
        self.kinds = {name: hparam_kind(domain) for name, domain in domains.items()}

    def write_experiment(self, folder: Path) -> None:
        """The experiment's event file in ``folder``, unless it has one (a resumed sweep keeps its own)."""
        from tensorboardX.proto.api_pb2 import DataType, Experiment, HParamInfo, Interval, MetricInfo, MetricName

        if any(folder.glob("events.out.tfevents.*")):
            return
        infos = []
        for name, domain in self.domains.items():
            info = HParamInfo(name=name, type=DataType.Value(f"DATA_TYPE_{self.kinds[name]}"))
            if isinstance(domain, tuple):
                info.domain_interval.CopyFrom(Interval(min_value=domain[0], max_value=domain[1]))
            else:
                info.domain_discrete.values.extend(hparam_value(value, self.kinds[name]) for value in domain)
            infos.append(info)
        metrics = [MetricInfo(name=MetricName(tag=f"summary/{name}"), display_name=name) for name in self.metrics]
        write_hparams_events(folder, 0, {"experiment": Experiment(hparam_infos=infos, metric_infos=metrics)})

    def write_session(self, run_dir: Path, values: dict[str, Any], succeeded: bool, numbers: dict[str, float]) -> None:
        """A finished trial's session, in its run's tensorboard folder (none when the run logged nothing: it failed
        before training).  ``numbers``: its summary.json's."""
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import SessionEndInfo, SessionStartInfo

        folder = Path(run_dir) / TENSORBOARD_FOLDER
        if not folder.is_dir():
            return
        start = SessionStartInfo()
        for name, value in values.items():
            start.hparams[name].CopyFrom(hparam_value(value, self.kinds[name]))
        end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS" if succeeded else "STATUS_FAILURE"), end_time_secs=time.time())
        scalars = [scalar(f"summary/{name}", numbers[name]) for name in self.metrics if numbers.get(name) is not None]
        write_hparams_events(folder, int(numbers.get("epochs_run") or 0), {"session_start_info": start, "session_end_info": end}, scalars)


def write_hparams_events(folder: Path, step: int, data: dict, scalars: list = ()) -> None:
    """A new event file in ``folder`` with the hparams plugin's ``data`` (``HParamsPluginData`` fields: experiment,
    session_start_info, session_end_info) and ``scalars``, all at ``step``."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    values = []
    for field, message in data.items():
        content = HParamsPluginData(version=0, **{field: message}).SerializeToString()
        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
        values.append(Summary.Value(tag=f"_hparams_/{field}", metadata=metadata))
    events = EventFile(folder)
    events.summary(step, values + list(scalars))
    events.close()


def hparam_kind(domain: list | tuple) -> str:
    """An HParams data type for a parameter's values: BOOL, FLOAT64 or STRING (mixed or structured values)."""
    if isinstance(domain, tuple) or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in domain):
        return "FLOAT64"
    return "BOOL" if all(isinstance(v, bool) for v in domain) else "STRING"


def hparam_value(value: Any, kind: str):
    """``value`` as a protobuf ``Value`` of ``kind``; a string parameter's non-string values as JSON."""
    from google.protobuf.struct_pb2 import Value

    if kind == "FLOAT64":
        return Value(number_value=float(value))
    if kind == "BOOL":
        return Value(bool_value=value)
    return Value(string_value=value if isinstance(value, str) else json.dumps(value, sort_keys=True))

"""Training throughput of nnctl against PyTorch (CPU) and scikit-learn, on the same data and thread count.

    python benchmarks/bench.py                    # full run (a few minutes on 2 cores)
    python benchmarks/bench.py --quick            # smaller sizes, a smoke run (about a minute)
    python benchmarks/bench.py --threads 1,2 --json results.json
    python benchmarks/bench.py --profile A        # cProfile of nnctl's training on scenario A (or B, C)

Scenarios (synthetic float32 data, labels from a random "teacher" network so the models learn):

    A  MNIST-size MLP   784-256-256-10 ReLU, softmax cross-entropy, SGD momentum 0.9, batch 128,
                        60 000 rows; 1 warm-up epoch, then 1 measured epoch
    B  Playground MLP   2-8-8-2 tanh, batch 10, 1 000 rows; 1 warm-up epoch, then 20 measured epochs
    C  A + batch norm + dropout: dense(256) -> batchnorm -> relu -> dropout 0.2, twice, then dense(10);
                        nnctl and PyTorch only (MLPClassifier has neither)

For A the "GEMM floor" is the time of the forward and backward matrix products alone in NumPy (float32,
preallocated outputs): per batch x@W1, h1@W2, h2@W3, then dW = h.T@g for each layer and dx = g@W.T for
every layer but the first.  A training loop built on NumPy cannot beat it, so nnctl/GEMM-floor is the
fraction of the time nnctl spends in useful matrix products.

Every measurement runs at a fixed thread count, for each count in --threads: threadpoolctl's
``threadpool_limits`` for NumPy's BLAS (nnctl, scikit-learn, the GEMM floor), ``torch.set_num_threads`` for
PyTorch, and ``training.threads`` for nnctl, which sets its BLAS threads itself.  Throughput is training rows
per second over whole measured epochs:

- nnctl: ``nnctl.training.run_training`` in-process (a silent Reporter); the seconds are the
  ``train_seconds`` of the measured epochs in the run's metrics.jsonl (the training steps alone: the
  per-epoch shuffle and gather, forward, loss, backward, optimizer step, loss and accuracy counting);
- PyTorch: the same loop written by hand -- a shuffled permutation per epoch, one gather, slices as batches,
  zero_grad/forward/loss/backward/step, plus the epoch's loss and accuracy (as nnctl counts them);
- scikit-learn: ``MLPClassifier(solver="sgd", momentum=0.9, nesterovs_momentum=False, alpha=0,
  shuffle=True, tol=0, n_iter_no_change=10**9, warm_start=True)``: a first ``fit`` with max_iter=1 is the
  warm-up (and initialises the weights); then max_iter is set to the measured epochs and a second ``fit``
  (continuing from the warm-up's weights) is timed whole.  That time includes fit's input validation
  (a few ms), which is small next to the epochs.  For two classes (B) MLPClassifier has one logistic output
  unit instead of two softmax units: a negligible difference in work.

Thread policy: nnctl on A and B at each count in --threads and at ``training.threads: auto``, taking turns, first
on the machine as it is, then while a process this script starts spins on one core (``while True: pass``, killed
when the measurement ends, also on an error); auto/best fixed count is reported for both (targets: >= 0.90 idle,
>= 1/1.2 busy).  --quick includes it.

Peak memory: nnctl trains A in a separate process (this script with --rss-child) so that its peak resident
set size (VmHWM from /proc/self/status, else getrusage) is its own; the target is
1.5 x dataset bytes + 150 MB (MB = 10^6 bytes).

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, when set, force NumPy's OpenBLAS onto another kernel and cache
size than it would detect, which can slow NumPy (and so nnctl and scikit-learn, not PyTorch, which uses
MKL) substantially.  The script reports them and the kernels in use but never changes them; to measure
without them run ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py``.

PyTorch and scikit-learn are optional (``pip install 'nnctl[bench]'``): a missing one is reported in its
column and the rest still runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

NOT_INSTALLED = "not installed (pip install 'nnctl[bench]')"
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SLOW_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MB = 1e6
#: a measurement during which other processes used more than this share of the machine's CPU time is retried
DISTURBED = 0.05
RETRIES = 2
JITTER_TICKS = 5


# ------------------------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    rows: int
    features: int
    hidden: tuple[int, ...]
    classes: int
    activation: str  # relu | tanh (the same name in nnctl, torch and scikit-learn)
    batch_size: int
    lr: float
    measured_epochs: int
    warmup_epochs: int = 1
    batchnorm_dropout: float | None = None  # dropout rate; None: a plain MLP
    init: str = "he_uniform"
    #: (column, minimum ratio nnctl/column) printed next to the measured ratios
    targets: tuple[tuple[str, float], ...] = ()
    data_key: str = ""  # scenarios with the same data_key share one dataset

    @property
    def shape(self) -> str:
        return "-".join(str(u) for u in (self.features, *self.hidden, self.classes))


def scenarios(quick: bool) -> list[Scenario]:
    mnist_rows = 6_000 if quick else 60_000
    a = Scenario(
        "A", "MNIST-size MLP", mnist_rows, 784, (256, 256), 10, "relu", 128, 0.05, measured_epochs=1,
        targets=(("torch", 1.0), ("sklearn", 1.0), ("gemm", 0.85)), data_key="mnist",
    )
    b = Scenario(
        "B", "Playground-size MLP", 1_000, 2, (8, 8), 2, "tanh", 10, 0.03, measured_epochs=5 if quick else 20,
        init="xavier_uniform", targets=(("torch", 5.0), ("sklearn", 3.0)), data_key="playground",
    )
    c = Scenario(
        "C", "A + batchnorm + dropout", mnist_rows, 784, (256, 256), 10, "relu", 128, 0.05, measured_epochs=1,
        batchnorm_dropout=0.2, targets=(("torch", 1.0),), data_key="mnist",
    )
    return [a, b, c]


def make_data(scenario: Scenario, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 inputs and int64 labels given by a random tanh teacher network (learnable, every class present)."""
    rng = np.random.default_rng(seed)
    n, d = scenario.rows, scenario.features
    if d > 2:
        x = rng.random((n, d), dtype=np.float32)  # like pixels in [0, 1)
    else:
        x = rng.uniform(-1.0, 1.0, (n, d)).astype(np.float32)  # like the Playground's points
    teacher_hidden = 32
    w1 = rng.normal(0.0, 3.0 / math.sqrt(d), (d, teacher_hidden))
    w2 = rng.normal(0.0, 1.0 / math.sqrt(teacher_hidden), (teacher_hidden, scenario.classes))
    centred = x - x.mean(axis=0) if d > 2 else x
    y = (np.tanh(centred @ w1) @ w2).argmax(axis=1).astype(np.int64)
    counts = np.bincount(y, minlength=scenario.classes)
    if (counts == 0).any():  # pragma: no cover - the teacher's classes are never empty at these sizes
        raise RuntimeError(f"the teacher network left a class empty: {counts}")
    return x, y


# ---------------------------------------------------------------------------------------- measurement


@dataclass
class Measurement:
    rows_per_second: float | None = None
    seconds: float | None = None
    rows: int | None = None
    final_loss: float | None = None
    note: str = ""  # why there is no number (not installed, not applicable)
    #: rows/s of every repeat, when the measurement was repeated (rows_per_second is their median)
    repeats: list[float] = field(default_factory=list)
    #: nnctl only: wall time of the measured epochs as a whole (seconds covers the training steps, train_seconds)
    whole_epoch_seconds: float | None = None
    #: share of the machine's CPU time other processes used during this measurement (None: unknown)
    other_load: float | None = None
    #: how many disturbed attempts were thrown away before this one (summed over repeats by median_of)
    retries: int = 0

    @classmethod
    def of(cls, rows: int, seconds: float, final_loss: float | None = None) -> "Measurement":
        return cls(rows / seconds, seconds, rows, final_loss)

    @classmethod
    def median_of(cls, runs: list["Measurement"]) -> "Measurement":
        """The run with the median throughput (the lower middle one for an even count), with every repeat's rows/s."""
        if not runs[0].rows_per_second:
            return runs[0]
        ordered = sorted(runs, key=lambda m: m.rows_per_second)
        middle = ordered[(len(ordered) - 1) // 2]
        return cls(middle.rows_per_second, middle.seconds, middle.rows, middle.final_loss,
                   repeats=[m.rows_per_second for m in runs], whole_epoch_seconds=middle.whole_epoch_seconds,
                   other_load=middle.other_load, retries=sum(m.retries for m in runs))

    @property
    def disturbed(self) -> bool:
        return self.other_load is not None and self.other_load > DISTURBED

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats: how noisy the measurement was."""
        return (max(self.repeats) - min(self.repeats)) / self.rows_per_second if len(self.repeats) > 1 else 0.0


@dataclass
class ScenarioResult:
    scenario: str
    threads: int
    nnctl: Measurement
    torch: Measurement
    sklearn: Measurement
    gemm: Measurement
    ratios: dict = field(default_factory=dict)


def optional_import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


# --- nnctl


def nnctl_has_threads_key() -> bool:
    """Whether this nnctl has ``training.threads`` (it then sets its threads itself, overriding an outer
    threadpool_limits): the config must name the thread count being measured."""
    from nnctl.config import TrainingConfig

    return "threads" in TrainingConfig.model_fields


def nnctl_config_text(scenario: Scenario, data_path: Path, epochs: int, threads: int) -> str:
    if scenario.batchnorm_dropout is None:
        hidden = [f"    - {{type: dense, units: {u}, activation: {scenario.activation}}}" for u in scenario.hidden]
    else:
        hidden = []
        for u in scenario.hidden:
            hidden += [
                f"    - {{type: dense, units: {u}}}",
                "    - {type: batchnorm}",
                f"    - {{type: activation, name: {scenario.activation}}}",
                f"    - {{type: dropout, rate: {scenario.batchnorm_dropout}}}",
            ]
    layers = "\n".join([*hidden, f"    - {{type: dense, units: {scenario.classes}}}"])
    threads_key = f", threads: {threads}" if nnctl_has_threads_key() else ""
    return f"""\
name: bench-{scenario.key}
seed: 0
data: {{dataset: npz, path: {json.dumps(str(data_path))}, test_fraction: 0.0, val_fraction: 0.0}}
model:
  init: {scenario.init}
  layers:
{layers}
loss: cross_entropy
optimizer: {{name: sgd, lr: {scenario.lr}, momentum: 0.9}}
training: {{epochs: {epochs}, batch_size: {scenario.batch_size}, shuffle: true, checkpoint_every: {epochs}{threads_key}}}
"""


def write_nnctl_config(scenario: Scenario, data_path: Path, workdir: Path, threads: int) -> Path:
    path = workdir / f"nnctl_{scenario.key}_{threads}.yaml"
    path.write_text(nnctl_config_text(scenario, data_path, scenario.warmup_epochs + scenario.measured_epochs, threads))
    return path


def blas_threads_now() -> int | None:
    """NumPy's BLAS threads at this moment (threadpoolctl)."""
    pools = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas" and "numpy" in p.get("filepath", "")]
    return max(pools) if pools else None


def epoch_clock():
    """An nnctl Reporter that prints nothing and records, for each epoch, the wall time from the end of the
    previous epoch's report to this one's: the whole epoch (shuffle, gather, steps, metrics), which
    train_seconds may not all cover.  It also notes the BLAS threads in effect inside nnctl's loop at each
    epoch's end (``training.threads: auto`` may change them during a run)."""
    from nnctl.training import Reporter

    class EpochClock(Reporter):
        def __init__(self):
            self.epoch_seconds: list[float] = []
            self.blas_threads: list[int] = []
            self._last = None

        def start(self, *args, **kwargs) -> None:
            self._last = time.perf_counter()

        def epoch(self, row: dict) -> None:
            now = time.perf_counter()
            self.epoch_seconds.append(now - self._last)
            threads = blas_threads_now()
            if threads is not None:
                self.blas_threads.append(threads)
            self._last = time.perf_counter()

        def threads_seen(self) -> str:
            """The BLAS threads seen at the epochs' ends: e.g. "2", or "1-2" when auto changed its choice."""
            if not self.blas_threads:
                return "?"
            low, high = min(self.blas_threads), max(self.blas_threads)
            return str(low) if low == high else f"{low}-{high}"

    return EpochClock()


def run_nnctl(config_path: Path, out_dir: Path, reporter=None):
    from nnctl.config import load_config
    from nnctl.training import Reporter, run_training

    command = ["benchmarks/bench.py", str(config_path)]
    return run_training(load_config(config_path), out_dir, reporter or Reporter(), command=command)


def nnctl_throughput(scenario: Scenario, data_path: Path, workdir: Path, threads: int) -> Measurement:
    from nnctl.runs import RunFolder

    config_path = write_nnctl_config(scenario, data_path, workdir, threads)
    clock = epoch_clock()
    with threadpool_limits(limits=threads):
        result = run_nnctl(config_path, workdir / "runs", clock)
    rows = RunFolder(result.run_dir).read_metrics()
    measured = rows[scenario.warmup_epochs :]
    if result.status != "completed" or len(measured) != scenario.measured_epochs:
        raise RuntimeError(f"nnctl run {result.run_dir} ended {result.status} after {len(rows)} epochs")
    if clock.blas_threads and set(clock.blas_threads) != {threads}:
        raise RuntimeError(f"nnctl trained with {clock.threads_seen()} BLAS threads, not the {threads} being measured")
    seconds = sum(row["train_seconds"] for row in measured)
    m = Measurement.of(scenario.rows * len(measured), seconds, measured[-1]["train_loss"])
    m.whole_epoch_seconds = sum(clock.epoch_seconds[scenario.warmup_epochs :])
    return m


def nnctl_auto_once(scenario: Scenario, data_path: Path, workdir: Path) -> tuple[float, str]:
    """One run of nnctl with ``training.threads: auto`` (its own choice, no outer limit): rows/s, threads used."""
    from nnctl.runs import RunFolder

    config_path = write_nnctl_config(scenario, data_path, workdir, "auto")
    clock = epoch_clock()
    result = run_nnctl(config_path, workdir / "runs", clock)
    measured = RunFolder(result.run_dir).read_metrics()[scenario.warmup_epochs :]
    return scenario.rows * len(measured) / sum(row["train_seconds"] for row in measured), clock.threads_seen()


def print_thread_policy(policy: list[dict]) -> None:
    """nnctl at each fixed thread count and at auto, idle and with the burner (measure_thread_policy)."""
    cores = os.cpu_count() or 1
    print(f"=== training.threads: auto against the best fixed setting, idle and busy (busy: a process spinning on one "
          f"core of {cores}, started and stopped by this script) ===")
    counts = [key for key in policy[0]["rows_per_second"] if key != "auto"]
    rows = []
    for p in policy:
        speeds = p["rows_per_second"]
        best = max(counts, key=lambda key: speeds[key])
        ratio = speeds["auto"] / speeds[best]
        target = 1 / 1.2 if p["busy"] else 0.9
        other = p["other_processes_cpu_fraction"]
        load = "?" if other is None else f"{other:.0%}" + (" (not idle)" if not p["busy"] and other > DISTURBED else "")
        rows.append([p["scenario"], "busy" if p["busy"] else "idle", *(f"{speeds[key]:,.0f}" for key in counts),
                     f"{speeds['auto']:,.0f}", p["auto_threads"], f"{ratio:.2f}x", f">= {target:.2f}x",
                     "meets target" if ratio >= target else "BELOW target", load])
    headers = ["", "machine", *(f"{key} thread{'s' if key != '1' else ''}" for key in counts), "auto", "auto used",
               "auto/best", "target", "", "other CPU use"]
    print("nnctl training throughput, samples/s; the fixed counts and auto take turns; medians of the repeats")
    print(format_table(headers, rows, left=2))
    print("  targets: auto within 10 % of the best fixed count idle, within 1.2x of it busy.  \"other CPU use\": the share")
    print(f"  of the machine's CPU time other processes used, the burner's included (the burner alone: {1 / cores:.0%})")
    print()


# --- a busy machine: nnctl next to a process that keeps one core busy


class Burner:
    """A child process that spins on one core (``while True: pass``) for as long as the ``with`` block runs;
    it is killed on the way out, whatever happens inside."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.2)  # let it start spinning
        except BaseException:  # e.g. Ctrl-C right now: __exit__ would not run
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def measure_thread_policy(scenario: Scenario, data_path: Path, workdir: Path, thread_counts: list[int], repeats: int,
                          busy: bool) -> dict:
    """nnctl at each fixed thread count and at ``auto``, taking turns (so that noise from elsewhere hits them alike),
    on the machine as it is or while a Burner keeps one core busy: the median rows/s of each, the threads auto used,
    and the share of the CPUs other processes used (the burner's included)."""
    speeds: dict[str, list[float]] = {str(t): [] for t in thread_counts}
    speeds["auto"] = []
    chosen = set()
    with Burner() if busy else contextlib.nullcontext():
        load = OtherLoad()
        for _ in range(repeats):
            for threads in thread_counts:
                speeds[str(threads)].append(nnctl_throughput(scenario, data_path, workdir, threads).rows_per_second)
            speed, used = nnctl_auto_once(scenario, data_path, workdir)
            speeds["auto"].append(speed)
            chosen.add(used)
        other = load.fraction()
    return {
        "scenario": scenario.key,
        "busy": busy,
        "rows_per_second": {key: float(np.median(values)) for key, values in speeds.items()},
        "repeats": speeds,
        "auto_threads": "/".join(sorted(chosen)),
        "other_processes_cpu_fraction": other,
    }


# --- PyTorch


def torch_model(torch, scenario: Scenario):
    nn = torch.nn
    activation = {"relu": nn.ReLU, "tanh": nn.Tanh}[scenario.activation]
    layers, width = [], scenario.features
    for units in scenario.hidden:
        layers.append(nn.Linear(width, units))
        if scenario.batchnorm_dropout is not None:
            layers += [nn.BatchNorm1d(units), activation(), nn.Dropout(scenario.batchnorm_dropout)]
        else:
            layers.append(activation())
        width = units
    layers.append(nn.Linear(width, scenario.classes))
    return nn.Sequential(*layers)


def torch_throughput(scenario: Scenario, x: np.ndarray, y: np.ndarray, threads: int) -> Measurement:
    torch = optional_import("torch")
    if torch is None:
        return Measurement(note=NOT_INSTALLED)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = torch_model(torch, scenario)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=scenario.lr, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
        shuffle_rng = np.random.default_rng(0)
        n, batch = len(x), scenario.batch_size

        def epoch() -> float:
            order = torch.from_numpy(shuffle_rng.permutation(n))
            xs, ys = inputs[order], labels[order]  # one gather per epoch; batches are views, as in nnctl
            total_loss, correct = 0.0, 0
            for start in range(0, n, batch):
                xb, yb = xs[start : start + batch], ys[start : start + batch]
                if len(xb) == 1 and scenario.batchnorm_dropout is not None:
                    continue  # as nnctl: batch norm needs two rows
                optimizer.zero_grad(set_to_none=True)
                output = model(xb)
                loss = loss_fn(output, yb)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(xb)
                correct += int((output.argmax(dim=1) == yb).sum())
            return total_loss / n

        for _ in range(scenario.warmup_epochs):
            epoch()
        started = time.perf_counter()
        for _ in range(scenario.measured_epochs):
            loss = epoch()
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    return Measurement.of(n * scenario.measured_epochs, seconds, loss)


# --- scikit-learn


def sklearn_throughput(scenario: Scenario, x: np.ndarray, y: np.ndarray, threads: int) -> Measurement:
    if scenario.batchnorm_dropout is not None:
        return Measurement(note="n/a (MLPClassifier has no batchnorm/dropout)")
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return Measurement(note=NOT_INSTALLED)
    model = MLPClassifier(
        hidden_layer_sizes=scenario.hidden,
        activation=scenario.activation,
        solver="sgd",
        learning_rate="constant",
        learning_rate_init=scenario.lr,
        momentum=0.9,
        nesterovs_momentum=False,
        alpha=0.0,
        batch_size=scenario.batch_size,
        shuffle=True,
        max_iter=scenario.warmup_epochs,
        tol=0.0,
        n_iter_no_change=10**9,
        early_stopping=False,
        warm_start=True,
        random_state=0,
    )
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # "maximum iterations reached": on purpose
        model.fit(x, y)  # warm-up epoch(s); also initialises the weights
        model.set_params(max_iter=scenario.measured_epochs)
        started = time.perf_counter()
        model.fit(x, y)  # warm_start: continues from the warm-up's weights
        seconds = time.perf_counter() - started
    if model.n_iter_ != scenario.measured_epochs:
        raise RuntimeError(f"MLPClassifier ran {model.n_iter_} epochs, expected {scenario.measured_epochs}")
    if model.coefs_[0].dtype != np.float32:
        warnings.warn(f"MLPClassifier trained in {model.coefs_[0].dtype}, not float32", stacklevel=2)
    return Measurement.of(len(x) * scenario.measured_epochs, seconds, float(model.loss_))


# --- the GEMM floor


def gemm_floor_throughput(scenario: Scenario, x: np.ndarray, threads: int) -> Measurement:
    """One epoch of the forward and backward matrix products of the MLP alone, outputs preallocated."""
    if scenario.batchnorm_dropout is not None or scenario.key != "A":
        return Measurement(note="n/a")
    rng = np.random.default_rng(1)
    sizes = (scenario.features, *scenario.hidden, scenario.classes)
    weights = [rng.normal(0, 1 / math.sqrt(i), (i, o)).astype(np.float32) for i, o in zip(sizes[:-1], sizes[1:])]
    weight_grads = [np.empty_like(w) for w in weights]
    n, batch = len(x), scenario.batch_size
    buffers = {}  # per batch size: layer outputs h, upstream gradients g, input gradients dx
    for rows in {batch, n % batch or batch}:
        buffers[rows] = (
            [np.empty((rows, o), np.float32) for o in sizes[1:]],
            [rng.normal(0, 0.01, (rows, o)).astype(np.float32) for o in sizes[1:]],
            [np.empty((rows, i), np.float32) for i in sizes[1:-1]],
        )

    def epoch() -> None:
        for start in range(0, n, batch):
            xb = x[start : start + batch]
            h, g, dx = buffers[len(xb)]
            inputs = [xb, *h[:-1]]
            for layer, w in enumerate(weights):  # forward: x@W1, h1@W2, h2@W3
                np.matmul(inputs[layer], w, out=h[layer])
            for layer in reversed(range(len(weights))):  # backward: dW = h.T@g; dx = g@W.T (not for layer 0)
                np.matmul(inputs[layer].T, g[layer], out=weight_grads[layer])
                if layer > 0:
                    np.matmul(g[layer], weights[layer].T, out=dx[layer - 1])

    with threadpool_limits(limits=threads):
        for _ in range(scenario.warmup_epochs):
            epoch()
        started = time.perf_counter()
        for _ in range(scenario.measured_epochs):
            epoch()
        seconds = time.perf_counter() - started
    return Measurement.of(n * scenario.measured_epochs, seconds)


# --- peak memory


def nnctl_peak_rss(scenario: Scenario, data_path: Path, workdir: Path, threads: int, dataset_bytes: int) -> dict:
    """Train nnctl on ``scenario`` in a child process (this script with --rss-child) and read its peak RSS."""
    config_path = write_nnctl_config(scenario, data_path, workdir, threads)
    command = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(config_path), str(workdir / "rss-runs"),
               "--threads", str(threads)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the nnctl child process failed:\n{completed.stderr}")
    child = json.loads(completed.stdout.strip().splitlines()[-1])
    children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    # The child's own VmHWM is the number.  RUSAGE_CHILDREN's ru_maxrss is shown but not used: Python's subprocess
    # starts the child with vfork, and Linux carries the pre-exec (parent's) peak RSS into the child's maxrss,
    # so it is at least this process's RSS at spawn time (which holds the dataset), not the child's own.
    peak = child["peak_rss_bytes"]
    target = 1.5 * dataset_bytes + 150 * MB
    return {
        "scenario": scenario.key,
        "threads": threads,
        "dataset_bytes": dataset_bytes,
        "rss_after_imports_bytes": child["rss_after_imports_bytes"],
        "peak_rss_bytes": peak,
        "peak_rss_source": child["source"],
        "rusage_children_maxrss_bytes": children_maxrss,
        "target_bytes": target,
        "meets_target": peak <= target,
    }


def proc_status(field_name: str) -> int | None:
    """A field of /proc/self/status in bytes (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_child(config_path: str, out_dir: str, threads: int) -> None:
    """The child process of nnctl_peak_rss: imports nnctl only (not torch or scikit-learn), trains, reports."""
    import nnctl.training  # noqa: F401 - counted in the baseline

    after_imports = proc_status("VmRSS")
    with threadpool_limits(limits=threads):
        run_nnctl(Path(config_path), Path(out_dir))
    peak, source = proc_status("VmHWM"), "VmHWM"
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        source = "ru_maxrss"
    print(json.dumps({"peak_rss_bytes": peak, "source": source, "rss_after_imports_bytes": after_imports}))


# ---------------------------------------------------------------------------------------- environment


class OtherLoad:
    """How much CPU other processes used while we measured (Linux /proc; None elsewhere).

    Throughput on a 2-core machine is only meaningful when nothing else runs: this reads the machine's busy
    time (/proc/stat) and this process's own CPU time, with its waited-for children (/proc/self/stat),
    at start and at ``fraction()``; the difference is everyone else's share of the CPUs."""

    def __init__(self):
        self.start = self._read()
        self.wall = time.monotonic()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
            busy = sum(cpu[:3]) + sum(cpu[5:8])  # user nice system + irq softirq steal (not idle, iowait)
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            mine = sum(int(v) for v in own[11:15])  # utime stime cutime cstime
            return busy, mine
        except (OSError, ValueError, IndexError):
            return None

    def fraction(self) -> float | None:
        """Other processes' share of all CPUs' time since construction.  The counters tick 100 times a
        second, so over short intervals a few ticks of accounting jitter are ignored."""
        end = self._read()
        if self.start is None or end is None:
            return None
        ticks = os.sysconf("SC_CLK_TCK") * (time.monotonic() - self.wall) * (os.cpu_count() or 1)
        other = (end[0] - self.start[0]) - (end[1] - self.start[1])
        if other <= JITTER_TICKS or ticks <= 0:
            return 0.0
        return other / ticks


def auto_detected_openblas_kernel() -> str | None:
    """The kernel NumPy's OpenBLAS picks without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (a child process)."""
    if not any(os.environ.get(name) for name in SLOW_ENV_VARS):
        return None
    env = {k: v for k, v in os.environ.items() if k not in SLOW_ENV_VARS}
    code = (
        "import numpy, json, threadpoolctl; "
        "print(json.dumps([i.get('architecture') for i in threadpoolctl.threadpool_info() "
        "if i.get('internal_api') == 'openblas' and 'numpy' in i.get('filepath', '')]))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        kernels = json.loads(out.stdout)
        return ", ".join(str(k) for k in kernels) or None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def nnctl_source() -> str:
    """Where nnctl is imported from, and its git commit (with "+ local changes") when that is a checkout:
    nnctl changes quickly, so a result says which code it measured."""
    import nnctl

    folder = Path(nnctl.__file__).resolve().parent
    try:
        git = ["git", "-C", str(folder)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return str(folder)
    if commit.returncode != 0:
        return str(folder)
    return f"{folder} at commit {commit.stdout.strip()}{' + local changes' if dirty.stdout.strip() else ''}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    torch = optional_import("torch")
    sklearn = optional_import("sklearn")
    if sklearn is not None:
        import sklearn.neural_network  # noqa: F401 - loads scipy's BLAS too, so threadpool_info lists it
    import nnctl

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "nnctl": nnctl.__version__,
        "nnctl_source": nnctl_source(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else NOT_INSTALLED,
        "sklearn": sklearn.__version__ if sklearn else NOT_INSTALLED,
        "env": {name: os.environ.get(name) for name in ENV_VARS},
        "threadpools": [
            {k: pool.get(k) for k in ("internal_api", "prefix", "version", "architecture", "threading_layer", "num_threads", "filepath")}
            for pool in threadpool_info()
        ],
    }
    if torch is not None:
        config = torch.__config__.show()
        blas = next((part.split("=", 1)[1] for part in config.replace(",", "\n").split() if part.startswith("BLAS_INFO=")), "?")
        capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
        mkl = next((line.strip(" -") for line in config.splitlines() if "Math Kernel Library" in line), "")
        info["torch_blas"] = {"blas": blas, "cpu_capability": capability, "mkl": mkl, "mkldnn": torch.backends.mkldnn.is_available()}
    info["openblas_kernel_without_env_vars"] = auto_detected_openblas_kernel()
    return info


def print_environment(info: dict) -> None:
    print("environment")
    print(f"  python {info['python']} on {info['platform']}; CPU {info['cpu']} ({info['cpus']} logical CPUs)")
    print(f"  nnctl {info['nnctl']}, numpy {info['numpy']}, torch {info['torch']}, scikit-learn {info['sklearn']}")
    print(f"  nnctl from {info['nnctl_source']}")
    print("  environment variables:")
    for name, value in info["env"].items():
        print(f"    {name:22} {'set to ' + repr(value) if value is not None else 'not set'}")
    print("  thread pools (threadpoolctl.threadpool_info()):")
    for pool in info["threadpools"]:
        kernel = f", kernel {pool['architecture']}" if pool.get("architecture") else ""
        version = f" {pool['version']}" if pool.get("version") else ""
        print(f"    {pool['internal_api']}{version}{kernel}, {pool['num_threads']} threads: {Path(pool['filepath']).name}"
              f" ({owner_of(pool['filepath'])})")
    if "torch_blas" in info:
        tb = info["torch_blas"]
        print(f"  torch: BLAS {tb['blas']} (linked into torch, invisible to threadpoolctl: {tb['mkl']}), "
              f"CPU capability {tb['cpu_capability']}, oneDNN {'available' if tb['mkldnn'] else 'not available'}")
    slow = [name for name in SLOW_ENV_VARS if info["env"].get(name)]
    if slow:
        auto = info.get("openblas_kernel_without_env_vars")
        print(f"  NOTE: {' and '.join(slow)} {'is' if len(slow) == 1 else 'are'} set: NumPy's OpenBLAS (so nnctl, scikit-learn"
              f" and the GEMM floor, not torch) runs with a forced kernel/cache size"
              + (f"; without them it would pick the {auto} kernel." if auto else "."))
        print(f"        To measure without them: env {' '.join('-u ' + n for n in slow)} python benchmarks/bench.py")
    print()


def owner_of(filepath: str) -> str:
    """Which package a shared library belongs to (numpy.libs -> numpy)."""
    parts = Path(filepath).parts
    for part in reversed(parts[:-1]):
        if part.endswith(".libs"):
            return part[: -len(".libs")]
        if part in ("numpy", "scipy", "torch", "sklearn"):
            return part
    return "?"


# ------------------------------------------------------------------------------------------- reporting

COLUMN_NAMES = {"nnctl": "nnctl", "torch": "torch", "sklearn": "sklearn", "gemm": "GEMM floor"}


def compute_ratios(result: ScenarioResult, scenario: Scenario) -> None:
    for column, target in scenario.targets:
        other: Measurement = getattr(result, column)
        if result.nnctl.rows_per_second and other.rows_per_second:
            ratio = result.nnctl.rows_per_second / other.rows_per_second
            result.ratios[column] = {"ratio": ratio, "target": target, "meets_target": ratio >= target}
        else:
            result.ratios[column] = {"ratio": None, "target": target, "meets_target": None, "note": other.note}


def format_table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Columns sized to their content; the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for r in [headers, *rows]:
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  " + "  ".join(cells).rstrip())
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cell(m: Measurement) -> str:
    return (f"{m.rows_per_second:,.0f}" + (" *" if m.disturbed else "")) if m.rows_per_second else m.note


def print_thread_table(
    threads: int, results: list[ScenarioResult], by_key: dict[str, Scenario], repeats: int, other_load: float | None
) -> None:
    print(f"=== {threads} thread{'s' if threads > 1 else ''} (BLAS threads for numpy/sklearn, torch.set_num_threads for torch) ===")
    rows = []
    for r in results:
        s = by_key[r.scenario]
        rows.append([f"{s.key} {s.title} {s.shape} {s.activation}", *(cell(getattr(r, c)) for c in COLUMN_NAMES)])
    print("training throughput, samples/s (higher is better)")
    print(format_table(["scenario", *COLUMN_NAMES.values()], rows))
    if repeats > 1:
        spreads = [(getattr(r, c).spread, f"{COLUMN_NAMES[c]} on {r.scenario}") for r in results for c in COLUMN_NAMES]
        worst = max(spreads)
        print(f"  medians of {repeats} repeats; largest spread (max - min) / median: {worst[0]:.0%} ({worst[1]})"
              + ("  -- a noisy machine: compare ratios with care" if worst[0] > 0.15 else ""))
    if any(getattr(r, c).disturbed for r in results for c in COLUMN_NAMES):
        print(f"  * other processes used more than {DISTURBED:.0%} of the CPUs during this measurement, "
              f"even after {RETRIES} retries: not reliable")
    notes = []
    for r in results:
        m = r.nnctl
        if m.whole_epoch_seconds and m.seconds:
            notes.append(f"{r.scenario} {m.rows / m.whole_epoch_seconds:,.0f} rows/s (train_seconds = {m.seconds / m.whole_epoch_seconds:.0%} of it)")
    if notes:
        print("  nnctl over whole epochs (shuffle, gather, steps, metrics; torch's and sklearn's timings are whole epochs):")
        print("    " + "; ".join(notes))
    if other_load is not None:
        retries = sum(getattr(r, c).retries for r in results for c in COLUMN_NAMES)
        disturbed = any(getattr(r, c).disturbed for r in results for c in COLUMN_NAMES)
        print(f"  other processes used {other_load:.0%} of the machine's CPU time while this table was measured"
              + (f"; {retries} measurement(s) taken while they used more than {DISTURBED:.0%} were redone" if retries else "")
              + ("  -- WARNING: some numbers are disturbed (*); rerun on an idle machine" if disturbed else ""))
    print()
    rows = []
    for r in results:
        for column, ratio in r.ratios.items():
            measured = f"{ratio['ratio']:.2f}x" if ratio["ratio"] is not None else "-"
            verdict = "" if ratio["meets_target"] is None else ("meets target" if ratio["meets_target"] else "BELOW target")
            rows.append([r.scenario, f"nnctl / {COLUMN_NAMES[column]}", measured, f">= {ratio['target']:g}x", verdict])
    print(format_table(["", "ratio", "measured", "target", ""], rows, left=2))
    print()
    losses = []
    for r in results:
        parts = [f"{name} {getattr(r, name).final_loss:.4f}" for name in ("nnctl", "torch", "sklearn")
                 if getattr(r, name).final_loss is not None]
        losses.append(f"  {r.scenario}: " + ", ".join(parts))
    print("last measured epoch's mean training loss (a sanity check that every framework learns):")
    print("\n".join(losses))
    print()


def print_memory(memory: dict) -> None:
    print(f"=== peak memory of nnctl on {memory['scenario']} (separate process, {memory['threads']} thread{'s' if memory['threads'] > 1 else ''}) ===")
    rows = [
        ["dataset (x float32 + y int64)", f"{memory['dataset_bytes'] / MB:,.1f} MB"],
        ["child RSS after importing nnctl", f"{memory['rss_after_imports_bytes'] / MB:,.1f} MB" if memory["rss_after_imports_bytes"] else "?"],
        [f"peak RSS of the child ({memory['peak_rss_source']})", f"{memory['peak_rss_bytes'] / MB:,.1f} MB"],
        ["(RUSAGE_CHILDREN ru_maxrss: not used, see note)", f"{memory['rusage_children_maxrss_bytes'] / MB:,.1f} MB"],
        ["target: 1.5 x dataset + 150 MB", f"{memory['target_bytes'] / MB:,.1f} MB"],
        ["peak / dataset", f"{memory['peak_rss_bytes'] / memory['dataset_bytes']:.2f}x"],
    ]
    print(format_table(["", "value"], rows))
    print(f"  {'meets target' if memory['meets_target'] else 'ABOVE target (uses more memory than the target)'}  (MB = 10^6 bytes)")
    print("  note: getrusage(RUSAGE_CHILDREN).ru_maxrss includes this (parent) process's RSS at spawn time -- subprocess")
    print("  uses vfork and Linux keeps the pre-exec peak -- so the child's own /proc/self/status VmHWM is the number.")
    print()


# ---------------------------------------------------------------------------------------------- main


def undisturbed(measure) -> Measurement:
    """``measure()``, run again (up to RETRIES times) while other processes took more than DISTURBED of the CPUs."""
    for attempt in range(RETRIES + 1):
        load = OtherLoad()
        m = measure()
        m.other_load, m.retries = load.fraction(), attempt
        if not m.rows_per_second or not m.disturbed:
            break
    return m


def measure_scenario(s: Scenario, x, y, path: Path, workdir: Path, threads: int, repeats: int) -> ScenarioResult:
    """Every framework on one scenario; with repeats > 1 the frameworks take turns (so that a burst of noise
    from elsewhere on the machine hits all of them alike) and each reports its median repeat."""
    runs: dict[str, list[Measurement]] = {name: [] for name in COLUMN_NAMES}
    for _ in range(repeats):
        runs["nnctl"].append(undisturbed(lambda: nnctl_throughput(s, path, workdir, threads)))
        runs["torch"].append(undisturbed(lambda: torch_throughput(s, x, y, threads)))
        runs["sklearn"].append(undisturbed(lambda: sklearn_throughput(s, x, y, threads)))
        runs["gemm"].append(undisturbed(lambda: gemm_floor_throughput(s, x, threads)))
    result = ScenarioResult(s.key, threads, **{name: Measurement.median_of(m) for name, m in runs.items()})
    compute_ratios(result, s)
    return result


def profile_nnctl(scenario: Scenario, data_path: Path, workdir: Path, threads: int, top: int = 15) -> None:
    """cProfile of nnctl's training loop on one scenario: the profiler runs from the Reporter's start() to its
    end(), which bracket the epochs (warm-up and measured), so loading the data and building the model are left out."""
    import cProfile
    import pstats

    from nnctl.runs import RunFolder
    from nnctl.training import Reporter

    profiler = cProfile.Profile()

    class Profiling(Reporter):
        def start(self, *args, **kwargs) -> None:
            profiler.enable()

        def end(self) -> None:
            profiler.disable()

    config_path = write_nnctl_config(scenario, data_path, workdir, threads)
    with threadpool_limits(limits=threads):
        result = run_nnctl(config_path, workdir / "profile-runs", Profiling())
    seconds = sum(row["train_seconds"] for row in RunFolder(result.run_dir).read_metrics())
    env = ", ".join(f"{name}={os.environ[name]}" for name in SLOW_ENV_VARS if name in os.environ) or "no OPENBLAS_* overrides"
    print(f"=== cProfile of nnctl's training loop on {scenario.key} ({scenario.title}, {scenario.rows:,} rows, "
          f"{scenario.warmup_epochs + scenario.measured_epochs} epochs), {threads} thread(s), {env} ===")
    print(f"nnctl from {nnctl_source()}")
    print(f"train_seconds of all epochs under the profiler: {seconds:.3f} s (cProfile slows Python-level calls)")
    stats = pstats.Stats(profiler)
    for order in ("cumulative", "tottime"):
        print(f"--- top {top} by {order} ---")
        stats.sort_stats(order).print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run (about a minute)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--repeat", type=int, metavar="N", help="measure each framework N times, report the median "
                        "(default 3; 1 with --quick)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every number to this JSON file")
    parser.add_argument("--profile", choices=["A", "B", "C"], help="print a cProfile of nnctl's training on one scenario, then exit")
    parser.add_argument("--rss-child", nargs=2, metavar=("CONFIG", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    repeats = args.repeat or (1 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeat takes a positive integer")
    if not thread_counts or min(thread_counts) < 1:
        parser.error("--threads takes positive integers, e.g. 1,2")
    if args.rss_child:
        rss_child(*args.rss_child, thread_counts[0])
        return 0

    all_scenarios = scenarios(args.quick)
    by_key = {s.key: s for s in all_scenarios}
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-") as tmp:
        workdir = Path(tmp)
        data: dict[str, tuple[np.ndarray, np.ndarray, Path]] = {}
        for s in all_scenarios:
            if s.data_key not in data:
                x, y = make_data(s)
                path = workdir / f"{s.data_key}.npz"
                np.savez(path, x=x, y=y)
                data[s.data_key] = (x, y, path)

        if args.profile:
            s = by_key[args.profile]
            profile_nnctl(s, data[s.data_key][2], workdir, thread_counts[0])
            return 0

        started = time.perf_counter()
        # the memory child runs first, before torch and scikit-learn are imported here
        a = by_key["A"]
        x_a, y_a, path_a = data[a.data_key]
        memory = nnctl_peak_rss(a, path_a, workdir, max(thread_counts), x_a.nbytes + y_a.nbytes)

        info = environment()
        print(f"nnctl training benchmark{' (--quick: smaller sizes)' if args.quick else ''}")
        print_environment(info)
        print("scenarios:")
        for s in all_scenarios:
            x, y, _ = data[s.data_key]
            extra = f", batchnorm + dropout {s.batchnorm_dropout}" if s.batchnorm_dropout is not None else ""
            print(f"  {s.key}: {s.title}, {s.shape} {s.activation}{extra}; {s.rows:,} rows x {s.features} float32 "
                  f"({(x.nbytes + y.nbytes) / MB:,.1f} MB), batch {s.batch_size}, SGD lr {s.lr} momentum 0.9; "
                  f"{s.warmup_epochs} warm-up epoch, {s.measured_epochs} measured epoch{'s' if s.measured_epochs > 1 else ''}")
        print(f"each measurement: the median of {repeats} repeat{'s' if repeats > 1 else ''} (--repeat)")
        print()

        report = {"quick": args.quick, "repeats": repeats, "environment": info, "scenarios": [asdict(s) for s in all_scenarios], "results": [], "memory": memory}
        for threads in thread_counts:
            results = []
            load = OtherLoad()
            for s in all_scenarios:
                x, y, path = data[s.data_key]
                results.append(measure_scenario(s, x, y, path, workdir, threads, repeats))
            other = load.fraction()
            print_thread_table(threads, results, by_key, repeats, other)
            report["results"] += [asdict(r) for r in results]
            report.setdefault("other_processes_cpu_fraction", {})[threads] = other
        if nnctl_has_threads_key():
            # at least 3 rounds even with --quick: one short run per setting says little on a shared machine
            policy = [measure_thread_policy(by_key[key], data[by_key[key].data_key][2], workdir, thread_counts, max(repeats, 3), busy)
                      for busy in (False, True) for key in ("A", "B")]
            report["thread_policy"] = policy
            print_thread_policy(policy)
        print_memory(memory)
        print(f"benchmark wall time {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

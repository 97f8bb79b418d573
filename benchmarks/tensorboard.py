"""What ``training.loggers: [tensorboard]`` costs: a run's time with the logger against without it, and the time
spent inside the logger's calls.

    python benchmarks/tensorboard.py               # about a minute on 2 cores
    python benchmarks/tensorboard.py --repeats 7

For each config, ``nnctl.training.run_training`` in-process (one BLAS thread, the whole run as a user waits for
it: data, every epoch, checkpoints, summary) without and with the logger, in turns, ``--repeats`` times; prints
the median CPU times of the process and their ratio (on a shared machine wall times are noisy; the wall-time
ratio is printed too), and the median time inside the logger's methods per epoch and as a share of the run.
tensorboardX is imported before the first run: its import (about 40 ms) is paid once per process.
The logger's work per epoch is one event with the row's scalars; every ``checkpoint_every`` epochs (10) also a
histogram of every model array and gradient.  Needs ``pip install -e ".[tensorboard]"``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "spiral (2-16-16-2 tanh, 250 rows, batch 10, 300 epochs)": REPO / "configs" / "spiral.yaml",
    "digits (64-128-10 ReLU, 1 348 rows, batch 32, 50 epochs)": REPO / "configs" / "digits_mlp.yaml",
}


class LoggerClock:
    """Adds up the time spent inside ``TensorBoardLogger``'s methods (wrapped for this process)."""

    def __init__(self):
        from nnctl.loggers import TensorBoardLogger

        self.seconds = 0.0
        for name in ("start", "epoch", "flush", "close"):
            setattr(TensorBoardLogger, name, self.timed(getattr(TensorBoardLogger, name)))

    def timed(self, method):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return wrapper


def run_times(config: Path, overrides: list[str]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one run."""
    from nnctl.config import load_config
    from nnctl.training import run_training

    loaded = load_config(config, ["training.threads=1", *overrides])
    with tempfile.TemporaryDirectory() as out:
        cpu, wall = time.process_time(), time.perf_counter()
        run_training(loaded, Path(out))
        return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from nnctl.config import load_config
    from nnctl.loggers import import_tensorboardx

    import_tensorboardx()
    clock = LoggerClock()
    for name, config in CONFIGS.items():
        epochs = load_config(config).config.training.epochs
        run_times(config, [])  # warm-up: imports, caches
        without, with_logger, inside = [], [], []
        for _ in range(args.repeats):
            without.append(run_times(config, []))
            clock.seconds = 0.0
            with_logger.append(run_times(config, ["training.loggers=[tensorboard]"]))
            inside.append(clock.seconds)
        (cpu_a, wall_a), (cpu_b, wall_b) = ([statistics.median(t[i] for t in times) for i in (0, 1)] for times in (without, with_logger))
        share = statistics.median(s / wall for s, (_, wall) in zip(inside, with_logger))
        print(
            f"{name}: CPU {cpu_a:.3f} s without, {cpu_b:.3f} s with the logger: x{cpu_b / cpu_a:.3f} (wall x{wall_b / wall_a:.3f}); "
            f"inside the logger {statistics.median(inside) / epochs * 1e6:.0f} µs per epoch, {share:.1%} of the run"
        )


if __name__ == "__main__":
    main()

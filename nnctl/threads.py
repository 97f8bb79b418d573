"""How many BLAS threads training uses (``training.threads``), and what ``auto`` means.

``training.threads: N`` runs NumPy's BLAS on N threads while training.  ``auto`` (the default) follows the
machine's load: it uses every core this process may run on while no other process keeps one busy, and leaves
a core to each process that does -- deciding before the first step, then looking again every AUTO_INTERVAL
seconds.  A model whose largest product per batch is below AUTO_THREADS_WORK multiply-adds (a Playground-size
network) always uses one thread: a second one does not pay for itself there.

Why auto must watch the load: a multithreaded BLAS waits for all its threads at every step of a product, so
when another process takes one of two cores, training on 2 threads gets several times slower than on 1
(issue #11: 4.7-8.6 s against 0.28-0.37 s).

The price: BLAS results differ in their last bits between thread counts.  A run repeats bit for bit at a fixed
``threads: N``, and with ``auto`` whenever auto made the same choices (e.g. an idle machine: every core
throughout); run.json's ``auto_threads`` says which counts a run used and how often auto changed.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

#: multiply-adds in the largest layer's product per batch below which ``auto`` is one thread (an
#: MNIST-size layer, 784 x 256 at batch 128, has 2.6e7; the Playground's 8 x 8 at batch 10, 640)
AUTO_THREADS_WORK = 1_000_000
#: seconds between two looks at the machine's load while training with ``auto``: also about how long a
#: burst of load elsewhere can slow a 2-thread step before auto gives up the core
AUTO_INTERVAL = 0.25
#: seconds of the first look, before training starts
AUTO_FIRST_LOOK = 0.1


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve(setting: str | int, work: int) -> str | int:
    """``training.threads`` for a model whose largest product per batch has ``work`` multiply-adds: a count
    stays as it is; auto stays auto, except that it is 1 for a small model or a one-core machine."""
    if setting != "auto":
        return int(setting)
    return "auto" if work >= AUTO_THREADS_WORK and cores() > 1 else 1


def threads_for_load(cores: int, busy_elsewhere: float, current: int) -> int:
    """Auto's choice when other processes keep ``busy_elsewhere`` cores' worth of CPU busy: the cores they
    leave, at least one.  A core counts as taken when they use more than 40 % of it (a BLAS thread that
    has to share its core holds up the others), and as free again only below 15 %, so that a load near the
    limit, or the noise of measuring it over AUTO_INTERVAL, does not switch back and forth."""
    fewer = max(1, cores - int(busy_elsewhere + 0.6))
    more = max(1, cores - int(busy_elsewhere + 0.85))
    if fewer < current:
        return fewer
    return min(max(more, current), cores)


class CpuClock:
    """How busy other processes keep this process's cores: the busy time of those cores (/proc/stat) minus
    this process's own CPU time, between two readings.  Linux only; elsewhere it is unknown (None)."""

    def __init__(self):
        self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)} if hasattr(os, "sched_getaffinity") else set()
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self.read()

    def read(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy CPU seconds of our cores, our own CPU seconds), or None without /proc/stat."""
        try:
            with open("/proc/stat") as handle:
                lines = [line.split() for line in handle if line.startswith("cpu")]
            busy = 0
            for fields in lines:
                if fields[0] in self.cpus:
                    ticks = [int(v) for v in fields[1:9]]
                    busy += sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        except (OSError, ValueError, IndexError):
            return None
        return time.monotonic(), busy / self.tick, time.process_time()

    def busy_elsewhere(self) -> float | None:
        """Cores' worth of CPU that other processes used since the last call (or since construction)."""
        now = self.read()
        last, self.last = self.last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])


class LoadWatcher:
    """``auto``: a daemon thread that sets NumPy's BLAS threads from the load, first before training starts,
    then every AUTO_INTERVAL seconds.  It is the one thread that changes the BLAS limits while it runs
    (threadpoolctl lets one thread control OpenBLAS's process-wide pool) and puts them back when it stops."""

    def __init__(self, interval: float = AUTO_INTERVAL, first_look: float = AUTO_FIRST_LOOK):
        self.interval, self.first_look = interval, first_look
        self.cores = cores()
        self.threads = self.cores
        self.seconds: dict[int, float] = {}  # how long each count was in use
        self.changes = 0
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="nnctl-load-watcher", daemon=True)

    def watch(self) -> None:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        clock = CpuClock()
        self.stopped.wait(self.first_look)
        self.threads = self.decide(clock, self.cores)
        since = time.monotonic()
        try:
            with controller.limit(limits=self.threads):  # restores the original limits on the way out
                in_effect = {lib["num_threads"] for lib in controller.info() if lib["user_api"] == "blas"}
                if in_effect and in_effect != {self.threads}:  # another thread holds the limits (an outer
                    self.threads = max(in_effect)  # threadpool_limits): they stay as it set them
                    self.started.set()
                    self.stopped.wait()
                    return
                self.started.set()
                while not self.stopped.wait(self.interval):
                    threads = self.decide(clock, self.threads)
                    if threads != self.threads:
                        controller.limit(limits=threads)
                        now = time.monotonic()
                        self.seconds[self.threads] = self.seconds.get(self.threads, 0.0) + now - since
                        self.threads, since, self.changes = threads, now, self.changes + 1
        finally:
            self.seconds[self.threads] = self.seconds.get(self.threads, 0.0) + time.monotonic() - since
            self.started.set()

    def decide(self, clock: CpuClock, current: int) -> int:
        busy = clock.busy_elsewhere()
        return current if busy is None else threads_for_load(self.cores, busy, current)

    def __enter__(self):
        self.thread.start()
        self.started.wait()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()

    def record(self) -> dict:
        """For run.json: the counts used, with seconds each, and how often auto changed the count."""
        return {"seconds": {str(n): round(s, 1) for n, s in sorted(self.seconds.items())}, "changes": self.changes}


@contextmanager
def training_threads(setting: str | int, run=None):
    """BLAS threads while training: ``setting`` of them, or with auto as many as the load leaves (LoadWatcher).
    With auto and a ``run`` (a RunFolder), run.json gets ``auto_threads``, added up over resumes."""
    from threadpoolctl import threadpool_limits

    if setting != "auto":
        with threadpool_limits(int(setting)):
            yield
        return
    watcher = LoadWatcher()
    try:
        with watcher:
            yield
    finally:
        if run is not None:
            _record(run, watcher.record())


def _record(run, used: dict) -> None:
    try:
        before = run.read_run_info().get("auto_threads") or {"seconds": {}, "changes": 0}
        seconds = dict(before["seconds"])
        for n, s in used["seconds"].items():
            seconds[n] = round(seconds.get(n, 0.0) + s, 1)
        run.update_run_info(auto_threads={"seconds": dict(sorted(seconds.items())), "changes": before["changes"] + used["changes"]})
    except (OSError, ValueError, KeyError, TypeError):
        pass  # e.g. a full disk: the run's own outcome matters more than this note

"""Train a population: several runs of one network shape at once, each bit for bit what ``nnctl train`` gives.

Every member is an ordinary ``Trainer`` with its own config, data, random streams, run folder, metrics,
checkpoints and summary.  Only the minibatch steps are shared: the members' parameters live in one stacked
array (``engine/stacked.py``), and each step is one forward, one backward and one optimizer update for all of
them, on each member's own batch.  Each member's model arrays are views of its share, so its metrics rows,
checkpoints, best-epoch tracking, early stopping and test score are computed by its own ``Trainer``, as alone.

A member leaves the population when its run ends (all epochs, early stopping, divergence) or when something
asks it to stop (a sweep's pruner writes ``stop-requested`` into its run folder: it checkpoints and ends as
interrupted at the end of the epoch, as a SIGTERM would end it alone); the others go on with their numbers
untouched.  ``population_key`` says which runs can be stacked together.
"""

from __future__ import annotations

import time

import numpy as np

from nnctl.config import ExperimentConfig
from nnctl.engine import stacked
from nnctl.engine.layers import BatchNorm
from nnctl.engine.model import Sequential
from nnctl.runs import FileWriter
from nnctl.training import EPOCH_GATHER_BYTES, EpochProgress, Interrupted, RunResult, StopOnSignal, Trainer


def population_key(config: ExperimentConfig) -> tuple | None:
    """What runs must share to be trained as one population (None: this run trains alone).  Beyond the shape
    (layer types and sizes, loss, batch size, epochs, data), a term a single network skips when its rate is
    zero (dropout, L1, L2, momentum, weight decay, clipping) must be on for all members or off for all:
    skipping it changes what is drawn or stored."""
    model, training, optimizer = config.model, config.training, config.optimizer
    if config.is_classic or getattr(model, "type", None) != "mlp" or training.on_nonfinite != "stop":
        return None
    if any(layer.type == "maxout" for layer in model.layers):
        return None
    # not the activations: members with different ones each get theirs (stacked.MemberActivations)
    layers = tuple(
        (layer.type, getattr(layer, "units", None), getattr(layer, "momentum", None), getattr(layer, "eps", None), getattr(layer, "rate", 0) > 0)
        for layer in model.layers
    )  # fmt: skip
    # the data's shape (which dataset, how many rows and features, how split); not its seed, noise or augmentation
    # strengths, which change only the numbers each member gathers for itself
    data = config.data.model_dump(exclude={"seed", "noise", "augment"})
    augment = config.data.augment
    data["augment"] = (bool(augment.noise_std), augment.shift, augment.rotate, augment.flip, augment.cutout)
    switches = (
        optimizer.name, bool(getattr(optimizer, "momentum", 0)), getattr(optimizer, "nesterov", False), bool(optimizer.weight_decay),
        bool(model.regularization.l1), bool(model.regularization.l2), training.grad_clip is not None, training.shuffle,
    )  # fmt: skip
    return (layers, config.loss, training.batch_size, training.epochs, repr(data), switches)


WRITER_THREADS = 8


def activations_of(member: Trainer) -> tuple[str, ...]:
    return tuple(str(getattr(layer, "activation", layer)) for layer in member.config.model.layers)


class Population:
    """Members trained stacked; ``fit`` returns each member's ``RunResult`` in order."""

    def __init__(self, members: list[Trainer]):
        if not members:
            raise ValueError("a population needs members")
        keys = {population_key(member.config) for member in members}
        if None in keys or len(keys) > 1:
            raise ValueError("these runs cannot be trained as one population (see population_key)")
        self.members = members
        self.active: list[Trainer] = []  # the members the stacked arrays hold now
        self.diverged: dict[int, dict] = {}  # an interrupted epoch: the rows of the members whose loss was not finite
        self.stop_signal: int | None = None  # set by a SIGINT / SIGTERM (training.StopOnSignal)
        # the members' checkpoints are written in the background, where their fsyncs overlap; a member's
        # summary still waits for its checkpoints (Trainer.finish)
        self.writer = FileWriter(threads=WRITER_THREADS)
        for member in members:
            member.writer = self.writer

    def bind(self, active: list[Trainer]) -> None:
        """Stack the active members' current arrays and point their models and optimizers at their shares."""
        self.active = active
        models = [member.model for member in active]
        old = [(member.optimizer.state[0], member.optimizer.steps) for member in active]
        self.model = Sequential(stacked.stack_layers(models))
        self.params, self.grads = stacked.population_view(self.model, models)
        self.optimizer = stacked.stack_optimizer([member.config.optimizer.model_dump() for member in active], self.params, self.grads)
        self.optimizer.steps = old[0][1]
        for p, (member, (state, _)) in enumerate(zip(active, old)):
            for slot, value in state.items():
                self.optimizer.state[0][slot][p] = value
                member.optimizer.state[0][slot] = self.optimizer.state[0][slot][p]
            member.optimizer.params, member.optimizer.grads = [self.params[p]], [self.grads[p]]
        self.weights = [layer.params["weight"] for layer in self.model.layers if isinstance(layer, stacked.StackedDense)]
        self.weight_grads = [layer.grads["weight"] for layer in self.model.layers if isinstance(layer, stacked.StackedDense)]
        regularization = [member.config.model.regularization for member in active]
        l1 = np.array([r.l1 for r in regularization]) if regularization[0].l1 else None
        l2 = np.array([r.l2 for r in regularization]) if regularization[0].l2 else None
        self.penalty = stacked.StackedPenalty(l1, l2, self.params.dtype) if l1 is not None or l2 is not None else None
        # the training rows, once per distinct data (members of one dataset share its arrays: run_population),
        # with the loss targets made once; each epoch gathers every member's rows in its own order
        shared: dict[int, list[int]] = {}
        for p, member in enumerate(active):
            shared.setdefault(id(member.train), []).append(p)
        self.training_rows = [(np.array(members), active[members[0]].train, active[members[0]].head.targets(active[members[0]].train.y)) for members in shared.values()]
        self.loss = stacked.STACKED_LOSSES[active[0].config.loss]()
        self.has_batchnorm = any(isinstance(layer, BatchNorm) for layer in active[0].model.layers)

    def fit(self) -> list[RunResult]:
        """Train until every member's run has ended; a signal stops them all as it stops a single run: each
        still training checkpoints where it is (inside its epoch) and can be resumed alone."""
        for member in self.members:
            if member.state.progress is not None:
                raise ValueError("a member stopped inside an epoch finishes that epoch alone (nnctl resume)")
        try:
            interrupted = self.train_members()
            results = [interrupted[id(member)] if id(member) in interrupted else member.end() for member in self.members]
        except BaseException:
            self.writer.close(errors=False)  # the error on its way out is the one to report
            raise
        self.writer.close()
        return results

    def train_members(self) -> dict[int, RunResult]:
        """The epochs: until every member has ended, or a signal stopped them (their results, by id)."""
        interrupted: dict[int, RunResult] = {}
        try:
            for member in self.members:
                member.start()
            # members with the same activations side by side: each activation is then one NumPy call per layer
            active = sorted((member for member in self.members if member.wants_epoch()), key=activations_of)
            while active:
                if active != self.active:
                    self.bind(active)
                try:
                    if self.stop_signal is not None:
                        raise Interrupted
                    rows = self.train_epoch()
                except Interrupted:
                    for p, member in enumerate(active):
                        if p in self.diverged:  # its loss was already not finite: its run ends as diverged (end, below)
                            member.accept_epoch(self.diverged[p])
                            continue
                        member.stop_signal = self.stop_signal
                        interrupted[id(member)] = member.interrupted()
                    break
                active = [member for member, row in zip(active, rows) if member.accept_epoch(row) and member.wants_epoch()]
                for member in [member for member in active if member.stop_requested_now()]:  # a pruner's request
                    interrupted[id(member)] = member.interrupted()
                    active.remove(member)
        finally:
            for member in self.members:
                member.close_logs()
        return interrupted

    def train_epoch(self) -> list[dict]:
        """One epoch of every active member, as each ``Trainer.train_epoch`` would train it: its own shuffled
        order, learning rate, augmentation and dropout draws.  A member whose batch loss is not finite stops
        counting there, as a single run stops; the population still carries it to the end of the epoch (its
        numbers never mix with the others'), then its run ends as alone: back to its last good epoch."""
        active, population = self.active, len(self.active)
        self.diverged = {}
        progress, lrs = [], []
        for member in active:
            n = len(member.train)
            order = member.shuffle_rng.permutation(n) if member.config.training.shuffle else np.arange(n)
            progress.append(EpochProgress(member.state.epoch + 1, order))
            lrs.append(member.schedule.lr(progress[-1].epoch) * member.state.lr_scale)
            member.optimizer.lr = lrs[-1]
        self.optimizer.lr = np.array(lrs, dtype=np.float64).reshape(-1, 1)
        orders = np.stack([member_progress.order for member_progress in progress])
        n, batch = orders.shape[1], active[0].config.training.batch_size
        whole_epoch = population * active[0].train.x.nbytes <= EPOCH_GATHER_BYTES  # else batch by batch (as a single run)
        if whole_epoch:
            x, y, targets = self._gather(orders)
        augmenting = any(member.augment.active for member in active)
        classification = active[0].task == "classification"
        # each member's running sums, as its EpochProgress would hold them: float64 sums of float(loss) * rows,
        # the same additions in the same order as a single run's.  Every member counts every batch until its batch
        # loss is not finite; then its run stops counting there, as alone (``stopped``: the rows and correct
        # answers it had counted before; its sum is its EpochProgress's already)
        total_loss, correct, seen = np.zeros(population), np.zeros(population, dtype=np.int64), 0
        stopped: dict[int, tuple[int, int]] = {}
        started = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, n, batch):
                if whole_epoch:
                    xb, yb, tb = x[:, start : start + batch], y[:, start : start + batch], targets[:, start : start + batch]
                else:
                    xb, yb, tb = self._gather(orders[:, start : start + batch])
                rows = xb.shape[1]
                if rows == 1 and self.has_batchnorm:
                    continue  # a batch of one row has no variance to normalize with
                if augmenting:
                    xb = np.stack([member.augment(xb[p]) if member.augment.active else xb[p] for p, member in enumerate(active)])
                output = self.model.forward(xb, training=True)
                losses = self.loss.forward(output, tb)
                finite = np.isfinite(losses)
                if not finite.all():
                    for p in map(int, np.flatnonzero(~finite)):
                        if p not in stopped:  # this member's run stops counting here, as alone
                            progress[p].total_loss, progress[p].next_start = float(losses[p]), start + rows
                            stopped[p] = (seen, int(correct[p]))
                self.model.backward(self.loss.backward(), input_grad=False)
                if self.penalty is not None:
                    self.penalty.add_gradient(self.weights, self.weight_grads)
                if active[0].grad_clip:
                    stacked.clip_global_norm([self.grads], active[0].grad_clip)
                self.optimizer.step()
                np.add(total_loss, np.multiply(losses, rows, dtype=np.float64), out=total_loss)
                seen += rows
                if classification:
                    correct += np.add.reduce(self._predictions(output) == yb, axis=1, dtype=np.int64)
                if self.stop_signal is not None and start + rows < n:  # as a single run: stop inside the epoch
                    seconds = (time.perf_counter() - started) / population
                    self._settle(progress, stopped, total_loss, seen, correct, start + rows)
                    self.diverged = {p: active[p].epoch_row(progress[p], lrs[p]) for p in stopped}  # their epoch ended
                    for p, member_progress in enumerate(progress):
                        if p not in stopped:
                            member_progress.seconds += seconds
                            active[p].state.progress = member_progress
                            active[p].optimizer.steps = self.optimizer.steps
                    raise Interrupted
        seconds = (time.perf_counter() - started) / population
        self._settle(progress, stopped, total_loss, seen, correct, n)
        for member in active:
            member.optimizer.steps = self.optimizer.steps
        for member_progress in progress:
            member_progress.seconds += seconds
        return [member.epoch_row(member_progress, lr) for member, member_progress, lr in zip(active, progress, lrs)]

    def _gather(self, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's rows in its order: x (P, rows, features), labels (P, rows), loss targets (P, rows, ...)."""
        parts = [(members, train.x[orders[members]], train.y[orders[members]], targets[orders[members]]) for members, train, targets in self.training_rows]
        if len(parts) == 1:
            return parts[0][1:]
        gathered = tuple(np.empty((len(orders),) + array.shape[1:], dtype=array.dtype) for array in parts[0][1:])
        for members, *arrays in parts:
            for whole, array in zip(gathered, arrays):
                whole[members] = array
        return gathered

    @staticmethod
    def _settle(progress: list[EpochProgress], stopped: dict, total_loss, seen: int, correct, next_start: int) -> None:
        """Write the running sums into each member's EpochProgress (a stopped member's as they stood at its stop)."""
        for p, member_progress in enumerate(progress):
            if p in stopped:
                member_progress.seen, member_progress.correct = stopped[p]
            else:
                member_progress.seen, member_progress.correct = seen, int(correct[p])
                member_progress.total_loss, member_progress.next_start = float(total_loss[p]), next_start

    def _predictions(self, output: np.ndarray) -> np.ndarray:
        head = self.active[0].head
        if output.shape[2] > 1:
            return output.argmax(axis=2)
        return np.stack([head.predict(member_output) for member_output in output])


#: files a member keeps open while it trains: its lock, its two metrics logs, a logger's event file, and spare
FILES_PER_MEMBER = 6


def allow_open_files(count: int) -> None:
    """Raise this process's soft limit on open files (often 1 024) towards the hard one when a population needs
    ``count`` more than the few a process holds anyway: 256 members would otherwise fail half-way through."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 64 + count
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


def run_population(loadeds: list, out_dir=None, command: list[str] | None = None, run_dirs: list | None = None) -> list[RunResult]:
    """What ``nnctl train`` does for each config, for all of them at once: a run folder each under ``out_dir``
    (or exactly ``run_dirs``), trained as one population, on one BLAS thread (what ``nnctl train`` uses for
    networks this small, and what a sweep's trials use)."""
    import contextlib
    import platform
    import sys

    from threadpoolctl import threadpool_limits

    import nnctl
    from nnctl import build
    from nnctl.data import Dataset, load_data
    from nnctl.loggers import check_installed
    from nnctl.runs import RunFolder, RunLock, atomic_write_text, create_exact_run_dir, create_run_dir
    from nnctl.training import Reporter, check_monitored_metrics_defined, now

    allow_open_files(FILES_PER_MEMBER * len(loadeds))
    trainers = []
    # members with the same data section (and seed) share one copy of the data, raw and prepared: memory does
    # not grow with the population
    datasets: dict[tuple, Dataset] = {}
    prepared: dict[tuple, Trainer] = {}
    with contextlib.ExitStack() as stack:
        for loaded in loadeds:
            config = loaded.config
            check_installed(loaded)
            key = (config.data.model_dump_json(), config.data_seed())
            if key not in datasets:
                datasets[key] = load_data(loaded)
            data = datasets[key]
            build.check_model_fits_data(loaded, data)
            check_monitored_metrics_defined(loaded, data)
            run = RunFolder(create_run_dir(out_dir, config.name) if run_dirs is None else create_exact_run_dir(run_dirs[len(trainers)]))
            stack.enter_context(RunLock(run.path))
            atomic_write_text(run.config_path, config.to_yaml())
            run.update_run_info(
                status="running", started=now(), command=command if command is not None else sys.argv, seed=config.seed,
                versions={"nnctl": nnctl.__version__, "numpy": np.__version__, "python": platform.python_version()},
                blas_threads=1, population=len(loadeds),
            )  # fmt: skip
            trainer = Trainer(loaded, data, run, Reporter())
            first = prepared.setdefault(key, trainer)
            trainer.train, trainer.val, trainer.test = first.train, first.val, first.test  # the same numbers, one copy
            trainers.append(trainer)
        population = Population(trainers)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), threadpool_limits(1), StopOnSignal(population):
            results = population.fit()
        for trainer, result in zip(trainers, results):
            trainer.run.update_run_info(remove=("message", "error"), status=result.status, ended=now(), **({"message": result.message} if result.message else {}))
    return results

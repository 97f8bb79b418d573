"""The command line.  Each command parses its arguments, calls one function of the package and prints.

Errors a user can cause (``NnctlError``) are printed as ``error: ...`` lines on stderr, and the
command exits with the error's code (2 for bad input) -- never with a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from nnctl.errors import EXIT_USAGE, NnctlError

app = typer.Typer(
    name="nnctl",
    help="Train neural networks from YAML experiment files on a pure-NumPy engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SetOption = typer.Option(
    None, "--set", "-s", metavar="KEY.PATH=VALUE", help="Override a config key (value parsed as YAML); repeatable."
)


def report_errors(command):
    """Turn a user error into 'error: ...' lines on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NnctlError as exc:
            for line in str(exc).splitlines():
                print(f"error: {line}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except OSError as exc:  # a full disk, a read-only folder: the file and the reason, not a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


def version_callback(value: bool):
    if value:
        import nnctl

        print(f"nnctl {nnctl.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Show the version."),
):
    pass


@app.command()
@report_errors
def train(
    config: Path = typer.Argument(..., help="The experiment's YAML file."),
    set_: Optional[List[str]] = SetOption,
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for run folders."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Run name (default: the config's name)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object with the results, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; print only the run folder."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder (CONFIG must match it)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write exactly this run folder (must not exist); for scripts."),
    force: bool = typer.Option(False, "--force", help="With --resume: allow a changed training.epochs/checkpoint_every."),
):
    """Train the model a config describes, and write a run folder."""
    from nnctl import console
    from nnctl.config import load_config
    from nnctl.training import run_training

    overrides = [*(set_ or []), *([f"name={json.dumps(name)}"] if name is not None else [])]
    loaded = load_config(config, overrides)
    reporter = console.make_reporter(json_output=json_output, quiet=quiet)
    if resume_dir is not None:
        result = _resume(resume_dir, loaded, force, reporter)
    else:
        result = run_training(loaded, out, reporter=reporter, command=sys.argv, run_dir=run_dir)
    _report_run(result, json_output, quiet)


@app.command()
@report_errors
def resume(
    run: Path = typer.Argument(..., help="The run folder to continue."),
    set_: Optional[List[str]] = SetOption,
    force: bool = typer.Option(False, "--force", help="Allow a changed training.epochs or training.checkpoint_every."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object with the results, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; print only the run folder."),
):
    """Continue an interrupted run from its last checkpoint; the result equals an uninterrupted run, bit for bit."""
    from nnctl import console
    from nnctl.config import load_config
    from nnctl.runs import is_run_dir

    if not is_run_dir(run):
        raise NnctlError(f"{run}: not a run folder (no run.json and config.yaml)")
    loaded = load_config(run / "config.yaml", set_ or [])
    result = _resume(run, loaded, force, console.make_reporter(json_output=json_output, quiet=quiet))
    _report_run(result, json_output, quiet)


def _resume(run_dir: Path, loaded, force: bool, reporter):
    """Refuse a config that differs from the run's, except the resume-safe keys with --force."""
    from nnctl.config import config_differences, load_config, resume_safe_keys
    from nnctl.runs import RunFolder, is_run_dir
    from nnctl.training import resume_training

    if not is_run_dir(run_dir):
        raise NnctlError(f"{run_dir}: not a run folder (no run.json and config.yaml)")
    saved = load_config(run_dir / "config.yaml").config
    differences = config_differences(saved, loaded.config)
    if differences:
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences)
        unsafe = [key for key, _, _ in differences if key not in resume_safe_keys(saved)]
        if not force:
            raise NnctlError(f"{run_dir}: the config differs from the run's ({listed}); resume with the run's own config, or --force to change {', '.join(sorted(resume_safe_keys(saved) - {'name'}))}")
        if unsafe:
            raise NnctlError(f"{run_dir}: refused even with --force: changing {', '.join(unsafe)} would make the run differ from an uninterrupted one ({listed})")
    return resume_training(loaded, RunFolder(run_dir), reporter, command=sys.argv)


def _report_run(result, json_output: bool, quiet: bool) -> None:
    from nnctl import console

    if json_output:
        print(console.json_line({"run_dir": str(result.run_dir), **result.summary}))
    elif quiet:
        print(result.run_dir)
    else:
        console.print_results(result.summary, result.run_dir, title="results")
    if result.message:
        kind = {"interrupted": "interrupted", "diverged": "error"}.get(result.status, "note")
        print(f"{kind}: {result.message}", file=sys.stderr)
    raise typer.Exit(result.exit_code)


@app.command("eval")
@report_errors
def eval_command(
    run: Path = typer.Argument(..., help="A run folder, or a checkpoint .npz file."),
    split: str = typer.Option("test", "--split", help="test, val or train."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object with the metrics."),
):
    """Score a run's checkpoint on a data split, recomputed exactly as in training."""
    from nnctl import console
    from nnctl.evaluation import evaluate_split, restore

    if split not in ("test", "val", "train"):
        raise NnctlError(f"--split: {split!r} is not allowed; allowed: test, val, train")
    restored = restore(run)
    metrics = evaluate_split(restored, split)
    if json_output:
        print(console.json_line({"checkpoint": str(restored.checkpoint), "split": split, **metrics}))
    else:
        print(f"checkpoint: {restored.checkpoint}")
        console.print_results(metrics, None, title=f"{split} metrics")


@app.command()
@report_errors
def validate(
    config: Path = typer.Argument(..., help="The experiment's YAML file."),
    set_: Optional[List[str]] = SetOption,
):
    """Check a config (and that its model fits its data); print it resolved, with every default filled in."""
    from nnctl import build
    from nnctl.config import load_config
    from nnctl.data import load_data

    loaded = load_config(config, set_ or [])
    data = load_data(loaded)
    build.check_model_fits_data(loaded, data)
    build.check_model_size(loaded, data.n_features)
    sys.stdout.write(loaded.config.to_yaml())


@app.command("gradcheck")
@report_errors
def gradcheck_command(
    config: Path = typer.Argument(..., help="The experiment's YAML file."),
    set_: Optional[List[str]] = SetOption,
    threshold: float = typer.Option(1e-6, "--threshold", help="Largest relative error that passes."),
    batch: int = typer.Option(8, "--batch", min=2, help="Rows of training data to check on (at least 2, for batch norm)."),
):
    """Check every parameter's backpropagated gradient against finite differences (float64)."""
    from rich.console import Console
    from rich.table import Table

    from nnctl.config import load_config
    from nnctl.gradcheck_run import gradcheck

    rows = gradcheck(load_config(config, set_ or []), batch=batch)
    table = Table(title=f"gradient check (centred differences, float64, {batch} rows)")
    for column in ("parameter", "shape", "entries", "relative error", ""):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for row in rows:
        ok = row.error < threshold
        table.add_row(row.name, "x".join(map(str, row.shape)), str(row.checked), f"{row.error:.2e}", "ok" if ok else "FAIL")
    Console().print(table)
    failed = [row.name for row in rows if not row.error < threshold]
    if failed:
        print(f"error: gradient check failed (relative error >= {threshold:g}) for: {', '.join(failed)}", file=sys.stderr)
        raise typer.Exit(1)


@app.command("predict")
@report_errors
def predict_command(
    run: Path = typer.Argument(..., help="A run folder, or a checkpoint .npz file."),
    input_file: Path = typer.Argument(..., metavar="INPUT", help="A CSV (the training columns) or an NPZ (array 'x')."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the CSV here instead of stdout."),
    proba: bool = typer.Option(False, "--proba", help="Add one probability column per class."),
    target: Optional[str] = typer.Option(
        None, "--target", help="Column/array with known targets (default: the training target, else label, target or y)."
    ),
):
    """Predict new rows with a trained model; the training preprocessing is applied as it was."""
    from nnctl.evaluation import restore
    from nnctl.predict import predict, to_csv
    from nnctl.runs import atomic_write_text

    if not input_file.is_file():
        raise NnctlError(f"{input_file}: file not found")
    if out is not None and out.exists() and out.resolve() == input_file.resolve():
        raise NnctlError(f"--out {out}: is the input file; refusing to overwrite it")
    restored = restore(run)
    predictions = predict(restored, input_file, with_proba=proba, target=target)
    text = to_csv(predictions, restored.meta.get("class_names") or [])
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            atomic_write_text(out, text)
        except OSError as exc:
            raise NnctlError(f"{out}: cannot write: {exc.strerror}") from None
        print(f"wrote {len(predictions.values)} predictions to {out}", file=sys.stderr)
    if predictions.score:
        score = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in predictions.score.items())
        print(f"targets found in {input_file.name}: {score}", file=sys.stderr)


data_app = typer.Typer(help="Datasets: download them, look at them.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
@report_errors
def data_fetch(
    dataset: str = typer.Argument(..., help="mnist or fashion-mnist."),
    folder: Optional[Path] = typer.Option(None, "--dir", help="Where to put the files (default: the cache folder)."),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Base URL of the files (or $NNCTL_DATA_MIRROR)."),
):
    """Download MNIST or Fashion-MNIST, verified by SHA-256 (files already verified are not downloaded again)."""
    from nnctl import console
    from nnctl.data.fetch import fetch

    with console.DownloadProgress() as progress:
        results = fetch(dataset, folder, mirror, progress=progress)
    print(f"{dataset}: {len(results)} files in {results[0][0].parent}")


@data_app.command("show")
@report_errors
def data_show(
    config: Path = typer.Argument(..., help="The experiment's YAML file."),
    set_: Optional[List[str]] = SetOption,
):
    """What a config's data section yields: split sizes, features, class balance, image shape."""
    from nnctl import console
    from nnctl.config import load_config
    from nnctl.data import load_data

    loaded = load_config(config, set_ or [])
    console.print_dataset(load_data(loaded), loaded.config.data.dataset)


@app.command("plot")
@report_errors
def plot_command(
    runs: List[Path] = typer.Argument(..., metavar="RUN", help="One or more run folders."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The PNG to write (default: RUN/plot.png for one run, plot.png here for several)."
    ),
    metric: Optional[str] = typer.Option(None, "--metric", help="Plot only this metric, e.g. val_accuracy (or accuracy: train and val)."),
    kind: str = typer.Option("auto", "--kind", help="auto, curves, boundary (2-D data) or function (1-D data)."),
):
    """Draw learning curves (several runs overlaid), a 2-D decision boundary or a 1-D function fit, as a PNG (needs matplotlib)."""
    from nnctl.plots import plot

    print(plot(runs, out, metric=metric, kind=kind))


@app.command()
@report_errors
def sweep(
    file: Path = typer.Argument(..., help="A sweep file, or an experiment config with -p options."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", metavar="KEY.PATH=V1,V2", help="One-line grid values; repeatable."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="One-line sweeps: seeds, e.g. 0,1,2."),
    metric: Optional[str] = typer.Option(None, "--metric", help="One-line sweeps: the summary metric to rank by."),
    set_: Optional[List[str]] = SetOption,
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Sweep folders go to OUT/sweeps/."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Trials at a time (local executor)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local or dask."),
    address: Optional[str] = typer.Option(None, "--address", help="Dask scheduler address, e.g. tcp://host:8786."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", help="Continue this sweep folder."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed trial."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object: folder, counts, leaderboard."),
):
    """Run a config over many parameter points and seeds; rank them in summary.csv and a leaderboard."""
    from nnctl import console
    from nnctl import sweep as sweeps

    if executor not in (None, "local", "dask"):
        raise NnctlError(f"--executor: {executor!r} is not allowed; allowed: local, dask")
    if resume_dir is not None:
        if set_ or param:
            raise NnctlError("--resume continues a sweep as it was defined: --set and -p cannot change it")
        spec = sweeps.load_sweep_dir(resume_dir)
    elif param:
        spec = sweeps.one_line_sweep(file, param, seeds, set_ or [], metric)
    else:
        spec = sweeps.load_sweep(file, set_ or [])
    reporter = console.SweepReporter(quiet=json_output)
    result = sweeps.run_sweep(
        spec, out, resume_dir=resume_dir, workers=workers, executor_type=executor, address=address,
        fail_fast=fail_fast, progress=reporter.trial,
    )  # fmt: skip
    if json_output:
        print(console.json_line({"sweep_dir": str(result.folder), "trials": len(result.outcomes), "failed": len(result.failed), "leaderboard": result.rows}))
    else:
        console.print_leaderboard(spec, result)
    for record in result.failed:
        print(f"error: trial {record['trial']} ({record['event']}): {record.get('error', 'did not finish')} [{record.get('run_dir', '')}]", file=sys.stderr)
    raise typer.Exit(1 if result.failed else 0)


runs_app = typer.Typer(help="List and compare run folders.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
@report_errors
def runs_list(
    folder: Path = typer.Argument(Path("runs"), help="A folder of run folders."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per line."),
):
    """The runs in a folder, with their status, key config values and final metrics."""
    from nnctl import console
    from nnctl.runlist import list_runs

    entries = list_runs(folder)
    if json_output:
        for entry in entries:
            print(console.json_line(entry))
    else:
        console.print_run_list(entries, folder)


@runs_app.command("compare")
@report_errors
def runs_compare(
    runs: List[Path] = typer.Argument(..., help="Two or more run folders."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object."),
):
    """The config keys that differ between runs, and their metrics side by side."""
    from nnctl import console
    from nnctl.runlist import compare_runs

    comparison = compare_runs(runs)
    if json_output:
        print(console.json_line(comparison))
    else:
        console.print_comparison(comparison)


@app.command("playground")
@report_errors
def playground(
    dataset: str = typer.Option("spiral", "--dataset", help="circle, xor, gauss, spiral, reg-plane or reg-gauss."),
    noise: float = typer.Option(0.0, "--noise", help="The Playground's noise, 0 to 0.5."),
    layers: str = typer.Option("8,8", "--layers", help="Units of the hidden layers, e.g. 4,2 ('none': no hidden layer)."),
    activation: str = typer.Option("tanh", "--activation", help="Hidden layers: tanh, relu, sigmoid, linear (or any nnctl activation)."),
    lr: float = typer.Option(0.03, "--lr", help="Learning rate of SGD (+/- move it along the Playground's ladder)."),
    batch_size: int = typer.Option(10, "--batch-size", help="Rows per minibatch."),
    features: str = typer.Option("x1,x2", "--features", help="Inputs: x1, x2, x1_sq, x2_sq, x1_x2, sin_x1, sin_x2, comma-separated."),
    regularization: str = typer.Option("none", "--regularization", help="none, l1 or l2."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Regularization rate (default 0.001 with l1/l2)."),
    momentum: float = typer.Option(0.0, "--momentum", help="SGD momentum (the Playground has none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, the split, the weights and the shuffling (r: seed + 1)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the equivalent experiment config (for nnctl train) here at the end."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training.epochs of the saved config (default: the epochs trained)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Print N frames as plain text and exit (the default without a terminal)."),
    epochs_per_frame: Optional[int] = typer.Option(None, "--epochs-per-frame", help="Epochs between frames (default 25 plain, 5 live)."),
):
    """The TensorFlow Playground in the terminal: train live, watch the decision boundary; keys change the settings."""
    from nnctl import playground as pg

    options = pg.make_options(
        dataset=dataset, noise=noise, layers=layers, activation=activation, lr=lr, batch_size=batch_size,
        features=features, regularization=regularization, rate=rate, seed=seed, momentum=momentum, epochs=epochs,
    )  # fmt: skip
    pg.run_playground(options, frames=frames, epochs_per_frame=epochs_per_frame, save=save)


def main() -> None:
    app()

"""The command line.  Each command parses its arguments, calls one function of the package and prints.

Errors a user can cause (``NnctlError``) are printed as ``error: ...`` lines on stderr, and the
command exits with the error's code (2 for bad input) -- never with a traceback.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from nnctl.errors import NnctlError, from_os_error, one_of


def _tidy_help(params: list) -> list:
    """Typer's rich help shows a type beside every parameter, also where it says nothing to a user:
    ``<bool>`` beside a flag (which takes no value) and ``<list[Path]>`` / ``<str>`` beside an argument
    (whose metavar Typer ignores there).  Flags get no type; a list argument shows ``<path>...``; a text
    argument shows its metavar alone (the choices, when it has any)."""
    for param in params:
        if getattr(param, "is_flag", False):
            if param.metavar is None:
                param.metavar = ""
        elif param.param_type_name == "argument" and "display_type_rich" not in vars(param):

            def display_type_rich(ctx, _shown=param.display_type_rich):
                label = _shown(ctx)
                listed = re.fullmatch(r"<list\[(\w+)\]>", label or "")
                if listed:
                    return f"<{listed[1].lower()}>..."
                return None if label == "<str>" else label

            param.display_type_rich = display_type_rich
    return params


class HelpGroup(TyperGroup):
    """A command group whose help, and its commands' help, pass through ``_tidy_help``."""

    def get_params(self, ctx):
        return _tidy_help(super().get_params(ctx))

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _tidy_help(command.get_params(ctx))
        return command


app = typer.Typer(
    cls=HelpGroup,
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
    """Turn a user error into 'error: ...' lines on stderr and its exit code; with --json (a command's
    ``json_output`` flag) stdout also gets one JSON object ``{"error": message, "exit_code": code}``."""

    def fail(message: str, exit_code: int, json_output: bool):
        for line in message.splitlines():
            print(f"error: {line}", file=sys.stderr)
        if json_output:
            print(json.dumps({"error": message, "exit_code": exit_code}), flush=True)
        return typer.Exit(exit_code)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        json_output = bool(kwargs.get("json_output"))
        try:
            return command(*args, **kwargs)
        except NnctlError as exc:
            raise fail(str(exc), exc.exit_code, json_output) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except OSError as exc:  # a full disk, a read-only folder: the file and the reason, not a traceback
            error = from_os_error(exc)
            raise fail(str(error), error.exit_code, json_output) from None

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
    config: Path = typer.Argument(..., metavar="CONFIG", help="The experiment's YAML file."),
    set_: Optional[List[str]] = SetOption,
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for run folders."),
    name: Optional[str] = typer.Option(None, "--name", "-n", metavar="<name>", help="Run name (default: the config's name)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object with the results, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; print only the run folder."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder (CONFIG must match it)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write exactly this run folder (must not exist); for scripts."),
    force: bool = typer.Option(False, "--force", help="With --resume: allow a changed training.epochs/checkpoint_every."),
):
    """Train the model a config describes, and write a run folder."""
    from nnctl import console
    from nnctl.config import load_config
    from nnctl.resume import resume_run
    from nnctl.runref import resolve_run
    from nnctl.training import run_training

    overrides = [*(set_ or []), *([f"name={json.dumps(name)}"] if name is not None else [])]
    reporter = console.make_reporter(json_output=json_output, quiet=quiet)
    if resume_dir is not None:
        result = resume_run(resolve_run(resume_dir), config, overrides, force, reporter, command=sys.argv)
    else:
        result = run_training(load_config(config, overrides), out, reporter=reporter, command=sys.argv, run_dir=run_dir)
    _report_run(result, json_output, quiet)


@app.command()
@report_errors
def resume(
    run: Path = typer.Argument(..., metavar="RUN", help="The run folder to continue, or RUNS/NAME@latest."),
    set_: Optional[List[str]] = SetOption,
    force: bool = typer.Option(False, "--force", help="Allow a changed training.epochs or training.checkpoint_every."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object with the results, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; print only the run folder."),
):
    """Continue an interrupted run from its last checkpoint; the result equals an uninterrupted run, bit for bit."""
    from nnctl import console
    from nnctl.resume import resume_run
    from nnctl.runref import resolve_run

    run = resolve_run(run)
    reporter = console.make_reporter(json_output=json_output, quiet=quiet)
    result = resume_run(run, None, set_ or [], force, reporter, command=sys.argv)
    _report_run(result, json_output, quiet)


@app.command("train-population", hidden=True)
@report_errors
def train_population(
    job: Path = typer.Argument(..., metavar="<job.json>", help="{base: CONFIG, members: [{overrides: [...], run_dir: DIR}, ...]}"),
):
    """For sweeps: train the members of a job file as one population; one JSON line per member, in order."""
    from nnctl import console
    from nnctl.config import load_config
    from nnctl.population import run_population

    spec = json.loads(job.read_text(encoding="utf-8"))
    loadeds = [load_config(spec["base"], member["overrides"]) for member in spec["members"]]
    results = run_population(loadeds, command=sys.argv, run_dirs=[Path(member["run_dir"]) for member in spec["members"]])
    for result in results:
        print(console.json_line({"run_dir": str(result.run_dir), **result.summary, "message": result.message}), flush=True)


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
    run: Path = typer.Argument(..., metavar="RUN", help="A run folder (or RUNS/NAME@latest: the newest run of NAME), or a checkpoint .npz file."),
    split: str = typer.Option("test", "--split", metavar="[test|val|train]", help="The data split to score."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object with the metrics."),
):
    """Score a run's checkpoint on a data split, recomputed exactly as in training."""
    from nnctl import console
    from nnctl.evaluation import SPLITS, evaluate_split, restore
    from nnctl.runref import resolve_run

    run = resolve_run(run)
    one_of("--split", split, SPLITS)
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
    config: Path = typer.Argument(..., metavar="CONFIG", help="The experiment's YAML file."),
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


@app.command("schema")
@report_errors
def schema_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the schema to this file instead of stdout."),
    sweep: bool = typer.Option(False, "--sweep", help="The schema of a sweep file instead of an experiment config."),
):
    """Print the JSON Schema of a config (or a sweep file), for completion in editors (yaml-language-server)."""
    from nnctl.runs import write_output
    from nnctl.schema import config_schema, schema_text, sweep_schema

    text = schema_text(sweep_schema() if sweep else config_schema())
    if out is None:
        sys.stdout.write(text)
        return
    write_output(out, text)
    print(f"wrote {out}", file=sys.stderr)


@app.command("gradcheck")
@report_errors
def gradcheck_command(
    config: Path = typer.Argument(..., metavar="CONFIG", help="The experiment's YAML file."),
    set_: Optional[List[str]] = SetOption,
    rtol: float = typer.Option(
        1e-5,
        "--rtol",
        "--threshold",
        min=0.0,
        help="Relative tolerance (--threshold: its old name); the criterion is printed under the table.",
    ),
    atol: Optional[float] = typer.Option(
        None,
        "--atol",
        min=0.0,
        help="Absolute floor of the tolerance (default: the noise floor of the finite differences).",
    ),
    batch: int = typer.Option(8, "--batch", min=2, help="Rows of training data to check on (at least 2, for batch norm)."),
):
    """Check every parameter's backpropagated gradient against finite differences (float64); prints the criterion."""
    from rich.console import Console
    from rich.table import Table

    from nnctl.config import load_config
    from nnctl.engine.gradcheck import STEP
    from nnctl.gradcheck_run import gradcheck

    rows = gradcheck(load_config(config, set_ or []), batch=batch, rtol=rtol, atol=atol)
    table = Table(title=f"gradient check (five-point differences, float64, {batch} rows)")
    table.add_column("parameter", no_wrap=True)
    for column in ("shape", "entries", "max|grad|", "abs err", "rel err", ""):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        status = ("ok" if row.passed else "FAIL") + (" (0)" if row.below_noise else "")
        shape = "x".join(map(str, row.shape))
        table.add_row(
            row.name, shape, str(row.checked), f"{row.scale:.1e}", f"{row.abs_error:.1e}", f"{row.rel_error:.1e}", status
        )
    console = Console()
    console.print(table)
    delta = rows[0].delta if rows else 0.0
    floor = f"{atol:g} (--atol)" if atol is not None else f"{delta:.1e} = 100*eps*max(1,|loss|)/h, noise of the differences (h = {STEP:g})"
    console.print(
        "pass per entry: |analytic - numeric| <= atol + rtol*|numeric|, atol = rtol*max|grad| + floor\n"
        f"rtol = {rtol:g}; floor = {floor}\n"
        "rel err = abs err / max|grad|; (0): max|grad| <= floor, a zero gradient (rel err = noise/noise)",
        highlight=False,
        soft_wrap=True,
    )
    failed = [row.name for row in rows if not row.passed]
    if failed:
        print(f"error: gradient check failed (|analytic - numeric| above tolerance) for: {', '.join(failed)}", file=sys.stderr)
        raise typer.Exit(1)


@app.command("predict")
@report_errors
def predict_command(
    run: Path = typer.Argument(..., metavar="RUN", help="A run folder (or RUNS/NAME@latest: the newest run of NAME), or a checkpoint .npz file."),
    input_file: Path = typer.Argument(..., metavar="INPUT", help="A CSV (the training columns) or an NPZ (array 'x')."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the CSV here instead of stdout."),
    proba: bool = typer.Option(False, "--proba", help="Add one probability column per class."),
    target: Optional[str] = typer.Option(
        None, "--target", metavar="<column>", help="Column/array with known targets (default: the training target, else label, target or y)."
    ),
):
    """Predict new rows with a trained model; the training preprocessing is applied as it was."""
    from nnctl.evaluation import restore
    from nnctl.predict import predict, to_csv
    from nnctl.runref import resolve_run
    from nnctl.runs import write_output

    run = resolve_run(run)
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
        write_output(out, text)
        print(f"wrote {len(predictions.values)} predictions to {out}", file=sys.stderr)
    if predictions.score:
        score = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in predictions.score.items())
        print(f"targets found in {input_file.name}: {score}", file=sys.stderr)


@app.command("export")
@report_errors
def export_command(
    run: Path = typer.Argument(..., metavar="RUN", help="A run folder (or RUNS/NAME@latest: the newest run of NAME), or a checkpoint .npz file."),
    format_: str = typer.Option(..., "--format", "-f", metavar="[onnx|safetensors]", help="ONNX graph (needs the onnx extra) or PyTorch weights (the safetensors extra)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The file to write (default: beside the checkpoint, e.g. RUN/checkpoints/last.onnx)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="[last|best]", help="A run folder's checkpoint (default: the one its test metrics were scored with)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
):
    """Export a trained model, with its preprocessing: ONNX, or safetensors for PyTorch (prints the torch.nn.Sequential that loads it)."""
    from nnctl.export import export
    from nnctl.runref import resolve_run

    exported = export(resolve_run(run), format_, out, checkpoint, force)
    if exported.source is not None:
        sys.stdout.write(exported.source)
    print(f"wrote {exported.path}", file=sys.stderr)


data_app = typer.Typer(cls=HelpGroup, help="Datasets: download them, look at them.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
@report_errors
def data_fetch(
    dataset: str = typer.Argument(..., metavar="mnist|fashion-mnist", help="The dataset to download."),
    folder: Optional[Path] = typer.Option(None, "--dir", help="Where to put the files (default: the cache folder)."),
    mirror: Optional[str] = typer.Option(None, "--mirror", metavar="<url>", help="Base URL of the files (or $NNCTL_DATA_MIRROR)."),
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
    config: Path = typer.Argument(..., metavar="CONFIG", help="The experiment's YAML file."),
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
    runs: List[Path] = typer.Argument(..., metavar="RUN", help="One or more run folders (or RUNS/NAME@latest), or a sweep folder."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The PNG to write (default: RUN/plot.png for one run, plot.png here for several)."
    ),
    metric: Optional[str] = typer.Option(None, "--metric", metavar="<metric>", help="Plot only this metric, e.g. val_accuracy (or accuracy: train and val)."),
    kind: str = typer.Option("auto", "--kind", metavar="[auto|curves|boundary|function]", help="boundary needs 2-D data, function 1-D data."),
):
    """Draw learning curves (several runs overlaid), a 2-D decision boundary or a 1-D function fit, as a PNG (needs matplotlib)."""
    from nnctl.plots import plot
    from nnctl.runref import resolve_run

    runs = [resolve_run(run) for run in runs]
    print(plot(runs, out, metric=metric, kind=kind))


@app.command()
@report_errors
def sweep(
    file: Optional[Path] = typer.Argument(None, metavar="FILE", help="A sweep file, or an experiment config with -p and/or --seeds (not needed with --resume)."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", metavar="KEY.PATH=V1,V2", help="One-line grid values; repeatable."),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="<int,...>", help="One-line sweeps: seeds, e.g. 0,1,2 (alone: the config once per seed)."),
    metric: Optional[str] = typer.Option(None, "--metric", metavar="<metric>", help="One-line sweeps: the summary metric to rank by."),
    set_: Optional[List[str]] = SetOption,
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Sweep folders go to OUT/sweeps/."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Trials at a time (local executor)."),
    executor: Optional[str] = typer.Option(None, "--executor", metavar="[local|dask]", help="Where trials run (default: the sweep file's, else local)."),
    address: Optional[str] = typer.Option(None, "--address", metavar="<url>", help="Dask scheduler address, e.g. tcp://host:8786."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", help="Continue this sweep folder."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed trial."),
    population: Optional[str] = typer.Option(
        None, "--population", metavar="[auto|on|off]", help="Train trials of one network shape as one population (default: the sweep file's, else auto)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object: folder, counts, leaderboard."),
):
    """Run a config over many parameter points and seeds; rank them in summary.csv and a leaderboard.

    Ctrl-C (or SIGTERM) stops the sweep: the running trials stop and are recorded as interrupted, and the
    command prints how to continue (nnctl sweep --resume FOLDER) and exits 130 (143 for SIGTERM)."""
    import signal

    from nnctl import console, sweeps

    if executor is not None:
        one_of("--executor", executor, sweeps.EXECUTORS)
    if population is not None:
        one_of("--population", population, sweeps.POPULATION_MODES)
    if file is None and resume_dir is None:
        raise NnctlError("give a sweep file (or an experiment config with -p or --seeds), or --resume SWEEP_FOLDER")
    if resume_dir is not None:
        if set_ or param or seeds or metric:
            raise NnctlError("--resume continues a sweep as it was defined: --set, -p, --seeds and --metric cannot change it")
        spec = sweeps.load_sweep_dir(resume_dir)
    elif file.is_dir():
        raise NnctlError(f"{file}: a folder; continue a sweep folder with nnctl sweep --resume {file}")
    elif param or ((seeds or metric) and not sweeps.is_sweep_file(file)):
        if not (param or seeds):
            raise NnctlError(f"{file}: --metric ranks the points of a sweep: give -p key.path=v1,v2 and/or --seeds 0,1,2 with it")
        spec = sweeps.one_line_sweep(file, param or [], seeds, set_ or [], metric)
    elif seeds or metric:
        raise NnctlError(f"{file}: a sweep file sets its own seeds and metric; --seeds and --metric go with an experiment config")
    else:
        spec = sweeps.load_sweep(file, set_ or [])
    reporter = console.SweepReporter(quiet=json_output)
    result = sweeps.run_sweep(
        spec, out, resume_dir=resume_dir, workers=workers, executor_type=executor, address=address,
        fail_fast=fail_fast, progress=reporter.trial, population=population,
    )  # fmt: skip
    if json_output:
        report = {"sweep_dir": str(result.folder), "trials": len(result.outcomes), "failed": len(result.failed), "leaderboard": result.rows}
        if result.interrupted is not None:
            report["interrupted"] = signal.Signals(result.interrupted).name
        print(console.json_line(report))
    else:
        console.print_leaderboard(spec, result)
    for record in result.failed:
        print(f"error: trial {record['trial']} ({record['event']}): {record.get('error', 'did not finish')} [{record.get('run_dir', '')}]", file=sys.stderr)
    if result.interrupted is not None:
        command = ["nnctl", "sweep", "--resume", str(result.folder)]
        command += [*(["--workers", str(workers)] if workers else []), *(["--executor", executor] if executor else [])]
        command += [*(["--address", address] if address else []), *(["--fail-fast"] if fail_fast else [])]
        print(f"interrupted: {result.stopped_message(spec, command)}", file=sys.stderr)
        raise typer.Exit(128 + result.interrupted)
    raise typer.Exit(1 if result.failed else 0)


runs_app = typer.Typer(cls=HelpGroup, help="List and compare run folders.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
@report_errors
def runs_list(
    folder: Path = typer.Argument(Path("runs"), metavar="FOLDER", help="A folder of run folders."),
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
    runs: List[Path] = typer.Argument(..., metavar="RUN", help="Two or more run folders (or RUNS/NAME@latest)."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object."),
):
    """The config keys that differ between runs, and their metrics side by side."""
    from nnctl import console
    from nnctl.runlist import compare_runs
    from nnctl.runref import resolve_run

    runs = [resolve_run(run) for run in runs]
    comparison = compare_runs(runs)
    if json_output:
        print(console.json_line(comparison))
    else:
        console.print_comparison(comparison)


@app.command("playground")
@report_errors
def playground(
    dataset: str = typer.Option("spiral", "--dataset", metavar="<name>", help="circle, xor, gauss or spiral (classification); reg-plane or reg-gauss (regression)."),
    noise: float = typer.Option(0.0, "--noise", help="The Playground's noise, 0 to 0.5."),
    layers: str = typer.Option("8,8", "--layers", metavar="<int,...|none>", help="Units of the hidden layers, e.g. 4,2 ('none': no hidden layer)."),
    activation: str = typer.Option("tanh", "--activation", metavar="<name>", help="Hidden layers: tanh, relu, sigmoid or linear (the Playground's four); also leaky_relu, elu, softplus."),
    lr: float = typer.Option(0.03, "--lr", help="Learning rate of SGD (+/- move it along the Playground's ladder)."),
    batch_size: int = typer.Option(10, "--batch-size", help="Rows per minibatch."),
    features: str = typer.Option("x1,x2", "--features", metavar="<feature,...>", help="Inputs, comma-separated: x1, x2, x1_sq, x2_sq, x1_x2, sin_x1, sin_x2."),
    regularization: str = typer.Option("none", "--regularization", metavar="[none|l1|l2]", help="Weight penalty of the hidden layers."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Regularization rate (default 0.001 with l1/l2)."),
    momentum: float = typer.Option(0.0, "--momentum", help="SGD momentum (the Playground has none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, the split, the weights and the shuffling (r: seed + 1)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the equivalent experiment config (for nnctl train) here at the end."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training.epochs of the saved config (default: the epochs trained)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Print N frames as plain text and exit (the default without a terminal)."),
    epochs_per_frame: Optional[int] = typer.Option(None, "--epochs-per-frame", help="Epochs between frames (default 25 plain, 5 live)."),
    web: bool = typer.Option(False, "--web", help="Serve the Playground as a web page (needs the web extra) instead of drawing it here."),
    no_browser: bool = typer.Option(False, "--no-browser", help="With --web: print the URL, do not open a browser."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="<address>", help="With --web: the address to listen on (default: this machine only)."),
    port: int = typer.Option(8765, "--port", metavar="<port>", help="With --web: the port (0 picks a free one)."),
    out: Path = typer.Option(Path("runs"), "--out", metavar="<folder>", help="With --web: where the page's Save run writes run folders."),
):
    """The TensorFlow Playground in the terminal (or with --web, in the browser): train live, watch the decision boundary."""
    from nnctl import playground as pg

    if web:
        from nnctl.playground.web.server import run_server

        terminal_only = {
            "--dataset": dataset != "spiral", "--noise": noise != 0.0, "--layers": layers != "8,8", "--activation": activation != "tanh",
            "--lr": lr != 0.03, "--batch-size": batch_size != 10, "--features": features != "x1,x2", "--regularization": regularization != "none",
            "--rate": rate is not None, "--momentum": momentum != 0.0, "--seed": seed != 0, "--save": save is not None, "--epochs": epochs is not None,
            "--frames": frames is not None, "--epochs-per-frame": epochs_per_frame is not None,
        }  # fmt: skip
        given = [flag for flag, set_ in terminal_only.items() if set_]
        if given:
            raise NnctlError(
                f"{', '.join(given)}: the terminal playground's options; the web page takes its settings from its controls "
                "and its URL (e.g. ...#dataset=xor&networkShape=4,2)"
            )

        run_server(host=host, port=port, open_browser=not no_browser, runs_dir=out)
        return

    options = pg.make_options(
        dataset=dataset, noise=noise, layers=layers, activation=activation, lr=lr, batch_size=batch_size,
        features=features, regularization=regularization, rate=rate, seed=seed, momentum=momentum, epochs=epochs,
    )  # fmt: skip
    pg.run_playground(options, frames=frames, epochs_per_frame=epochs_per_frame, save=save)


def main() -> None:
    app()

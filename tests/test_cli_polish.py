"""What a new user tripped on (issue #11), through the real CLI: ``runs list`` at 80 columns and in a pipe,
``RUNS/NAME@latest``, ``--json`` errors, ``--help`` types, natural key order, ``plot`` of a fixed-weight
model, number formatting, the offline ``data fetch`` hint, and the playground on a 256-colour terminal."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CONFIGS, REPO, nnctl, nnctl_in_process, train_json

TINY = ("--set", "training.epochs=2")
IRIS = REPO / "examples" / "iris" / "iris.yaml"


def one_json_line(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A typical runs folder: classification, regression, a fixed-weight model, and iris trained twice."""
    runs = tmp_path_factory.mktemp("typical") / "runs"

    def train(config: Path, *args) -> str:  # in this process: the folders are the subject here, not training
        result = nnctl_in_process("train", config, *args, "--out", runs, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["run_dir"]

    for config in ("spiral.yaml", "xor_mlp.yaml", "mcculloch_pitts_and.yaml", "reg_plane.yaml"):
        train(CONFIGS / config, *TINY)
    assert train(IRIS, *TINY) != train(IRIS, "--set", "training.epochs=3")
    return runs


def iris_runs(runs: Path) -> list[Path]:
    """The iris runs, oldest first."""
    entries = [json.loads(line) for line in nnctl("runs", "list", runs, "--json").stdout.splitlines()]
    iris = [e for e in entries if e["name"] == "iris"]
    return [Path(e["run_dir"]) for e in sorted(iris, key=lambda e: (e["started"], len(e["run_dir"]), e["run_dir"]))]


# ---------------------------------------------------------------------------------- 1. runs list


@pytest.mark.parametrize("columns", ["80", ""])  # "": no $COLUMNS, a pipe (rich's default width, 80)
def test_runs_list_fits_80_columns_without_cutting_values(folder, columns):
    result = nnctl("runs", "list", folder, env={"COLUMNS": columns})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout and "..." not in result.stdout, result.stdout
    table = "\n".join(line for line in result.stdout.splitlines() if line.startswith(" "))  # the notes below start at column 0
    assert all(len(line) <= 80 for line in table.splitlines()), result.stdout
    entries = [json.loads(line) for line in nnctl("runs", "list", folder, "--json").stdout.splitlines()]
    for entry in entries:
        assert Path(entry["run_dir"]).name in result.stdout
    regression = next(e for e in entries if "test_r2" in e["metrics"])
    assert f"{regression['metrics']['test_r2']:.4g}" in result.stdout  # 4 significant digits
    assert "accuracy" in table and "r2" in table
    assert "every run: " in result.stdout  # the columns with one value for all (status, seed) below the table
    assert "iris@latest = " in result.stdout


def test_runs_list_on_a_wide_terminal_shows_every_column(folder):
    result = nnctl("runs", "list", folder, env={"COLUMNS": "200"})
    assert result.returncode == 0
    for header in ("status", "dataset", "optimizer", "lr", "epochs", "seed", "accuracy", "r2", "loss", "mae"):
        assert re.search(rf"\b{header}\b", result.stdout), header
    assert "not shown" not in result.stdout and "…" not in result.stdout


# ------------------------------------------------------------------------------ 2. NAME@latest


def test_latest_reference_picks_the_newest_run_of_a_name(folder):
    older, newer = iris_runs(folder)
    result = nnctl("eval", f"{folder}/iris@latest", "--json")
    assert result.returncode == 0, result.stderr
    assert Path(one_json_line(result.stdout)["checkpoint"]).parent.parent == newer
    compared = nnctl("runs", "compare", older, f"{folder}/iris@latest", "--json")
    assert one_json_line(compared.stdout)["differing_config"] == {"training.epochs": [2, 3]}
    predicted = nnctl("predict", f"{folder}/iris@latest", IRIS.parent / "iris.csv")
    assert predicted.returncode == 0 and predicted.stdout.startswith("prediction"), predicted.stderr


def test_latest_reference_errors_name_what_exists(folder, tmp_path):
    result = nnctl("eval", f"{folder}/irs@latest", "--json")
    assert result.returncode == 2
    assert "no run named 'irs'" in result.stderr and "iris, mp-and, reg-plane, spiral, xor-mlp" in result.stderr
    assert "is not a run reference" in nnctl("eval", f"{folder}/iris@first").stderr
    assert "no run folders" in nnctl("plot", f"{tmp_path}/@latest").stderr


def test_a_folder_named_like_a_reference_wins(folder, tmp_path):
    older, _ = iris_runs(folder)
    literal = tmp_path / "iris@latest"
    shutil.copytree(older, literal)
    result = nnctl("eval", literal, "--json")
    assert result.returncode == 0, result.stderr
    assert Path(one_json_line(result.stdout)["checkpoint"]).parent.parent == literal


def test_ties_in_the_start_time_go_to_the_last_folder_in_natural_order(tmp_path):
    from nnctl.runref import resolve_run

    for name in ("a-20260101-000000", "a-20260101-000000-2", "a-20260101-000000-10", "b-20250101-000000"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"started": "2026-01-01T00:00:00+00:00" if name[0] == "a" else "2025-01-01T00:00:00+00:00"}))
        (tmp_path / name / "config.yaml").write_text(f"name: {name[0]}\n")
    assert resolve_run(tmp_path / "a@latest") == tmp_path / "a-20260101-000000-10"
    assert resolve_run(tmp_path / "b@latest") == tmp_path / "b-20250101-000000"
    assert resolve_run(tmp_path / "@latest") == tmp_path / "a-20260101-000000-10"


# --------------------------------------------------------------------------------- 3. --json errors


def test_json_errors_are_one_json_object_on_stdout(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "spiral.yaml").read_text().replace("lr: 0.03", "lr: -0.03"))
    cases = [
        (["train", bad, "--out", tmp_path / "runs", "--json"], "optimizer.lr"),
        (["eval", tmp_path / "missing", "--json"], "no such run folder or checkpoint"),
        (["runs", "list", tmp_path / "nowhere", "--json"], "no such folder"),
        (["runs", "compare", tmp_path, "--json"], "two or more"),
        (["sweep", tmp_path / "nope.yaml", "--json"], "nope.yaml"),
        (["resume", tmp_path / "missing", "--json"], "missing"),
    ]
    for args, fragment in cases:
        result = nnctl_in_process(*args)  # errors before any training: the CLI's own main, in this process
        assert result.returncode == 2, (args, result.stderr)
        error = one_json_line(result.stdout)
        assert set(error) == {"error", "exit_code"} and error["exit_code"] == 2
        assert fragment in error["error"], (args, error)
        assert result.stderr.startswith("error: ") and fragment in result.stderr  # stderr keeps the error line
    without = nnctl_in_process("eval", tmp_path / "missing")
    assert without.stdout == "" and without.returncode == 2


# ------------------------------------------------------------------------------------- 4. --help


def all_commands() -> list[list[str]]:
    import typer

    from nnctl.cli import app

    def walk(command, path):
        found = [path]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


def test_help_shows_no_python_types_and_the_choices(monkeypatch):
    commands = all_commands()
    assert ["eval"] in commands and ["runs", "compare"] in commands and ["data", "fetch"] in commands
    texts = {}
    monkeypatch.setenv("COLUMNS", "200")
    for path in commands:
        result = nnctl_in_process(*path, "--help")  # the CLI's own main, without 17 interpreter start-ups
        assert result.returncode == 0, (path, result.stderr)
        for wrong in ("<bool>", "<str>", "<list["):
            assert wrong not in result.stdout, (path, wrong, result.stdout)
        texts[" ".join(path)] = result.stdout
    assert "--split" in texts["eval"] and "[test|val|train]" in texts["eval"]
    assert "[auto|curves|boundary|function]" in texts["plot"] and "<path>..." in texts["plot"]
    assert "[local|dask]" in texts["sweep"]
    assert "[none|l1|l2]" in texts["playground"] and "reg-gauss" in texts["playground"] and "softplus" in texts["playground"]
    assert "mnist|fashion-mnist" in texts["data fetch"]
    assert "NAME@latest" in texts["eval"]


# ------------------------------------------------------------------------ 5. order, plot, formatting


def fake_run(path: Path, config: dict) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"status": "completed", "started": "2026-01-01T00:00:00+00:00"}))
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def test_runs_compare_orders_keys_naturally(tmp_path):
    layers = [{"units": i} for i in range(12)]
    a = fake_run(tmp_path / "a", {"name": "deep", "model": {"layers": layers}})
    b = fake_run(tmp_path / "b", {"name": "deep", "model": {"layers": [{"units": i + 1} for i in range(12)]}})
    keys = list(one_json_line(nnctl("runs", "compare", a, b, "--json").stdout)["differing_config"])
    assert keys == [f"model.layers.{i}.units" for i in range(12)]
    table = nnctl("runs", "compare", a, b, env={"COLUMNS": "80"}).stdout
    assert table.index("model.layers.2.units") < table.index("model.layers.10.units")


def test_plot_of_a_fixed_weight_model(tmp_path):
    two_inputs = Path(train_json(CONFIGS / "mcculloch_pitts_and.yaml", out=tmp_path / "runs")["run_dir"])
    drawn = nnctl("plot", two_inputs, "--out", tmp_path / "and.png")
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "and.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # its decision boundary
    curves = nnctl("plot", two_inputs, "--kind", "curves")
    assert curves.returncode == 2 and "evaluated, not trained" in curves.stderr and "--kind boundary" in curves.stderr
    one_input = Path(train_json(CONFIGS / "mcculloch_pitts_not.yaml", out=tmp_path / "runs")["run_dir"])
    result = nnctl("plot", one_input)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "fixed weights" in result.stderr and "evaluated, not trained" in result.stderr and "no metrics yet" not in result.stderr


def test_counts_print_as_integers_and_words_agree_with_numbers(tmp_path):
    from nnctl.console import format_row, format_value, plural

    assert format_row({"epoch": 3, "loss": 0.5, "rollbacks": 0}) == "loss 0.5000  rollbacks 0"
    assert (format_value(3), format_value(3.0), format_value(0.123456), format_value(None)) == ("3", "3", "0.1235", "")
    assert (plural(1, "feature"), plural(2, "feature"), plural(1, "class", "classes")) == ("1 feature", "2 features", "1 class")
    shown = nnctl("data", "show", CONFIGS / "universal_approximation.yaml").stdout
    assert "1 feature:" in shown and "1 features" not in shown
    swept = nnctl("sweep", CONFIGS / "spiral.yaml", "-p", "optimizer.lr=0.03,0.1", "--seeds", "0", *TINY, "--out", tmp_path, env={"COLUMNS": "120"})
    assert swept.returncode == 0, swept.stderr
    assert "±" not in swept.stdout  # one seed: its value, no "± 0.0000"


# ------------------------------------------------------------------------------ 6. offline fetch


def test_offline_fetch_names_the_url_and_the_ways_out(tmp_path, monkeypatch, capsys):
    """The CLI in-process, so that the retries' waits (2 + 4 + 8 s between attempts) can be skipped."""
    from nnctl import cli
    from nnctl.data import fetch

    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = []
    monkeypatch.setattr(fetch.time, "sleep", waits.append)
    monkeypatch.setattr(sys, "argv", ["nnctl", "data", "fetch", "mnist", "--dir", str(tmp_path / "mnist"), "--mirror", f"http://127.0.0.1:{port}/"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2 and len(waits) == 3  # it did retry, three times
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in (f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz", "--mirror URL", "NNCTL_DATA_MIRROR", "copy the IDX files", str(tmp_path / "mnist")):
        assert fragment in lines[0], fragment


# ------------------------------------------------------------------- 7. playground without truecolor


def rendered_codes(color_system: str) -> str:
    from rich.console import Console

    from nnctl.playground import PlaygroundSession, View, make_options, render_rich

    session = PlaygroundSession(make_options(dataset="circle", noise=0.1, layers="4,2"))
    for _ in range(40):
        session.step_epoch()
    console = Console(file=io.StringIO(), force_terminal=True, color_system=color_system, width=100, height=30)
    console.print(render_rich(session, View(interactive=True), 100, 30, console.color_system))
    return console.file.getvalue()


def test_playground_on_a_256_colour_terminal_keeps_orange_and_blue():
    from nnctl.playground import BLUES_256, GREYS_256, ORANGES_256

    output = rendered_codes("256")
    assert "38;2;" not in output and "48;2;" not in output  # no truecolor codes
    used = {int(n) for n in re.findall(r"[34]8;5;(\d+)", output)}
    assert used <= set(ORANGES_256) | set(BLUES_256) | set(GREYS_256) | {245}, used - set(ORANGES_256) - set(BLUES_256) - set(GREYS_256)
    assert used & set(ORANGES_256) and used & set(BLUES_256)
    assert {208, 32} <= used  # the points, in the Playground's orange and blue
    assert not used & {224, 189, 152, 195, 116, 230}  # what rich's own downsampling gave: pink, lavender, teal, cream


def test_playground_on_a_16_colour_terminal_uses_yellow_and_blue():
    output = rendered_codes("standard")
    assert "38;5;" not in output and "38;2;" not in output
    codes = set(re.findall(r"\x1b\[([\d;]+)m", output))
    flat = {int(c) for group in codes for c in group.split(";") if c}
    assert {33, 43, 34, 44} <= flat  # yellow (orange) and blue, foreground and background

"""``nnctl plot``: learning curves, several runs overlaid, the 2-D decision boundary, the 1-D function fit,
through the real CLI; the legend labels; what the boundary's pixels show; and the errors."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, nnctl, nnctl_in_process, train_json

import matplotlib  # noqa: F401 - in the test extra: a missing one must fail here, not skip

from matplotlib.image import imread  # noqa: E402

from nnctl import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPIRAL = CONFIGS / "spiral.yaml"
CIRCLE = ("--set", "data.dataset=circle", "--set", "training.epochs=100")


def assert_png(path: Path) -> np.ndarray:
    """A real PNG (magic bytes) that matplotlib reads back as a non-empty RGB(A) image; returns its pixels."""
    path = Path(path)
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.shape[2] in (3, 4), image.shape
    return image


def png_text(path: Path) -> dict:
    """The PNG's text chunks (nnctl writes the runs and their legend labels there)."""
    from PIL import Image

    with Image.open(path) as image:
        return dict(image.text)


def plot_ok(*args, cwd=None) -> Path:
    result = nnctl("plot", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    path = Path(lines[0])
    return path if path.is_absolute() else Path(cwd or ".") / path


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture(scope="module")
def circle_run(tmp_path_factory) -> Path:
    """The Playground's circle, learned well (test accuracy about 0.97): class 1 inside, class 0 outside."""
    out = tmp_path_factory.mktemp("circle") / "runs"
    return Path(train_json(SPIRAL, *CIRCLE, "--name", "circle", out=out)["run_dir"])


# ------------------------------------------------------------------------------------------- labels


def test_flatten_config_gives_dotted_keys():
    config = {"name": "x", "model": {"layers": [{"type": "dense", "units": 16}, {"type": "batchnorm"}]}, "lr": 0.1,
              "stop": None, "shuffle": True, "features": [], "eps": 1e-05}
    assert plots.flatten_config(config) == {
        "name": "x", "model.layers.0.type": "dense", "model.layers.0.units": "16", "model.layers.1.type": "batchnorm",
        "lr": "0.1", "stop": "null", "shuffle": "true", "features": "[]", "eps": "1e-05",
    }


def test_run_labels_name_the_differing_keys():
    base = {"name": "exp", "seed": 0, "model": {"layers": [{"type": "dense", "units": 16}, {"type": "dense", "units": 2}]},
            "optimizer": {"lr": 0.03}}
    lr = json.loads(json.dumps(base))
    lr["optimizer"]["lr"] = 0.1
    assert plots.run_labels([base, lr], ["a", "b"]) == ["optimizer.lr=0.03", "optimizer.lr=0.1"]
    # vanilla vs BatchNorm: identifying keys (the name, a layer's type) come first, at most 3 pairs, then a count
    bn = json.loads(json.dumps(base))
    bn["name"] = "bn"
    bn["model"]["layers"].insert(1, {"type": "batchnorm", "momentum": 0.1})
    vanilla_label, bn_label = plots.run_labels([base, bn], ["runs/vanilla-1", "runs/bn-1"])
    assert vanilla_label.startswith("name=exp, model.layers.1.type=dense")
    assert bn_label.startswith("name=bn, model.layers.1.type=batchnorm")
    assert bn_label.endswith("more)") and bn_label.count("=") == plots.MAX_LABEL_PAIRS
    # nothing differs: the run folders' names
    assert plots.run_labels([base, base], ["run-1", "run-2"]) == ["run-1", "run-2"]
    # one run: its folder name
    assert plots.run_labels([base], ["run-1"]) == ["run-1"]


# --------------------------------------------------------------------------------------- the command


def test_curves_of_one_run_go_into_the_run_folder(runs):
    run = Path(train_json(SPIRAL, "--set", "training.epochs=20", out=runs)["run_dir"])
    path = plot_ok(run, "--kind", "curves")
    assert path.resolve() == (run / "plot.png").resolve()
    image = assert_png(path)
    assert image.shape[1] > image.shape[0]  # loss and accuracy side by side
    assert not list(run.glob(".plot.png.*")), "the temporary file of the atomic write is left over"


def test_several_runs_overlaid_with_labels_from_differing_keys(runs, tmp_path):
    vanilla = train_json(SPIRAL, "--set", "training.epochs=15", "--name", "vanilla", out=runs)["run_dir"]
    bn = train_json(
        SPIRAL, "--set", "training.epochs=15", "--set", "model.layers.1={type: batchnorm}", "--name", "bn", out=runs
    )["run_dir"]
    # several runs: plot.png in the current folder
    path = plot_ok(vanilla, bn, cwd=tmp_path)
    assert path.resolve() == (tmp_path / "plot.png").resolve()
    assert_png(path)
    description = png_text(path)["Description"].splitlines()
    assert len(description) == 2
    assert description[0].startswith(f"{vanilla}: name=vanilla, model.layers.1.type=dense")
    assert description[1].startswith(f"{bn}: name=bn, model.layers.1.type=batchnorm")
    # the figure's legend shows the same labels, one line colour per run
    figure = plots.make_figure(plots.resolve_runs([vanilla, bn]), "curves")
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == [line.split(": ", 1)[1] for line in description]


def test_auto_draws_curves_and_the_decision_boundary(circle_run, tmp_path):
    path = plot_ok(circle_run, "--out", tmp_path / "auto.png")
    assert path == tmp_path / "auto.png"
    image = assert_png(path)
    assert image.shape[1] > 1.5 * image.shape[0]  # curves on the left, the boundary on the right
    figure = plots.make_figure(plots.resolve_runs([circle_run]))
    assert [ax.get_label() for ax in figure.axes].count("boundary") == 1
    boundary_alone = assert_png(plot_ok(circle_run, "--kind", "boundary", "--out", tmp_path / "boundary.png"))
    assert boundary_alone.shape[1] < image.shape[1]


def test_decision_boundary_pixels_show_the_circle(circle_run):
    """Class 1 (inside the circle) must come out blue at the centre, class 0 orange in the corners.

    Finding the heatmap in the image: the figure is built in-process by the same function the command uses,
    rendered by ``render_png`` at the figure's own dpi (no tight bbox, so no cropping or shifting), after which
    the axes' transforms map data and axes coordinates exactly to the PNG's pixels (display origin bottom-left,
    image rows from the top).  The heatmap fills the axes, whose limits are the padded grid's extent.  Each
    sample is the median colour of a small patch, so the training and test points drawn on top do not matter."""
    figure = plots.make_figure(plots.resolve_runs([circle_run]), "boundary")
    image = imread(io.BytesIO(plots.render_png(figure)))[:, :, :3]
    assert image.shape[:2] == (round(figure.bbox.height), round(figure.bbox.width))
    (ax,) = [ax for ax in figure.axes if ax.get_label() == "boundary"]
    height = image.shape[0]

    def colour(display_xy, radius=6):
        x, y = display_xy
        row, col = int(round(height - y)), int(round(x))
        return np.median(image[row - radius : row + radius + 1, col - radius : col + radius + 1].reshape(-1, 3), axis=0)

    def blueish(rgb):
        return rgb[2] - rgb[0] > 0.3

    def orangeish(rgb):
        return rgb[0] - rgb[2] > 0.3

    centre = colour(ax.transData.transform((0.0, 0.0)))
    assert blueish(centre), centre
    for corner in ((0.04, 0.04), (0.96, 0.04), (0.04, 0.96), (0.96, 0.96)):
        rgb = colour(ax.transAxes.transform(corner))
        assert orangeish(rgb), (corner, rgb)
    # the palette is the Playground's: orange -> light grey -> blue
    from matplotlib.colors import to_rgb

    cmap = plots.playground_colormap()
    for at, hex_colour in ((0.0, "#f59322"), (0.5, "#e8eaeb"), (1.0, "#0877bd")):
        assert np.allclose(cmap(at)[:3], to_rgb(hex_colour), atol=0.01)


def test_function_fit_of_a_1d_run(runs, tmp_path):
    run = Path(train_json(CONFIGS / "universal_approximation.yaml", "--set", "training.epochs=50", out=runs)["run_dir"])
    assert_png(plot_ok(run))  # auto: the loss curve and the fit
    assert_png(plot_ok(run, "--kind", "function", "--out", tmp_path / "fit.png"))
    figure = plots.make_figure(plots.resolve_runs([run]), "function")
    (ax,) = [ax for ax in figure.axes if ax.get_label() == "function"]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0] == "true sin(x)" and "network" in labels and any(label.startswith("train (") for label in labels)


def test_metric_plots_one_metric(runs, tmp_path):
    run = train_json(SPIRAL, "--set", "training.epochs=10", "--set", "data.val_fraction=0.2", out=runs)["run_dir"]
    assert_png(plot_ok(run, "--metric", "val_accuracy", "--out", tmp_path / "val.png"))
    figure = plots.make_figure(plots.resolve_runs([run]), "curves", metric="val_accuracy")
    assert [ax.get_title() for ax in figure.axes] == ["validation accuracy"]
    assert_clean_error(nnctl("plot", run, "--metric", "val_r2", "--out", tmp_path / "x.png"), "--metric", "'val_r2'", "val_accuracy")


def test_write_run_plots_writes_into_the_run_folder(circle_run):
    written = plots.write_run_plots(circle_run)
    assert written == [circle_run / "curves.png", circle_run / "boundary.png"]
    for path in written:
        assert_png(path)


# ------------------------------------------------------------------------------------------- errors


MISSING_MATPLOTLIB = """
import sys

class BlockMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockMatplotlib())
sys.argv = ["nnctl", "plot", sys.argv[1]]
from nnctl.cli import main
main()
"""


def test_missing_matplotlib_is_one_clear_line(circle_run):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MISSING_MATPLOTLIB), str(circle_run)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr == "error: matplotlib is not installed: pip install 'nnctl[plot]'\n"
    assert result.stdout == ""


def test_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_clean_error(nnctl("plot", tmp_path), str(tmp_path), "not a run folder")
    assert_clean_error(nnctl("plot", tmp_path / "missing"), "no such run folder")
    assert not (tmp_path / "plot.png").exists()


def test_a_run_without_metrics_yet(circle_run, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("run.json", "config.yaml"):
        shutil.copy(circle_run / name, fresh / name)
    assert_clean_error(nnctl("plot", fresh), "no metrics yet")


def test_bad_kind_and_output(circle_run, runs, tmp_path):
    assert_clean_error(nnctl_in_process("plot", circle_run, "--kind", "function", "--out", tmp_path / "x.png"), "--kind function", "'circle'")
    assert_clean_error(nnctl_in_process("plot", circle_run, "--kind", "bars"), "--kind", "allowed: auto, curves, boundary, function")
    assert_clean_error(nnctl_in_process("plot", circle_run, "--out", tmp_path / "x.jpg"), "ending in .png")
    assert_clean_error(nnctl_in_process("plot", circle_run, "--out", tmp_path / "no" / "such" / "x.png"), "cannot write")


def test_training_plots_key_writes_the_figures_at_the_end(runs):
    summary = train_json(CONFIGS / "spiral.yaml", "--set", "training.plots=true", "--set", "training.epochs=20", out=runs)
    run = Path(summary["run_dir"])
    for name in ("curves.png", "boundary.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_sweep_folder_plots_the_metric_against_each_parameter(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"base: {CONFIGS / 'spiral.yaml'}\nname: tiny\nseeds: [0, 1]\n"
        "parameters:\n  optimizer.lr: [0.1, 0.03]\n  model.layers.0.activation: [tanh, relu]\n"
        "overrides: [training.epochs=3]\n"
    )
    assert nnctl("sweep", sweep, "--out", tmp_path / "out", "--json").returncode == 0
    (folder,) = (tmp_path / "out" / "sweeps").iterdir()
    result = nnctl("plot", folder)
    assert result.returncode == 0, result.stderr
    png = folder / "plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from nnctl.plots import sweep_figure

    figure = sweep_figure(folder)
    axes = figure.axes
    assert [ax.get_xlabel() for ax in axes] == ["optimizer.lr", "model.layers.0.activation"]
    assert all("test_accuracy" in ax.get_ylabel() for ax in axes)
    assert all(len(ax.get_legend().get_texts()) == 2 for ax in axes)  # one line per value of the other parameter

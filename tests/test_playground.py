"""``nnctl playground``: plain frames, the saved config, option errors, the session, keys, a real terminal."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import time

import pytest
import yaml
from rich.style import Style

from conftest import REPO, nnctl
from nnctl.errors import NnctlError
from nnctl.playground import (
    PALETTE,
    PlaygroundSession,
    View,
    action_for_key,
    apply_action,
    make_options,
    next_lr,
    render_plain,
    render_rich,
    run_playground,
    sparkline,
)

GRID_CHARS = set("=-+# oxOX")


def frames_of(stdout: str) -> list[str]:
    return re.split(r"^=+$\n", stdout, flags=re.M)


def grid_rows(frame: str) -> list[str]:
    """The characters inside the border of a plain frame's boundary."""
    return [m.group(1) for m in re.finditer(r"^\|([^|]*)\|", frame, flags=re.M)]


# ------------------------------------------------------------------------------------ plain frames


def test_frames_are_plain_text_with_the_boundary_points_losses_and_legend():
    result = nnctl("playground", "--frames", "3", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b" not in out
    frames = frames_of(out)
    assert len(frames) == 3
    epochs = []
    for k, frame in enumerate(frames, 1):
        assert f"frame {k}/3" in frame
        assert "train loss" in frame and "test loss" in frame and "accuracy" in frame
        assert "o x  train points" in frame and "O X  test points" in frame and "predicts class 0" in frame
        assert "dataset     spiral" in frame and "2 → 8 → 8 → 2  tanh" in frame
        epochs.append(int(re.search(r"epoch\s+([\d,]+)", frame).group(1).replace(",", "")))
        rows = grid_rows(frame)
        assert len(rows) >= 8 and len({len(row) for row in rows}) == 1
        chars = set("".join(rows))
        assert chars <= GRID_CHARS, chars - GRID_CHARS
        assert chars & set("=-") and chars & set("+#"), "both sides of the boundary are drawn"
        assert chars & set("ox") and chars & set("OX"), "training and test points are drawn"
        assert re.search(r"train\s+[▁▂▃▄▅▆▇█]+", frame) and re.search(r"test\s+[▁▂▃▄▅▆▇█]+", frame)
    assert epochs == [25, 50, 75]


def test_frames_of_a_regression_dataset_and_epochs_per_frame():
    result = nnctl("playground", "--dataset", "reg-plane", "--frames", "2", "--epochs-per-frame", "4", timeout=60)
    assert result.returncode == 0, result.stderr
    frames = frames_of(result.stdout)
    assert len(frames) == 2 and "epoch       000,008" in frames[1]
    assert "r2" in frames[1] and "2 → 8 → 8 → 1" in frames[1] and "output < 0" in frames[1]
    assert "\x1b" not in result.stdout


# ------------------------------------------------------------------------------------ --save


def test_saved_config_validates_and_trains(tmp_path):
    path = tmp_path / "pg.yaml"
    result = nnctl("playground", "--frames", "1", "--epochs-per-frame", "3", "--save", path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"saved the config to {path}" in result.stderr
    saved = yaml.safe_load(path.read_text())
    assert saved["training"]["epochs"] == 3  # the epochs trained
    validated = nnctl("validate", path)
    assert validated.returncode == 0, validated.stderr
    assert yaml.safe_load(validated.stdout) == saved  # already resolved: every default written
    trained = nnctl("train", path, "--set", "training.epochs=5", "--out", tmp_path / "runs", "--json", timeout=120)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["status"] == "completed" and summary["epochs_run"] == 5


def test_options_map_into_the_saved_config(tmp_path):
    path = tmp_path / "pg.yaml"
    result = nnctl(
        "playground", "--dataset", "circle", "--noise", "0.25", "--layers", "6,3,2", "--activation", "relu",
        "--lr", "0.1", "--batch-size", "16", "--features", "x1,x2,x1_sq,sin_x2", "--regularization", "l1",
        "--rate", "0.003", "--seed", "7", "--momentum", "0.5", "--epochs", "40", "--frames", "1",
        "--epochs-per-frame", "1", "--save", path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(path.read_text())
    assert config["name"] == "playground-circle" and config["seed"] == 7
    data = config["data"]
    assert (data["dataset"], data["noise"], data["features"]) == ("circle", 0.25, ["x1", "x2", "x1_sq", "sin_x2"])
    assert data["test_fraction"] == 0.5 and data["samples"] == 500
    layers = config["model"]["layers"]
    assert [(layer["units"], layer["activation"]) for layer in layers] == [(6, "relu"), (3, "relu"), (2, "relu"), (2, "identity")]
    assert config["model"]["regularization"] == {"l1": 0.003, "l2": 0.0}
    assert config["loss"] == "cross_entropy"
    assert config["optimizer"]["name"] == "sgd" and config["optimizer"]["lr"] == 0.1 and config["optimizer"]["momentum"] == 0.5
    assert config["training"]["batch_size"] == 16 and config["training"]["epochs"] == 40

    path2 = tmp_path / "reg.yaml"
    result = nnctl(
        "playground", "--dataset", "reg-gauss", "--layers", "4", "--activation", "linear", "--regularization", "l2",
        "--frames", "1", "--epochs-per-frame", "2", "--save", path2, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(path2.read_text())
    assert config["loss"] == "mse" and config["data"]["samples"] == 1200
    assert [(layer["units"], layer["activation"]) for layer in config["model"]["layers"]] == [(4, "identity"), (1, "identity")]
    assert config["model"]["regularization"] == {"l1": 0.0, "l2": 0.001}  # --regularization without --rate
    assert config["training"]["epochs"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "spirals"], "--dataset: unknown dataset 'spirals' (did you mean 'spiral'?)"),
        (["--features", "x1,x3"], "--features: unknown feature 'x3'"),
        (["--lr", "-0.1"], "--lr: the learning rate must be a positive number"),
        (["--layers", "8,x"], "--layers: 'x' is not a number of units"),
    ],
)
def test_bad_options_are_one_clean_line_and_exit_2(args, message):
    result = nnctl("playground", *args, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize(
    "options, message",
    [
        ({"noise": 0.9}, "--noise: must be between 0 and 0.5"),
        ({"activation": "softmax"}, "--activation: unknown activation 'softmax' (did you mean 'softplus'?)"),
        ({"rate": 0.01}, "--rate: choose the penalty with --regularization l1 or l2"),
        ({"regularization": "l3"}, "--regularization: 'l3' is not allowed"),
        ({"layers": "8,0"}, "--layers: '0' is not a number of units"),
        ({"features": "x1,x1"}, "--features: each feature may appear once"),
        ({"batch_size": 0}, "--batch-size: must be at least 1"),
        ({"lr": float("nan")}, "--lr: the learning rate must be a positive number"),
    ],
)
def test_more_bad_options(options, message):
    with pytest.raises(NnctlError) as caught:
        make_options(**options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_frames_and_save_are_checked(tmp_path):
    session_options = make_options(dataset="gauss", layers="2")
    with pytest.raises(NnctlError, match="--frames: must be at least 1"):
        run_playground(session_options, frames=0)
    with pytest.raises(NnctlError, match="--save: .* is a folder"):
        run_playground(session_options, frames=1, save=tmp_path)
    with pytest.raises(NnctlError, match="--save: .*cannot write the config"):
        run_playground(session_options, frames=1, save=tmp_path / "missing" / "pg.yaml")


# ------------------------------------------------------------------------------------ the session


def test_session_learns_circle_and_the_boundary_has_both_colours():
    session = PlaygroundSession(make_options(dataset="circle", noise=0.1, layers="4,2"))
    assert session.epoch == 0 and len(session.history) == 1
    for _ in range(40):
        metrics = session.step_epoch()
    assert session.epoch == 40 and len(session.history) == 41
    assert metrics["test_accuracy"] > 0.85
    grid = session.grid_output(40, 30)
    assert grid.shape == (30, 40) and grid.min() < -0.8 and grid.max() > 0.8
    text = render_rich(session, View(interactive=True), columns=100, lines=30)
    colours = set()
    for span in text.spans:
        style = Style.parse(span.style) if isinstance(span.style, str) else span.style
        for colour in (style.color, style.bgcolor):
            if colour is not None and colour.triplet is not None:
                colours.add(colour.triplet.hex)
    strong = 4  # the outer quarter of each side of the scale
    assert colours & set(PALETTE[:strong]), "orange (class 0) is drawn"
    assert colours & set(PALETTE[-strong:]), "blue (class 1) is drawn"
    assert "▀" in text.plain and "●" in text.plain and "○" in text.plain
    assert "space pause" in text.plain and "q quit" in text.plain
    plain = render_plain(session, View(), 80)
    assert "=" in "".join(grid_rows(plain)) and "#" in "".join(grid_rows(plain))
    assert "\x1b" not in plain


def test_session_retraces_nnctl_train_exactly(tmp_path):
    """to_yaml() after N epochs, trained by nnctl train, reaches the very same test loss."""
    session = PlaygroundSession(make_options(dataset="xor", noise=0.1, layers="4,2", regularization="l2", rate=0.003, batch_size=7))
    for _ in range(6):
        session.step_epoch()
    path = tmp_path / "pg.yaml"
    path.write_text(session.to_yaml())
    trained = nnctl("train", path, "--out", tmp_path / "runs", "--json", timeout=120)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["epochs_run"] == 6
    assert summary["test_loss"] == pytest.approx(session.metrics["test_loss"], rel=1e-6)
    assert summary["test_accuracy"] == session.metrics["test_accuracy"]


def test_sparkline():
    assert sparkline([3.0, 2.0, 1.0], 10) == "█▅▁"
    assert sparkline([0.0, 1.0, 7.0], 10) == "▁▂█"
    assert sparkline([1.0, 1.0], 5) == "▅▅"  # a flat curve sits in the middle
    assert len(sparkline(list(range(100)), 20)) == 20
    assert sparkline([0.5, float("nan")], 5, 0.0, 1.0) == "▅█"  # a diverged loss is a full block
    assert sparkline([], 5) == ""


# ------------------------------------------------------------------------------------ keys


def test_keys_map_to_actions():
    assert action_for_key(" ") == "pause"
    assert action_for_key("s") == "step"
    assert action_for_key("r") == "reset"
    assert action_for_key("+") == action_for_key("=") == "lr_up"
    assert action_for_key("-") == "lr_down"
    assert action_for_key("d") == "dataset"
    assert action_for_key("a") == "activation"
    assert action_for_key("t") == "test_points"
    assert action_for_key("q") == "quit"
    assert action_for_key("z") is None


def test_learning_rate_ladder():
    up, rate = [], 0.03
    for _ in range(6):
        rate = next_lr(rate, +1)
        up.append(rate)
    assert up == [0.1, 0.3, 1.0, 3.0, 10.0, 10.0]
    down, rate = [], 0.03
    for _ in range(6):
        rate = next_lr(rate, -1)
        down.append(rate)
    assert down == [0.01, 0.003, 0.001, 0.0001, 0.00001, 0.00001]
    assert next_lr(0.05, +1) == 0.1 and next_lr(0.05, -1) == 0.03


def test_key_actions_change_the_session():
    session = PlaygroundSession(make_options(dataset="circle", layers="4,2"))
    view = View(interactive=True)
    assert apply_action(action_for_key(" "), session, view) and view.paused
    assert apply_action(action_for_key(" "), session, view) and not view.paused
    assert apply_action(action_for_key("s"), session, view)
    assert session.epoch == 1 and view.paused  # a single step pauses
    weights = session.model.state_dict()["layers.0.weight"].copy()
    apply_action("lr_up", session, view)
    assert session.options.lr == 0.1 and session.optimizer.lr == 0.1 and session.epoch == 1  # training goes on
    assert (session.model.state_dict()["layers.0.weight"] == weights).all()
    apply_action("lr_down", session, view)
    apply_action("lr_down", session, view)
    assert session.options.lr == 0.01 and "learning rate 0.01" in view.message
    assert "lr: 0.01" in session.to_yaml()
    apply_action("reset", session, view)
    assert session.options.seed == 1 and session.epoch == 0 and "seed: 1" in session.to_yaml()
    apply_action("activation", session, view)
    assert session.options.activation == "relu" and session.config.model.layers[0].activation.name == "relu"
    apply_action("dataset", session, view)
    assert session.options.dataset == "xor" and session.epoch == 0
    for _ in range(3):
        apply_action("dataset", session, view)
    assert session.options.dataset == "reg-plane" and session.task == "regression"
    assert session.config.loss == "mse" and session.config.model.layers[-1].units == 1
    session.step_epoch()
    assert "reg-plane" in render_plain(session, View(), 80)
    apply_action("test_points", session, view)
    assert not view.show_test
    assert apply_action(None, session, view) is True
    assert apply_action(action_for_key("q"), session, view) is False


def test_activation_cycle_covers_the_playgrounds_four():
    session = PlaygroundSession(make_options(dataset="gauss", layers="2"))
    seen = []
    for _ in range(4):
        apply_action("activation", session, View())
        seen.append(session.options.activation)
    assert seen == ["relu", "sigmoid", "identity", "tanh"]


# ------------------------------------------------------------------------------------ a real terminal


NEEDS_A_PTY = pytest.mark.skipif(not hasattr(os, "openpty") or sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


@contextlib.contextmanager
def playground_in_a_pty(*args: str):
    """``nnctl playground ARGS`` on a new 80x24 pseudo-terminal that is its controlling terminal (so that ^C
    is a SIGINT): the process, the master and slave ends, and the slave's terminal settings before it ran;
    the process is killed if it is still running at the end."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    settings = termios.tcgetattr(slave)

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "playground", *args],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO, preexec_fn=controlling_terminal,
        env={**os.environ, "TERM": "xterm-256color"},
    )  # fmt: skip
    try:
        yield process, master, slave, settings
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(slave)
        os.close(master)


@NEEDS_A_PTY
@pytest.mark.parametrize("ending", ["q", "\x03"])
def test_live_in_a_pseudo_terminal(tmp_path, ending):
    """Under a pty the playground is live: keys change it, q (or Ctrl-C) quits with exit 0 and the
    terminal settings restored; --save writes the final settings."""
    import termios

    path = tmp_path / "live.yaml"
    output = bytearray()

    def read_for(seconds: float, until: bytes | None = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until in output):
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    output.extend(os.read(master, 65536))
                except OSError:
                    return

    with playground_in_a_pty("--dataset", "circle", "--save", str(path)) as (process, master, slave, settings):
        read_for(20, until=b"q quit")
        assert b"q quit" in output, output[-500:]
        for key in "d+":  # circle -> xor; lr 0.03 -> 0.1
            os.write(master, key.encode())
            read_for(0.3)
        os.write(master, ending.encode())
        read_for(5, until=b"saved the config")
        try:
            assert process.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            read_for(0.5)
            pytest.fail(f"still running 15 s after {ending!r}; its last output: {bytes(output[-1500:])!r}")
        assert termios.tcgetattr(slave) == settings  # cbreak mode undone
    text = output.decode("utf-8", errors="replace")
    assert "Traceback" not in text
    assert "epoch" in text and "▀" in text and "\x1b[" in text  # drawn with colours
    assert "learning rate 0.1" in text
    config = yaml.safe_load(path.read_text())
    assert config["data"]["dataset"] == "xor" and config["optimizer"]["lr"] == 0.1
    assert config["training"]["epochs"] >= 1


@NEEDS_A_PTY
def test_ctrl_c_quits_inside_a_long_frame():
    """Ctrl-C is read after each epoch, not each frame: a frame of a million epochs still quits at once, with
    exit 0 and the terminal settings restored."""
    import termios

    output = bytearray()
    with playground_in_a_pty("--epochs-per-frame", "1000000") as (process, master, slave, settings):
        deadline = time.monotonic() + 20
        while b"\x1b[?1049h" not in output and time.monotonic() < deadline:  # the full screen is on: training
            if select.select([master], [], [], 0.05)[0]:
                output.extend(os.read(master, 65536))
        assert b"\x1b[?1049h" in output, output[-500:]
        os.write(master, b"\x03")
        assert process.wait(timeout=10) == 0
        assert termios.tcgetattr(slave) == settings

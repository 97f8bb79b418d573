"""``nnctl playground``: the TensorFlow Playground in a terminal.

It shows a ``PlaygroundSession`` (``session.py``).  Drawing is pure: ``render_rich(session, view)`` gives a
rich ``Text`` (the decision boundary in coloured half blocks "▀", two grid rows per character cell),
``render_plain`` plain text without any control code.  ``action_for_key`` maps a key to an action and
``apply_action`` performs it, so the interactive loop (``run_interactive``) only reads keys and redraws.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.config import FEATURES, did_you_mean
from nnctl.errors import NnctlError
from nnctl.playground.options import (
    ACTIVATION_ALIASES,
    ACTIVATIONS,
    DATASETS,
    LR_LADDER,
    MAX_LAYERS,
    MAX_UNITS,
    REGULARIZATIONS,
    PlaygroundOptions,
)
from nnctl.playground.session import EXTENT, PlaygroundSession

# ------------------------------------------------------------------------------------ the terminal's flags


def parse_layers(text: str, what: str = "--layers") -> list[int]:
    """``"8,8"`` -> [8, 8]; ``""``, ``"0"`` or ``"none"``: no hidden layer (a linear model)."""
    text = text.strip()
    if text.lower() in ("", "0", "none"):
        return []
    units = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise NnctlError(f"{what}: {part!r} is not a number of units; give positive integers separated by commas, e.g. 8,8")
        units.append(int(part))
    if len(units) > MAX_LAYERS or max(units) > MAX_UNITS:
        raise NnctlError(f"{what}: {text!r} is too large for a live playground (at most {MAX_LAYERS} layers of {MAX_UNITS} units)")
    return units


def parse_features(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise NnctlError(f"--features: give at least one of {', '.join(FEATURES)}")
    for name in names:
        if name not in FEATURES:
            raise NnctlError(f"--features: unknown feature {name!r}{did_you_mean(name, list(FEATURES))}; allowed: {', '.join(FEATURES)}")
    if len(set(names)) != len(names):
        raise NnctlError("--features: each feature may appear once")
    return names


def make_options(
    dataset: str = "spiral",
    noise: float = 0.0,
    layers: str = "8,8",
    activation: str = "tanh",
    lr: float = 0.03,
    batch_size: int = 10,
    features: str = "x1,x2",
    regularization: str = "none",
    rate: float | None = None,
    seed: int = 0,
    momentum: float = 0.0,
    epochs: int | None = None,
) -> PlaygroundOptions:
    """The command line's options, checked one by one with messages that name the option."""
    if dataset not in DATASETS:
        raise NnctlError(f"--dataset: unknown dataset {dataset!r}{did_you_mean(dataset, list(DATASETS))}; allowed: {', '.join(DATASETS)}")
    if not 0 <= noise <= 0.5:
        raise NnctlError(f"--noise: must be between 0 and 0.5 (the Playground's 0 to 50 %), got {noise:g}")
    activation = ACTIVATION_ALIASES.get(activation, activation)
    if activation not in ACTIVATIONS:
        allowed = [*ACTIVATIONS, *ACTIVATION_ALIASES]
        raise NnctlError(f"--activation: unknown activation {activation!r}{did_you_mean(activation, allowed)}; allowed: {', '.join(allowed)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise NnctlError(f"--lr: the learning rate must be a positive number, got {lr:g}")
    if batch_size < 1:
        raise NnctlError(f"--batch-size: must be at least 1, got {batch_size}")
    if regularization not in REGULARIZATIONS:
        raise NnctlError(f"--regularization: {regularization!r} is not allowed; allowed: {', '.join(REGULARIZATIONS)}")
    if rate is not None and not (rate >= 0 and math.isfinite(rate)):
        raise NnctlError(f"--rate: the regularization rate must be 0 or more, got {rate:g}")
    if rate is not None and rate > 0 and regularization == "none":
        raise NnctlError("--rate: choose the penalty with --regularization l1 or l2")
    if seed < 0 or seed >= 2**32:
        raise NnctlError(f"--seed: must be between 0 and 2^32 - 1, got {seed}")
    if not 0 <= momentum < 1:
        raise NnctlError(f"--momentum: must be in [0, 1), got {momentum:g}")
    if epochs is not None and epochs < 1:
        raise NnctlError(f"--epochs: must be at least 1, got {epochs}")
    return PlaygroundOptions(
        dataset=dataset,
        noise=noise,
        layers=parse_layers(layers),
        activation=activation,
        lr=lr,
        batch_size=batch_size,
        features=parse_features(features),
        regularization=regularization,
        rate=(0.001 if rate is None else rate) if regularization != "none" else 0.0,
        seed=seed,
        momentum=momentum,
        epochs=epochs,
    )


#: what ``a`` cycles through (the Playground's four; "linear" is nnctl's identity)
CYCLE_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
MAX_GRID = 100

# the Playground's palette: orange (class 0, -1) -> light grey -> blue (class 1, +1)
ORANGE = (0xF5, 0x93, 0x22)
GREY = (0xE8, 0xEA, 0xEB)
BLUE = (0x08, 0x77, 0xBD)
#: colour steps on each side of grey (output values are quantised to 2 * LEVELS + 1 colours)
LEVELS = 16
#: the Playground's heatmap canvas is drawn with alpha 160 (of 255) over the white page
HEAT_ALPHA = 160 / 255
SPARK = "▁▂▃▄▅▆▇█"


# ------------------------------------------------------------------------------------ drawing


@dataclass
class View:
    """What a frame shows besides the session: the interface's own state."""

    paused: bool = False
    show_test: bool = True
    interactive: bool = False
    message: str = ""
    frame: tuple[int, int] | None = None  # (k, N) in --frames mode


#: columns of the text panel right of the boundary
PANEL_WIDTH = 38
KEYS_HELP = "space pause  s step  r reset  +/- lr  d dataset  a activation  t test  q quit"


def palette_colour(value: float) -> tuple[int, int, int]:
    """The Playground's diverging scale: -1 orange, 0 light grey, +1 blue."""
    value = min(1.0, max(-1.0, float(value)))
    end, t = (BLUE, value) if value >= 0 else (ORANGE, -value)
    return tuple(round(g + (e - g) * t) for g, e in zip(GREY, end))


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def over_white(rgb: tuple[int, int, int], alpha: float = HEAT_ALPHA) -> tuple[int, int, int]:
    return tuple(round(alpha * c + (1 - alpha) * 255) for c in rgb)


#: the quantised heatmap scale: index i is the value (i - LEVELS) / LEVELS, drawn as the Playground draws its
#: heatmap (alpha 160/255 over white), so that the points, in the full colours, stand out
PALETTE = [hex_colour(over_white(palette_colour((i - LEVELS) / LEVELS))) for i in range(2 * LEVELS + 1)]


def quantise(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((np.asarray(values, dtype=np.float64) + 1.0) * LEVELS), 0, 2 * LEVELS).astype(np.int64)


def sparkline(values, width: int, low: float | None = None, high: float | None = None) -> str:
    """``values`` (resampled to at most ``width``) as block characters from ``low`` (▁) to ``high`` (█),
    by default their own range; a non-finite value is drawn as █."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or width < 1:
        return ""
    if len(values) > width:
        values = values[np.linspace(0, len(values) - 1, width).round().astype(np.int64)]
    finite = values[np.isfinite(values)]
    low = low if low is not None else (float(finite.min()) if len(finite) else 0.0)
    high = high if high is not None else (float(finite.max()) if len(finite) else 1.0)
    span = high - low
    scaled = (values - low) / span if span > 0 else np.full(len(values), 0.5)
    scaled = np.where(np.isfinite(values), scaled, 1.0)
    index = np.clip(np.rint(scaled * (len(SPARK) - 1)), 0, len(SPARK) - 1).astype(np.int64)
    return "".join(SPARK[i] for i in index)


def point_marks(session: PlaygroundSession, view: View, width: int, height: int) -> dict[tuple[int, int], tuple[str, float]]:
    """(pixel row, column) -> ("train" | "test", value in [-1, 1]) for the points inside [-6, 6]^2;
    training points are drawn over test points."""
    marks: dict[tuple[int, int], tuple[str, float]] = {}
    splits = [("test", session.test_points)] if view.show_test else []
    for kind, split in splits + [("train", session.train_points)]:
        if split is None:
            continue
        x, y = split.x[:, 0], split.x[:, 1]
        cols = np.floor((x + EXTENT) / (2 * EXTENT) * width).astype(np.int64)
        rows = np.floor((EXTENT - y) / (2 * EXTENT) * height).astype(np.int64)
        inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        if session.task == "regression":
            values = np.clip(split.y.astype(np.float64), -1, 1)
        else:
            values = 2.0 * split.y - 1.0
        for r, c, v in zip(rows[inside], cols[inside], values[inside]):
            marks[(int(r), int(c))] = (kind, float(v))
    return marks


def grid_size(columns: int, lines: int, reserved_lines: int) -> int:
    """Rows of text for the boundary: as large as fits beside the panel, at most 50 (100 grid rows)."""
    return max(4, min(MAX_GRID // 2, lines - reserved_lines, (columns - PANEL_WIDTH - 3) // 2))


def describe_network(session: PlaygroundSession) -> str:
    options = session.options
    sizes = [str(len(options.features)), *map(str, options.layers), "1" if options.is_regression else "2"]
    return " → ".join(sizes) + (f"  {options.activation}" if options.layers else "")


def panel_lines(session: PlaygroundSession, view: View) -> list[list[tuple[str, str]]]:
    """The text beside the boundary, as lines of (text, style name) pieces; plain output drops the styles."""
    options, metrics = session.options, session.metrics
    score = "r2" if session.task == "regression" else "accuracy"
    status = "paused" if view.paused else ("running" if view.interactive else "")
    if view.frame:
        status = f"frame {view.frame[0]}/{view.frame[1]}"
    history = np.array(session.history, dtype=np.float64)
    finite = history[np.isfinite(history)]
    # both curves on one scale, from the lowest to the highest loss so far
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    spark_width = PANEL_WIDTH - 12
    penalty = "none" if options.regularization == "none" else f"{options.regularization} {options.rate:g}"
    momentum = f", momentum {options.momentum:g}" if options.momentum else ""

    def number(value: float) -> str:
        return f"{value:.4f}" if math.isfinite(value) else "diverged"

    lines: list[list[tuple[str, str]]] = [
        [("nnctl playground", "title"), (f"  {status}", "status")],
        [("epoch       ", "label"), (f"{session.epoch:07,d}", "value")],
        [("train loss  ", "label"), (number(metrics["train_loss"]), "value"), (f"  {score} {metrics['train_' + score]:.3f}", "dim")],
        [("test loss   ", "label"), (number(metrics["test_loss"]), "value"), (f"  {score} {metrics['test_' + score]:.3f}", "dim")],
        [("  train     ", "label"), (sparkline(history[:, 0], spark_width, low, high), "spark_train")],
        [("  test      ", "label"), (sparkline(history[:, 1], spark_width, low, high), "spark_test")],
        [],
        [("dataset     ", "label"), (f"{options.dataset}, noise {options.noise:g}", "value")],
        [("features    ", "label"), (", ".join(options.features), "value")],
        [("network     ", "label"), (describe_network(session), "value")],
        [("lr          ", "label"), (f"{options.lr:g}, batch {options.batch_size}{momentum}", "value")],
        [("penalty     ", "label"), (penalty, "value"), (f"   seed {options.seed}", "label")],
        [],
    ]
    return lines + legend_lines(session, view) + ([[], [(view.message, "message")]] if view.message else [])


def legend_lines(session: PlaygroundSession, view: View) -> list[list[tuple[str, str]]]:
    regression = session.task == "regression"
    low, high = ("< 0", "> 0") if regression else ("class 0", "class 1")
    colour = "output" if regression else "p(class 1)"
    if view.interactive:
        return [
            [("●", "train_low"), ("●", "train_high"), (" train  ", "dim"), ("○", "test_low"), ("○", "test_high"), (" test", "dim")],
            [(f"{colour} {'-1' if regression else '0'} ", "dim"), ("██", "heat_low"), ("██", "heat_mid"), ("██", "heat_high")]
            + [(" +1" if regression else " 1", "dim")],
        ]
    return [
        [(f"o x  train points ({low}, {high})", "")],
        [("O X  test points", "")],
        [(f"= -  {'output' if regression else 'predicts'} {low}   + #  {high}", "")],
    ]


# plain text: shading by output value, and letters for points
PLAIN_SHADES = ((-0.6, "="), (-0.2, "-"), (0.2, " "), (0.6, "+"))
PLAIN_POINTS = {("train", False): "o", ("train", True): "x", ("test", False): "O", ("test", True): "X"}


def plain_shade(value: float) -> str:
    for bound, char in PLAIN_SHADES:
        if value < bound:
            return char
    return "#"


def render_plain(session: PlaygroundSession, view: View, columns: int = 80) -> str:
    """A frame as plain text: the boundary (one character per grid cell, rows twice as tall as wide so the
    square looks square) framed by a border, the panel to its right.  No control codes."""
    rows = max(8, min(24, grid_size(columns, 1000, 0)))
    width = 2 * rows
    values = session.grid_output(width, rows)
    marks = point_marks(session, view, width, rows)
    grid = ["+" + "-" * width + "+"]
    for r in range(rows):
        cells = []
        for c in range(width):
            mark = marks.get((r, c))
            cells.append(PLAIN_POINTS[(mark[0], mark[1] >= 0)] if mark else plain_shade(values[r, c]))
        grid.append("|" + "".join(cells) + "|")
    grid.append(grid[0])
    panel = ["".join(text for text, _ in line) for line in panel_lines(session, view)]
    lines = []
    for i in range(max(len(grid), len(panel))):
        left = grid[i] if i < len(grid) else " " * (width + 2)
        right = panel[i] if i < len(panel) else ""
        lines.append((left + "  " + right).rstrip())
    return "\n".join(lines) + "\n"


# Terminals without truecolor (tmux, many ssh sessions: 256 colours; old consoles: 16).  Left to rich, every
# colour goes to the nearest entry of the whole palette, and the pale heatmap tints come out pink, lavender
# and teal.  Instead each colour goes to the nearest entry of its own family (CIELAB distance): oranges
# stay orange, blues stay blue, and the undecided middle turns light grey.
#: xterm-256 entries of each family (the 6x6x6 cube: index 16 + 36 r + 6 g + b; greys 232-255)
ORANGES_256 = (208, 209, 214, 215, 216, 223)
BLUES_256 = (25, 31, 32, 33, 38, 39, 67, 68, 74, 75, 110, 111, 117, 153)
GREYS_256 = (231, 255, 254, 253, 252, 251, 250)
#: 16 colours: yellow stands for orange; the heatmap in the normal colours (light grey when weak), the
#: points in the bright ones so that they stand out on a region of their own class
STANDARD_HEAT = {"orange": 3, "blue": 4, "grey": 7}
STANDARD_POINTS = {"orange": 11, "blue": 12, "grey": 15}
#: heatmap strength (0 to 1) from which the 16-colour heatmap shows a class colour instead of grey
STANDARD_STRENGTH = 0.4


def xterm_rgb(index: int) -> tuple[int, int, int]:
    """The colour of an xterm-256 palette entry from 16 on (the cube and the grey ramp)."""
    if index >= 232:
        return (8 + 10 * (index - 232),) * 3
    levels = (0, 95, 135, 175, 215, 255)
    index -= 16
    return levels[index // 36], levels[index // 6 % 6], levels[index % 6]


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB colour, for perceptual distances."""

    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = map(linear, rgb)
    xyz = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    fx, fy, fz = (t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def nearest_xterm(rgb: tuple[int, int, int], candidates: tuple[int, ...]) -> int:
    target = _lab(rgb)
    return min(candidates, key=lambda index: sum((a - b) ** 2 for a, b in zip(target, _lab(xterm_rgb(index)))))


def _family(value: float) -> str:
    return "grey" if value == 0 else ("blue" if value > 0 else "orange")


def terminal_colour(rgb: tuple[int, int, int], value: float, color_system: str | None, point: bool = False) -> str:
    """A rich colour for ``rgb``, which shows ``value`` (-1 orange .. +1 blue), on this colour system."""
    family = _family(value)
    if color_system == "256":
        candidates = {"orange": ORANGES_256, "blue": BLUES_256, "grey": ()}[family]
        return f"color({nearest_xterm(rgb, candidates if point and candidates else candidates + GREYS_256)})"
    if color_system in ("standard", "windows"):
        if point:
            return f"color({STANDARD_POINTS[family]})"
        return f"color({STANDARD_HEAT[family if abs(value) >= STANDARD_STRENGTH else 'grey']})"
    return hex_colour(rgb)


_PALETTES: dict = {}


def terminal_palette(color_system: str | None) -> list[str]:
    """PALETTE (the quantised heatmap scale) in the colours of a terminal's colour system."""
    if color_system not in _PALETTES:
        _PALETTES[color_system] = [
            terminal_colour(over_white(palette_colour((i - LEVELS) / LEVELS)), (i - LEVELS) / LEVELS, color_system)
            for i in range(2 * LEVELS + 1)
        ]  # fmt: skip
    return _PALETTES[color_system]


def point_colour(value: float, regression: bool, color_system: str | None = "truecolor") -> str:
    """A point's colour: its class's full colour (its target's, for regression)."""
    value = float(value) if regression else (1.0 if value >= 0 else -1.0)
    return terminal_colour(palette_colour(value), value, color_system, point=True)


def rich_styles(color_system: str | None = "truecolor") -> dict[str, str]:
    """RICH_STYLES with the colours of a terminal's colour system."""
    if color_system == "truecolor" or color_system is None:
        return RICH_STYLES
    heat = terminal_palette(color_system)
    orange, blue = point_colour(-1, False, color_system), point_colour(1, False, color_system)
    grey = "color(245)" if color_system == "256" else "color(8)"
    return {
        **RICH_STYLES, "spark_train": grey, "heat_low": heat[0], "heat_mid": heat[LEVELS], "heat_high": heat[-1],
        "train_low": f"bold {orange}", "train_high": f"bold {blue}", "test_low": f"bold {orange}", "test_high": f"bold {blue}",
    }  # fmt: skip


RICH_STYLES = {
    "title": "bold",
    "status": "bold yellow",
    "label": "",
    "value": "bold",
    "dim": "dim",
    "spark_train": "#888888",
    "spark_test": "bold",
    "message": "yellow",
    "heat_low": PALETTE[0],
    "heat_mid": PALETTE[LEVELS],
    "heat_high": PALETTE[-1],
    "train_low": f"bold {hex_colour(ORANGE)}",
    "train_high": f"bold {hex_colour(BLUE)}",
    "test_low": f"bold {hex_colour(ORANGE)}",
    "test_high": f"bold {hex_colour(BLUE)}",
    "": "",
}


def _half_block_style(top: int, bottom: int, color_system: str | None = "truecolor"):
    from rich.style import Style

    key = (top, bottom, color_system)
    style = _STYLE_CACHE.get(key)
    if style is None:
        palette = terminal_palette(color_system)
        style = _STYLE_CACHE[key] = Style(color=palette[top], bgcolor=palette[bottom])
    return style


def _point_style(kind: str, value: float, regression: bool, background: int, color_system: str | None = "truecolor"):
    from rich.style import Style

    colour = point_colour(value, regression, color_system)
    key = (kind, colour, background, color_system)
    style = _STYLE_CACHE.get(key)
    if style is None:
        style = _STYLE_CACHE[key] = Style(color=colour, bgcolor=terminal_palette(color_system)[background], bold=True)
    return style


_STYLE_CACHE: dict = {}
#: training points filled, test points hollow (the Playground outlines them in white and black)
POINT_CHARS = {"train": "●", "test": "○"}


def render_rich(session: PlaygroundSession, view: View, columns: int = 100, lines: int = 40, color_system: str | None = "truecolor"):
    """A frame as a rich ``Text`` that fits ``columns`` x ``lines``: the boundary in half blocks "▀" (upper
    grid row as the foreground colour, lower row as the background), points as "●" outlined in white
    (training) or black (test), the panel to the right, the keys below.  ``color_system`` is the terminal's
    (rich's ``Console.color_system``): without truecolor the colours are mapped by ``terminal_colour``."""
    from rich.text import Span, Text

    rows = grid_size(columns, lines, 2)
    width = 2 * rows
    values = quantise(session.grid_output(width, 2 * rows))
    marks = point_marks(session, view, width, 2 * rows)
    regression = session.task == "regression"
    cells: dict[tuple[int, int], tuple[str, float]] = {}
    for (r, c), mark in marks.items():
        cells[(r // 2, c)] = mark if mark[0] == "train" or (r // 2, c) not in cells else cells[(r // 2, c)]
    panel = panel_lines(session, view)
    styles = rich_styles(color_system)
    out = Text(no_wrap=True, overflow="crop", end="")
    for r in range(max(rows, len(panel))):
        if r < rows:
            chars, spans, start, current = [], [], 0, None
            for c in range(width):
                mark = cells.get((r, c))
                if mark:
                    background = (values[2 * r, c] + values[2 * r + 1, c]) // 2
                    char, style = POINT_CHARS[mark[0]], _point_style(mark[0], mark[1], regression, background, color_system)
                else:
                    char, style = "▀", _half_block_style(values[2 * r, c], values[2 * r + 1, c], color_system)
                chars.append(char)
                if style is not current:
                    if current is not None:
                        spans.append(Span(start, c, current))
                    start, current = c, style
            spans.append(Span(start, width, current))
            line = Text("".join(chars), spans=spans)
        else:
            line = Text(" " * width)
        line.append("  ")
        for text, style in panel[r] if r < len(panel) else []:
            line.append(text, styles.get(style, ""))
        out.append_text(line)
        out.append("\n")
    out.append(KEYS_HELP if view.interactive else "", "dim")
    return out


# ------------------------------------------------------------------------------------ keys


#: key -> action; the interactive loop reads keys, ``apply_action`` changes the session and the view
KEY_ACTIONS = {
    " ": "pause",
    "p": "pause",
    "s": "step",
    "r": "reset",
    "+": "lr_up",
    "=": "lr_up",
    "-": "lr_down",
    "_": "lr_down",
    "d": "dataset",
    "a": "activation",
    "t": "test_points",
    "q": "quit",
    "Q": "quit",
    "\x04": "quit",  # Ctrl-D
}


def action_for_key(key: str) -> str | None:
    return KEY_ACTIONS.get(key)


def next_lr(lr: float, direction: int) -> float:
    """The next rung of the Playground's learning-rate ladder above (direction +1) or below (-1) ``lr``."""
    if direction > 0:
        return next((rung for rung in LR_LADDER if rung > lr * (1 + 1e-9)), LR_LADDER[-1])
    return next((rung for rung in reversed(LR_LADDER) if rung < lr * (1 - 1e-9)), LR_LADDER[0])


def cycle(options: tuple[str, ...], current: str) -> str:
    return options[(options.index(current) + 1) % len(options)] if current in options else options[0]


def apply_action(action: str | None, session: PlaygroundSession, view: View) -> bool:
    """Perform an action; False when it is time to quit."""
    if action is None:
        return True
    if action == "quit":
        return False
    if action == "pause":
        view.paused = not view.paused
        view.message = "paused: space resumes, s steps one epoch" if view.paused else ""
    elif action == "step":
        view.paused = True
        session.step_epoch()
        view.message = f"one epoch: {session.epoch}"
    elif action == "reset":
        session.reset(session.options.seed + 1)
        view.message = f"reset with seed {session.options.seed}"
    elif action in ("lr_up", "lr_down"):
        session.set_lr(next_lr(session.options.lr, 1 if action == "lr_up" else -1))
        view.message = f"learning rate {session.options.lr:g}"
    elif action == "dataset":
        session.set_dataset(cycle(DATASETS, session.options.dataset))
        view.message = f"dataset {session.options.dataset}"
    elif action == "activation":
        session.set_activation(cycle(CYCLE_ACTIVATIONS, session.options.activation))
        view.message = f"activation {session.options.activation}"
    elif action == "test_points":
        view.show_test = not view.show_test
        view.message = "test points shown" if view.show_test else "test points hidden"
    return True


# ------------------------------------------------------------------------------------ running it

DEFAULT_FRAMES = 5
PLAIN_EPOCHS_PER_FRAME = 25
LIVE_EPOCHS_PER_FRAME = 5
FRAMES_PER_SECOND = 12


def run_frames(session: PlaygroundSession, frames: int, epochs_per_frame: int, stream, columns: int = 80) -> None:
    """``frames`` frames of plain text, ``epochs_per_frame`` epochs apart, separated by a line of '='."""
    view = View()
    for k in range(1, frames + 1):
        for _ in range(epochs_per_frame):
            session.step_epoch()
        view.frame = (k, frames)
        view.message = "the loss became non-finite: lower the learning rate (--lr)" if session.diverged else ""
        text = render_plain(session, view, columns)
        if k > 1:
            stream.write("=" * max(len(line) for line in text.splitlines()) + "\n")
        stream.write(text)
        stream.flush()


def read_keys(fd: int, timeout: float) -> str:
    """The keys typed within ``timeout`` seconds ('' if none), without blocking longer."""
    import select

    ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return ""
    data = os.read(fd, 64)
    if not data:
        return "q"  # end of input
    return data.decode("utf-8", errors="ignore")


def run_interactive(session: PlaygroundSession, epochs_per_frame: int, stdin=None) -> None:
    """Train and redraw about FRAMES_PER_SECOND times a second until q (or Ctrl-C); keys act at once.
    The terminal is put in cbreak mode (keys arrive unbuffered, unechoed) and always restored.

    Ctrl-C sets a flag that the loop reads after each epoch, rather than raising KeyboardInterrupt wherever
    the program happens to be: an exception raised inside a finalizer is printed and dropped by Python, and the
    playground would then never quit.  A second Ctrl-C raises at once (an epoch that never ends)."""
    import signal
    import termios
    import threading
    import tty

    from rich.console import Console
    from rich.live import Live

    stdin = stdin or sys.stdin
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    console = Console()
    view = View(interactive=True)
    quitting: list[int] = []

    def on_ctrl_c(signum, frame):
        if quitting:
            raise KeyboardInterrupt
        quitting.append(signum)

    handling = threading.current_thread() is threading.main_thread()  # Python runs signal handlers there only
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if handling else None
    try:
        tty.setcbreak(fd)
        with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
            while not quitting:
                started = time.monotonic()
                if not view.paused:
                    for _ in range(epochs_per_frame):
                        if quitting:
                            return
                        session.step_epoch()
                        if session.diverged:
                            view.paused = True
                            view.message = "the loss became non-finite: lower the learning rate (-) and reset (r)"
                            break
                size = console.size
                live.update(render_rich(session, view, size.width, size.height, console.color_system), refresh=True)
                wait = 0.25 if view.paused else 1.0 / FRAMES_PER_SECOND - (time.monotonic() - started)
                for key in read_keys(fd, wait):
                    if key == "\x03" or not apply_action(action_for_key(key), session, view):  # Ctrl-C read as a key
                        return
    except KeyboardInterrupt:
        return  # a second Ctrl-C: quit as with q
    finally:
        if handling:  # None: a handler not set from Python, which cannot be put back; the default then
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _has_termios() -> bool:
    try:
        import termios  # noqa: F401  (POSIX only; elsewhere the playground prints plain frames)
    except ImportError:
        return False
    return True


def write_config(path: Path, session: PlaygroundSession) -> None:
    from nnctl.runs import atomic_write_text

    try:
        atomic_write_text(Path(path), session.to_yaml())
    except OSError as exc:
        raise NnctlError(f"--save: {path}: cannot write the config: {exc.strerror or exc}") from None


def run_playground(
    options: PlaygroundOptions,
    frames: int | None = None,
    epochs_per_frame: int | None = None,
    save: Path | None = None,
) -> None:
    """What ``nnctl playground`` does: live on a terminal, else (or with ``frames``) plain frames on stdout."""
    import shutil

    from threadpoolctl import threadpool_limits

    if frames is not None and frames < 1:
        raise NnctlError(f"--frames: must be at least 1, got {frames}")
    if epochs_per_frame is not None and epochs_per_frame < 1:
        raise NnctlError(f"--epochs-per-frame: must be at least 1, got {epochs_per_frame}")
    if save is not None and Path(save).is_dir():
        raise NnctlError(f"--save: {save} is a folder; give a file name such as playground.yaml")
    session = PlaygroundSession(options)
    if save is not None:
        write_config(save, session)  # early, so that a path that cannot be written fails before anything runs
    interactive = frames is None and sys.stdin.isatty() and sys.stdout.isatty() and _has_termios()
    with threadpool_limits(1):  # as nnctl train: one BLAS thread is fastest on these small matrices
        if interactive:
            run_interactive(session, epochs_per_frame or LIVE_EPOCHS_PER_FRAME)
        else:
            try:
                columns = shutil.get_terminal_size((80, 24)).columns
                run_frames(session, frames or DEFAULT_FRAMES, epochs_per_frame or PLAIN_EPOCHS_PER_FRAME, sys.stdout, columns)
            except BrokenPipeError:  # e.g. piped into head: stop quietly
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
    if save is not None:
        write_config(save, session)
        print(f"saved the config to {save} (train it with: nnctl train {save})", file=sys.stderr)

"""The TensorFlow Playground on nnctl's engine: one session (``session.py``, its controls in ``options.py``)
shown by two front ends, the terminal (``terminal.py``) and the web page (``web/``)."""

from nnctl.playground.options import DATASETS, LR_LADDER, PlaygroundOptions, validate_options
from nnctl.playground.session import EXTENT, PlaygroundSession
from nnctl.playground.terminal import (
    BLUES_256,
    GREYS_256,
    ORANGES_256,
    PALETTE,
    View,
    action_for_key,
    apply_action,
    make_options,
    next_lr,
    parse_features,
    parse_layers,
    render_plain,
    render_rich,
    run_playground,
    sparkline,
)

__all__ = [
    "BLUES_256", "DATASETS", "EXTENT", "GREYS_256", "LR_LADDER", "ORANGES_256", "PALETTE", "PlaygroundOptions",
    "PlaygroundSession", "View", "action_for_key", "apply_action", "make_options", "next_lr", "parse_features",
    "parse_layers", "render_plain", "render_rich", "run_playground", "sparkline", "validate_options",
]  # fmt: skip

"""``nnctl export``: a trained model as an ONNX graph or as PyTorch weights in a safetensors file.

Both carry what ``nnctl predict`` applies (``inference``): ONNX as a graph from the raw input columns to the
answer (``onnx``); safetensors as the state dict of a ``torch.nn.Sequential`` whose source the command prints,
with the preprocessing in the file's metadata (``torch_layout``, ``pytorch``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from nnctl.errors import NnctlError, one_of

#: format -> (the module it needs, the extra that installs it, the file suffix)
FORMATS = {"onnx": ("onnx", "onnx", ".onnx"), "safetensors": ("safetensors.numpy", "safetensors", ".safetensors")}
CHECKPOINT_CHOICES = ("last", "best")


@dataclass
class Exported:
    path: Path
    source: str | None  # the Python source that loads a safetensors file into torch


def require(fmt: str) -> None:
    """The package ``--format`` needs, or the one-line error naming the extra to install."""
    module, extra, _ = FORMATS[fmt]
    try:
        importlib.import_module(module)
    except ImportError:
        raise NnctlError(f'--format {fmt} needs the {extra} package: pip install "nnctl[{extra}]"') from None


def output_path(out: Path | None, checkpoint: Path, fmt: str, force: bool) -> Path:
    """``out``, or beside the checkpoint with its name (``checkpoints/last.onnx``); never an existing file
    without ``force``, never the checkpoint itself."""
    path = checkpoint.with_suffix(FORMATS[fmt][2]) if out is None else out
    if not path.parent.is_dir():
        raise NnctlError(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise NnctlError(f"{path}: is a folder; give the file to write")
    if path.exists() and path.resolve() == checkpoint.resolve():
        raise NnctlError(f"{path}: is the checkpoint being exported; refusing to overwrite it")
    if path.exists() and not force:
        raise NnctlError(f"{path}: already exists; give --force to replace it")
    return path


def export(run: Path, fmt: str, out: Path | None = None, which: str | None = None, force: bool = False) -> Exported:
    """Export the checkpoint of ``run`` (a run folder's chosen one, or ``which``; or a checkpoint file)."""
    from nnctl.evaluation import restore
    from nnctl.export.inference import describe
    from nnctl.runs import write_output

    one_of("--format", fmt, tuple(FORMATS))
    if which is not None:
        one_of("--checkpoint", which, CHECKPOINT_CHOICES)
    require(fmt)
    restored = restore(run, which)
    path = output_path(out, restored.checkpoint, fmt, force)
    inference = describe(restored)
    source = None
    if fmt == "onnx":
        from nnctl.export.onnx import onnx_bytes

        data = onnx_bytes(inference)
    else:
        from nnctl.export.pytorch import safetensors_file

        data, source = safetensors_file(inference, path)
    write_output(path, data)
    return Exported(path, source)

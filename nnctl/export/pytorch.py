"""The safetensors file of a ``torch.nn.Sequential`` (``torch_layout``) and the Python source that loads it.

The file's tensors are exactly the Sequential's state dict, so ``load_state_dict(load_file(FILE), strict=True)``
takes them as they are.  Everything else is in the file's metadata (safetensors keeps strings only; lists and
arrays as JSON): the input columns, the Playground's features, the normalization and its constants
(``preprocessing``: ``{"shift": [...], "scale": [...], "rotation": [[...]]}``, float32 values written exactly),
the class names, what the output means, and the Sequential's source (``sequential``).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.numpy import save

from nnctl.export.inference import Inference, describe_decision, describe_input, metadata
from nnctl.export.torch_layout import sequential


def safetensors_file(inference: Inference, path: Path) -> tuple[bytes, str]:
    """The file's bytes, and the Python source that loads it from ``path``."""
    source, state = sequential(inference.layers)
    preprocessing = {name: array.tolist() for name, array in inference.preprocess.items()}  # float32 -> exact float64 values
    header = {
        "format": "pt",
        **metadata(inference),
        "normalize": inference.normalize,
        "preprocessing": json.dumps(preprocessing),
        "sequential": source,
    }
    return save(state, metadata=header), loading_source(inference, source, path)


def loading_source(inference: Inference, source: str, path: Path) -> str:
    return "\n".join(
        [
            "import torch",
            "from safetensors.torch import load_file",
            "",
            f"model = {source}",
            f"model.load_state_dict(load_file({str(path)!r}), strict=True)",
            "model.eval()",
            f"# input: {describe_input(inference)}",
            *([f"# ({', '.join(inference.preprocess)}: JSON in the file's metadata 'preprocessing')"] if inference.preprocess else []),
            f"# output: {describe_decision(inference)}",
            "",
        ]
    )

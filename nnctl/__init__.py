"""nnctl: train neural networks from YAML experiment files on a pure-NumPy engine.

The command line is ``nnctl``; from Python (scripts, notebooks) the same code runs as ``nnctl.train``,
``nnctl.load`` and ``nnctl.sweep``, documented in ``nnctl.api``.
"""

__version__ = "0.1.0"

from nnctl.errors import NnctlError  # noqa: E402 - after __version__, which the package's modules read

#: the names nnctl.api defines, imported on first use: the CLI, which imports this package first, never loads them
_API = ("Run", "Sweep", "load", "sweep", "train")

__all__ = ["NnctlError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from nnctl import api

        return getattr(api, name)
    raise AttributeError(f"module 'nnctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})

"""nnctl: train neural networks from YAML experiment files on a pure-NumPy engine."""

__version__ = "0.1.0"

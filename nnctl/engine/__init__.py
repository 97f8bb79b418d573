"""nnctl's engine: a small NumPy library of layers, activations, losses, initialisers and optimizers.

No file I/O, printing or configuration here: the rest of nnctl builds these objects from a config.
"""

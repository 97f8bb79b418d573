"""Named random streams.  Every random draw in nnctl comes from one of these generators, seeded from
the config's seed and the stream's name, so adding a new stream never changes the numbers of another
(the global NumPy generator is never used)."""

from __future__ import annotations

import zlib

import numpy as np

STREAMS = ("data", "split", "init", "shuffle", "dropout", "augment")


def generator(seed: int, stream: str) -> np.random.Generator:
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}")
    return np.random.default_rng([zlib.crc32(stream.encode()), seed])

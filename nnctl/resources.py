"""Refuse absurd sizes before allocating: a config asking for more memory than the machine has."""

from __future__ import annotations

import os

#: bytes a float32 trainable value costs in training: itself, its gradient, up to two optimizer slots,
#: and the copies kept for the best and the last good epoch
BYTES_PER_PARAMETER = 4 * 6


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, else physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def gigabytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_fits(needed: int, what: str) -> str | None:
    """None when ``needed`` bytes fit in the available memory, else the sentence explaining why not."""
    available = available_memory()
    if needed <= available:
        return None
    return f"{what} would need about {gigabytes(needed)} of memory; this machine has {gigabytes(available)} available"

"""Printing quantities: bytes in binary units, seconds in the unit that reads best.

Memory capacities are quoted in binary units (GiB = 2**30 bytes), link and
memory bandwidths in decimal ones (GB/s = 1e9 bytes/s), as the datasheets do
(:mod:`simulator.hardware.specs`). Every table, picture and error message
formats through these two functions, so a number reads the same everywhere.
"""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.50 KiB``; binary units, as memory capacities are quoted."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def bytes_unit(n: float) -> tuple[float, str]:
    """The largest binary unit in which ``n`` bytes is at least 1: ``(2**20, "MiB")``."""
    for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return scale, name
    return 1.0, "B"


_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"))


def time_unit(seconds: float) -> tuple[float, str]:
    """The largest unit in which ``seconds`` is at least 1 (s, ms or us)."""
    for scale, name in _UNITS:
        if seconds >= scale:
            return scale, name
    return _UNITS[-1]

"""The console comparison table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..hardware.units import format_bytes, time_unit


def _pct(x: float | None) -> str:
    # abs: a bubble of -2e-16 is rounding, and prints as 0.0%, not -0.0%
    return "-" if x is None else f"{abs(100 * x) if abs(x) < 5e-4 else 100 * x:.1f}%"


def comparison_table(
    results: list[dict[str, Any]],
    capacity: float | Sequence[float] | None = None,
    fp8: Sequence[str] = (),
) -> str:
    """A text table of strategies, fastest first; failed ones (out of memory, diverged)
    last, marked. The step splits into compute, exposed communication and bubble
    (docs/design.md, "Definitions"); "analytic" is the schedule's closed-form bubble.
    ``capacity`` is the device memory, or that of every kind of device. ``fp8``
    names the strategies whose linear layers run in FP8: their MFU is still over
    the model dtype's (BF16) peak, as the papers count it, and a line says so."""
    if not isinstance(results, Sequence) or not all(isinstance(r, Mapping) for r in results):
        raise ConfigError(
            "comparison_table(): results must be a list of run metrics (each run's "
            f"result.metrics), got {type(results).__name__}",
            "results",
            "a list of dicts",
        )
    rows = sorted(results, key=lambda r: (r["status"] != "ok", r["iteration_time_s"] or 0.0))
    scale, unit = time_unit(max((r["iteration_time_s"] or 0.0 for r in rows), default=0.0))
    # the context-parallel size shows when a strategy splits the sequence
    axes = ("dp", "cp", "tp", "pp") if any(r.get("cp", 1) > 1 for r in rows) else ("dp", "tp", "pp")
    header = [
        "strategy",
        " x ".join(axes),
        "schedule",
        "m",
        f"step ({unit})",
        "compute",
        "exposed comm",
        "bubble",
        "analytic",
        "peak memory",
        "MFU",
        "final loss",
        "status",
    ]
    table = [header]
    for r in rows:
        loss = r["loss"][-1] if r["loss"] else None
        table.append(
            [
                r["strategy"],
                " x ".join(str(r.get(a, 1)) for a in axes),
                r["schedule"] or "-",
                str(r["microbatches"]),
                f"{(r['iteration_time_s'] or 0.0) / scale:.3f}",
                _pct(r["compute_fraction"]),
                _pct(r["exposed_comm_fraction"]),
                _pct(r["bubble_fraction"]),
                _pct(r["bubble_fraction_analytic"]),
                format_bytes(r["peak_memory_bytes"]),
                _pct(r["mfu"]),
                "-" if loss is None else f"{loss:.6f}",
                r["status"].upper() if r["status"] != "ok" else "ok",
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if capacity is not None:
        sizes = sorted(set(capacity if isinstance(capacity, Sequence) else [capacity]))
        each = format_bytes(sizes[0])
        if len(sizes) > 1:
            each += f" to {format_bytes(sizes[-1])}, by device"
        lines.append(f"(device memory: {each})")
    if fp8:
        lines.append(
            f"(MFU is over the model dtype's dense peak, BF16's for a 16-bit model, also for "
            f"{', '.join(fp8)}, whose linear layers run in FP8: as the papers count it)"
        )
    return "\n".join(lines)

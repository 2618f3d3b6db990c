"""Pictures of a run: memory over time and the strategy comparison.

The Gantt chart lives in :mod:`simulator.gantt` and is re-exported here.
Every function saves to ``path`` when one is given, and otherwise returns the
matplotlib figure (in a notebook, it shows itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .engine.memory import format_bytes
from .gantt import _finish, gantt
from .report import time_unit

__all__ = ["compare", "gantt", "memory"]


def _bytes_unit(n: float) -> tuple[float, str]:
    for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return scale, name
    return 1.0, "B"


def memory(result: Any, path: str | Path | None = None) -> Figure | None:
    """Memory in use on every device over the whole run, one line per device."""
    rt = result.runtime
    devices = sorted(d for w in result.plan.workers for d in w.devices)[:16]
    end = rt.records[-1].end
    scale_t, unit_t = time_unit(end)
    peak = max(rt.engine.memory[d].peak for d in devices)
    scale_b, unit_b = _bytes_unit(peak)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for d in devices:
        samples = [*rt.engine.memory[d].samples, (end, rt.engine.memory[d].current)]
        ax.step(
            [t / scale_t for t, _ in samples],
            [b / scale_b for _, b in samples],
            where="post",
            label=f"device {d}",
            linewidth=1.2,
        )
    capacity = result.plan.cluster.device.memory_bytes
    if capacity <= 3 * peak:
        ax.axhline(capacity / scale_b, color="red", linestyle="--", linewidth=1, label="capacity")
    for record in rt.records[1:]:
        ax.axvline(record.start / scale_t, color="grey", linestyle=":", linewidth=0.8)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"simulated time ({unit_t}); dotted lines start a new step")
    ax.set_ylabel(f"memory in use ({unit_b})")
    ax.set_title(
        f"{result.name}: memory per device (capacity {format_bytes(capacity)}, "
        f"peak {format_bytes(peak)})",
        fontsize=10,
        loc="left",
    )
    ax.grid(alpha=0.25)
    ax.legend(
        fontsize=7, ncol=2 if len(devices) > 8 else 1, loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )
    fig.tight_layout()
    return _finish(fig, path)


def compare(result: Any, path: str | Path | None = None) -> Figure | None:
    """Per strategy: the step split into compute, exposed communication and bubble (the
    means over devices, DESIGN.md "Definitions"), and the peak memory per device
    against the capacity."""
    rows = sorted(result.results, key=lambda r: (r.status != "ok", r.metrics["iteration_time_s"]))
    scale, unit = time_unit(max(r.metrics["iteration_time_s"] for r in rows))
    names = [r.name for r in rows]
    compute, exposed, idle = [], [], []
    for r in rows:
        m = r.metrics
        step = m["iteration_time_s"] / scale
        compute.append(m["compute_fraction"] * step)
        exposed.append(m["exposed_comm_fraction"] * step)
        idle.append(m["bubble_fraction"] * step)
    # margins in inches: the titles above, the axes labels and one legend row below
    height = 0.5 * len(rows) + 2.0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [3, 2]})
    fig.subplots_adjust(
        left=0.15, right=0.98, wspace=0.08, top=1 - 0.75 / height, bottom=1.15 / height
    )
    ys = list(range(len(rows)))[::-1]
    ax1.barh(ys, compute, color="#4c8bc9", label="compute (mean over devices)")
    ax1.barh(ys, exposed, left=compute, color="#e07b39", label="exposed communication")
    ax1.barh(
        ys,
        idle,
        left=[a + b for a, b in zip(compute, exposed, strict=True)],
        color="#d9d9d9",
        label="bubble",
    )
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_xlabel(f"step time ({unit})")
    ax1.set_title("where the step time goes", fontsize=10, loc="left")
    ax1.grid(axis="x", alpha=0.25)
    capacity = result.results[0].plan.cluster.device.memory_bytes
    peaks = [r.metrics["peak_memory_bytes"] for r in rows]
    # draw the capacity only when it is on the scale of the bars; else name it
    show_capacity = capacity <= 3 * max(peaks)
    sb, ub = _bytes_unit(max([*peaks, capacity]) if show_capacity else max(peaks))
    colours = ["#c0392b" if r.status == "oom" else "#6a9f58" for r in rows]
    ax2.barh(ys, [p / sb for p in peaks], color=colours)
    for y, r, p in zip(ys, rows, peaks, strict=True):
        label = f" {format_bytes(p)}" + ("  OOM" if r.status == "oom" else "")
        ax2.text(
            p / sb,
            y,
            label,
            va="center",
            fontsize=8,
            color="#c0392b" if r.status == "oom" else "black",
        )
    if show_capacity:
        ax2.axvline(
            capacity / sb,
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"device capacity {format_bytes(capacity)}",
        )
    ax2.set_xlim(0, max([*peaks, capacity if show_capacity else 0]) / sb * 1.3)
    ax2.set_yticks(ys)
    ax2.set_yticklabels([])
    ax2.set_xlabel(f"peak memory of the fullest device ({ub})")
    ax2.set_title(
        "memory" + ("" if show_capacity else f" (device capacity {format_bytes(capacity)})"),
        fontsize=10,
        loc="left",
    )
    ax2.grid(axis="x", alpha=0.25)
    fig.suptitle(f"{result.name}: strategies, fastest first", fontsize=11, x=0.01, ha="left")
    handles = [h for ax in (ax1, ax2) for h in ax.get_legend_handles_labels()[0]]
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )
    return _finish(fig, path)

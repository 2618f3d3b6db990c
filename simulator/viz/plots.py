"""Pictures of a run: memory over time and the strategy comparison.

The Gantt chart lives in :mod:`simulator.viz.gantt` and is re-exported here.
Every function saves to ``path`` when one is given, and otherwise returns the
matplotlib figure (in a notebook, it shows itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..hardware.units import format_bytes, time_unit
from .gantt import finish_figure, gantt
from .views import coordinates, shown_devices

__all__ = ["compare", "gantt", "memory"]


def _bytes_unit(n: float) -> tuple[float, str]:
    for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return scale, name
    return 1.0, "B"


#: stacking order, bottom to top: what stays for the whole run first, activations last
STACK = ("parameters", "gradients", "optimizer", "buffers", "activations")
CATEGORY_COLOURS = {
    "parameters": "#4c72b0",
    "gradients": "#dd8452",
    "optimizer": "#55a868",
    "buffers": "#8172b3",
    "activations": "#c44e52",
}
CATEGORY_NAMES = {
    "parameters": "parameters",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "buffers": "buffers (communication, gathered copies)",
    "activations": "activations (stashed for the backward)",
}
MEMORY_PANELS = 8


def _devices(devices: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"devices 1-3, 5"``."""
    runs: list[list[int]] = []
    for d in devices:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)
    return f"device{'s' if len(devices) > 1 else ''} {text}"


def category_series(ledger: Any, end: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A ledger's ``(time, category, delta)`` record as step functions: the times of
    change (from 0 to ``end``) and the bytes of each category held from each time on."""
    from ..engine.memory import CATEGORIES

    times = np.asarray(ledger.times, dtype=float)
    cats = np.asarray(ledger.cats, dtype=np.int8).astype(int)
    deltas = np.asarray(ledger.deltas, dtype=np.int64)
    held = np.zeros((times.size + 1, len(CATEGORIES)))
    held[np.arange(1, times.size + 1), cats] = deltas
    held = np.cumsum(held, axis=0)
    t = np.concatenate([[0.0], times])
    # several changes at one moment: the last one tells what is held from then on
    last = np.append(t[1:] != t[:-1], True)
    t, held = t[last], held[last]
    t = np.append(t, max(end, t[-1]))
    held = np.vstack([held, held[-1]])
    return t, {c: held[:, i] for i, c in enumerate(CATEGORIES)}


def memory(result: Any, path: str | Path | None = None) -> Figure | None:
    """Memory in use over the whole run, stacked by category, one panel per device
    (parameters, gradients and optimizer state stay; activations rise with every
    forward and fall with its backward). A large run shows a few devices, chosen as
    the Gantt chart chooses its rows; the dotted lines start a new step. The dashed
    line is the device capacity: the smallest of the panels' devices, when their
    memories differ (nodes of several kinds)."""
    run = result.run
    shown, note = shown_devices(result, MEMORY_PANELS)
    end = run.steps[-1].end if run.steps else run.end
    scale_t, unit_t = time_unit(end or 1.0)
    # devices whose ledgers recorded the same changes share a panel (replicas, tensor ranks)
    same: dict[tuple, list[int]] = {}
    for d in shown:
        ledger = run.memory[d]
        key = (ledger.times.tobytes(), ledger.cats.tobytes(), ledger.deltas.tobytes())
        same.setdefault(key, []).append(d)
    devices = [group[0] for group in same.values()]
    twins = {group[0]: group for group in same.values()}
    ledgers = {d: run.memory[d] for d in devices}
    peak = max(ledger.peak for ledger in ledgers.values())
    scale_b, unit_b = _bytes_unit(peak)
    capacity = min(run.memory[d].capacity for d in shown)
    show_capacity = capacity <= 3 * peak
    cols = 1 if len(devices) == 1 else 2
    rows = -(-len(devices) // cols)
    top = 0.75 + (0.2 if note else 0.0)  # inches: the heading, on two lines for a subset
    height = 2.1 * rows + 0.75 + top
    fig, axes = plt.subplots(rows, cols, figsize=(13, height), sharex=True, sharey=True,
                             squeeze=False)  # fmt: skip
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - top / height, bottom=0.85 / height,
                        hspace=0.7, wspace=0.06)  # fmt: skip
    plan = result.plan
    for ax, d in zip(axes.flat, devices, strict=False):
        t, held = category_series(ledgers[d], end)
        below = np.zeros_like(t)
        for cat in STACK:
            top = below + held[cat] / scale_b
            if held[cat].any():
                ax.fill_between(t / scale_t, below, top, step="post", color=CATEGORY_COLOURS[cat],
                                linewidth=0, label=CATEGORY_NAMES[cat])  # fmt: skip
            below = top
        if show_capacity:
            ax.axhline(capacity / scale_b, color="red", linestyle="--", linewidth=1, zorder=4,
                       label=f"device capacity {format_bytes(capacity)}")  # fmt: skip
        for record in run.steps[1:]:
            ax.axvline(
                record.start / scale_t, color="black", linestyle=":", linewidth=0.8, zorder=3
            )
        where = f" ({coordinates(plan, d)})" if plan.strategy.num_devices > 1 else ""
        if len(twins[d]) > 1:
            where += f" and {_devices(twins[d][1:])}, which hold the same"
        parts = " + ".join(
            f"{k} {format_bytes(v)}" for k, v in ledgers[d].peak_breakdown.items() if v
        )
        ax.set_title(f"device {d}{where}: peak {format_bytes(ledgers[d].peak)}\n= {parts}",
                     fontsize=7.5, loc="left")  # fmt: skip
        ax.grid(alpha=0.25)
        ax.set_ylim(bottom=0)
    for ax in axes.flat[len(devices) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"memory ({unit_b})", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel(f"simulated time ({unit_t}); dotted lines start a new step", fontsize=8)
    heading = f"{result.name}: memory in use by category, stacked"
    if not show_capacity:
        heading += f"; device capacity {format_bytes(capacity)}, far above"
    if note:
        heading += f"\nshowing {note}"
    fig.suptitle(heading, fontsize=10, x=0.01, ha="left")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1 : len(devices)]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if labels:  # a model with no parameters and no stash holds nothing to name
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(labels), 6), fontsize=8, frameon=False)  # fmt: skip
    return finish_figure(fig, path)


def compare(result: Any, path: str | Path | None = None) -> Figure | None:
    """Per strategy: the step split into compute, exposed communication and bubble (the
    means over devices, docs/design.md, "Definitions"), and the peak memory per device
    against the capacity (the smallest device's, when their memories differ)."""
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
    ax1.barh(ys, compute, color="#4c8bc9", label="compute (means over the devices)")
    ax1.barh(ys, exposed, left=compute, color="#e07b39",
             label="exposed communication (waiting for its group's collective)")  # fmt: skip
    ax1.barh(
        ys,
        idle,
        left=[a + b for a, b in zip(compute, exposed, strict=True)],
        color="#d9d9d9",
        label="bubble (idle for any other reason)",
    )
    longest = max(r.metrics["iteration_time_s"] for r in rows) / scale
    for y, r in zip(ys, rows, strict=True):
        step = r.metrics["iteration_time_s"] / scale
        ax1.text(step + 0.01 * longest, y, f"{step:.4g}", va="center", fontsize=7.5)
    ax1.set_xlim(0, longest * 1.1)
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_xlabel(f"step time ({unit})")
    ax1.set_title("where the step time goes", fontsize=10, loc="left")
    ax1.grid(axis="x", alpha=0.25)
    capacity = result.results[0].plan.cluster.smallest_memory
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
    ax2.set_xlim(0, max([*peaks, capacity if show_capacity else 0]) / sb * 1.45)
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
    return finish_figure(fig, path)

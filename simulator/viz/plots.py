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

from ..hardware.units import bytes_unit, format_bytes, time_unit
from .gantt import TITLE_Y, finish_figure, gantt
from .views import coordinates, shown_devices

__all__ = ["compare", "compare_rows", "gantt", "memory", "memory_panels"]


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


def memory_panels(result: Any) -> tuple[list[dict[str, Any]], str]:
    """What :func:`memory` draws, before it draws: one panel per group of devices whose
    ledgers recorded the same changes (replicas, tensor ranks), each with its own
    peak and its own y-axis (``top``, in ``unit``), scaled to that peak -- or to
    the device capacity (the smallest of the group's) when that is on the scale
    of the peak, so the dashed capacity line shows. The note says which devices
    a large run leaves out."""
    run = result.run
    shown, note = shown_devices(result, MEMORY_PANELS)
    same: dict[tuple, list[int]] = {}
    for d in shown:
        ledger = run.memory[d]
        key = (ledger.times.tobytes(), ledger.cats.tobytes(), ledger.deltas.tobytes())
        same.setdefault(key, []).append(d)
    panels = []
    for group in same.values():
        ledger = run.memory[group[0]]
        capacity = min(run.memory[d].capacity for d in group)  # twins on nodes of several kinds
        show_capacity = capacity <= 3 * ledger.peak
        scale, unit = bytes_unit(max(ledger.peak, capacity if show_capacity else 0) or 1)
        top = max(ledger.peak, capacity if show_capacity else 0) * 1.12 / scale or 1.0
        panels.append(
            {
                "device": group[0],
                "twins": group[1:],
                "peak_bytes": int(ledger.peak),
                "capacity_bytes": int(capacity),
                "show_capacity": show_capacity,
                "scale": scale,
                "unit": unit,
                "top": top,
            }
        )
    return panels, note


def memory(result: Any, path: str | Path | None = None) -> Figure | None:
    """Memory in use over the whole run, stacked by category, one panel per device
    (parameters, gradients and optimizer state stay; activations rise with every
    forward and fall with its backward). A large run shows a few devices, chosen as
    the Gantt chart chooses its rows; the dotted lines start a new step. Each panel
    has its own y-axis, scaled to its own peak (devices of a pipeline hold very
    different amounts), with the peak marked; the dashed line is the device's
    capacity, drawn when it is on the scale of the peak."""
    run = result.run
    panels, note = memory_panels(result)
    end = run.steps[-1].end if run.steps else run.end
    scale_t, unit_t = time_unit(end or 1.0)
    cols = 1 if len(panels) == 1 else 2
    rows = -(-len(panels) // cols)
    far = [p for p in panels if not p["show_capacity"]]
    top_in = 0.75 + (0.2 if note else 0.0)  # inches: the heading, on two lines for a subset
    height = 2.1 * rows + 0.75 + top_in
    fig, axes = plt.subplots(rows, cols, figsize=(13, height), sharex=True, squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - top_in / height, bottom=0.85 / height,
                        hspace=0.7, wspace=0.16)  # fmt: skip
    plan = result.plan
    for ax, panel in zip(axes.flat, panels, strict=False):
        d, scale_b = panel["device"], panel["scale"]
        ledger = run.memory[d]
        t, held = category_series(ledger, end)
        below = np.zeros_like(t)
        for cat in STACK:
            top = below + held[cat] / scale_b
            if held[cat].any():
                ax.fill_between(t / scale_t, below, top, step="post", color=CATEGORY_COLOURS[cat],
                                linewidth=0, label=CATEGORY_NAMES[cat])  # fmt: skip
            below = top
        ax.axhline(panel["peak_bytes"] / scale_b, color="black", linestyle="-.", linewidth=0.8,
                   zorder=4, label="peak of the device")  # fmt: skip
        if panel["show_capacity"]:
            capacity = panel["capacity_bytes"]
            ax.axhline(capacity / scale_b, color="red", linestyle="--", linewidth=1, zorder=4,
                       label=f"device capacity {format_bytes(capacity)}")  # fmt: skip
        for record in run.steps[1:]:
            ax.axvline(
                record.start / scale_t, color="black", linestyle=":", linewidth=0.8, zorder=3
            )
        where = f" ({coordinates(plan, d)})" if plan.strategy.num_devices > 1 else ""
        if not plan.cluster.homogeneous:
            where += f", {plan.cluster.device_of(d).name}"
        if panel["twins"]:
            where += f" and {_devices(panel['twins'])}, which hold the same"
        parts = " + ".join(f"{k} {format_bytes(v)}" for k, v in ledger.peak_breakdown.items() if v)
        ax.set_title(f"device {d}{where}: peak {format_bytes(panel['peak_bytes'])}\n= {parts}",
                     fontsize=7.5, loc="left", y=TITLE_Y)  # fmt: skip
        ax.grid(alpha=0.25)
        ax.set_ylim(0, panel["top"])
        ax.set_ylabel(f"memory ({panel['unit']})", fontsize=8)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-1, :]:
        ax.set_xlabel(f"simulated time ({unit_t}); dotted lines start a new step", fontsize=8)
    heading = f"{result.name}: memory in use by category, stacked; each panel to its own scale"
    if far:
        sizes = sorted({p["capacity_bytes"] for p in far})
        heading += f"; device capacity {', '.join(map(format_bytes, sizes))}, far above"
        if len(far) < len(panels):
            heading += f" on {len(far)} of the panels"
    if note:
        heading += f"\nshowing {note}"
    fig.suptitle(heading, fontsize=10, x=0.01, ha="left")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1 : len(panels)]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if labels:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(labels), 7), fontsize=8, frameon=False)  # fmt: skip
    return finish_figure(fig, path)


#: the colour of a run that did not finish (out of memory, failed, diverged), in both panels
FAILED_RUN = "#c0392b"


def compare_rows(result: Any) -> tuple[list[dict[str, Any]], str, str]:
    """What :func:`compare` draws, before it draws: one row per strategy, fastest first
    and the runs that did not finish (out of memory, a failed device, a diverged
    loss) last, each marked with its status. Every step time is printed in one
    unit with three decimals, as the console table prints it, and every peak
    memory in one unit with two; returns the rows and the two units."""
    rows = sorted(
        result.results,
        key=lambda r: (r.status != "ok", r.metrics["iteration_time_s"] or 0.0),
    )
    scale, unit = time_unit(max(r.metrics["iteration_time_s"] or 0.0 for r in rows) or 1.0)
    peak_scale, peak_unit = bytes_unit(max(r.metrics["peak_memory_bytes"] or 0 for r in rows))
    out = []
    for r in rows:
        m = r.metrics
        step = (m["iteration_time_s"] or 0.0) / scale
        peak = (m["peak_memory_bytes"] or 0) / peak_scale
        mark = "" if r.status == "ok" else r.status.upper()
        out.append(
            {
                "name": r.name,
                "status": r.status,
                "mark": mark,
                "step": step,
                "compute": (m["compute_fraction"] or 0.0) * step,
                "exposed": (m["exposed_comm_fraction"] or 0.0) * step,
                "bubble": (m["bubble_fraction"] or 0.0) * step,
                "peak": peak,
                "step_text": f"{step:.3f}" + (f"  {mark}" if mark else ""),
                "peak_text": f"{peak:.2f} {peak_unit}" + (f"  {mark}" if mark else ""),
            }
        )
    return out, unit, peak_unit


def compare(result: Any, path: str | Path | None = None) -> Figure | None:
    """Per strategy: the step split into compute, exposed communication and bubble (the
    means over devices, docs/design.md, "Definitions"), and the peak memory per device
    against the capacity (the smallest device's, when their memories differ). Runs
    that did not finish are last and marked alike in red: their name, their status
    after both numbers, their memory bar (see :func:`compare_rows`)."""
    rows, unit, ub = compare_rows(result)
    names = [r["name"] + (f" ({r['mark']})" if r["mark"] else "") for r in rows]
    compute = [r["compute"] for r in rows]
    exposed = [r["exposed"] for r in rows]
    idle = [r["bubble"] for r in rows]
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
    longest = max(r["step"] for r in rows) or 1.0
    for y, r in zip(ys, rows, strict=True):
        ink = FAILED_RUN if r["mark"] else "black"
        ax1.text(r["step"] + 0.01 * longest, y, r["step_text"], va="center", fontsize=7.5,
                 color=ink)  # fmt: skip
    ax1.set_xlim(0, longest * 1.15)
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=8)
    for tick, r in zip(ax1.get_yticklabels(), rows, strict=True):
        if r["mark"]:
            tick.set_color(FAILED_RUN)
    stopped = any(r["status"] == "failed" for r in rows)
    ax1.set_xlabel(f"step time ({unit})" + ("; a failed run's, up to where it stopped" * stopped))
    ax1.set_title("where the step time goes", fontsize=10, loc="left", y=TITLE_Y)
    ax1.grid(axis="x", alpha=0.25)
    capacity = result.results[0].plan.cluster.smallest_memory
    peaks = [r["peak"] for r in rows]
    sb, _ = bytes_unit(max(r.metrics["peak_memory_bytes"] or 0 for r in result.results))
    # draw the capacity only when it is on the scale of the bars; else name it
    show_capacity = capacity <= 3 * max(peaks) * sb
    colours = [FAILED_RUN if r["mark"] else "#6a9f58" for r in rows]
    ax2.barh(ys, peaks, color=colours)
    for y, r in zip(ys, rows, strict=True):
        ax2.text(r["peak"], y, " " + r["peak_text"], va="center", fontsize=8,
                 color=FAILED_RUN if r["mark"] else "black")  # fmt: skip
    if show_capacity:
        ax2.axvline(capacity / sb, color="red", linestyle="--", linewidth=1,
                    label=f"device capacity {format_bytes(capacity)}")  # fmt: skip
    ax2.set_xlim(0, max([*peaks, capacity / sb if show_capacity else 0]) * 1.45 or 1.0)
    ax2.set_yticks(ys)
    ax2.set_yticklabels([])
    ax2.set_xlabel(f"peak memory of the fullest device ({ub})")
    ax2.set_title(
        "memory" + ("" if show_capacity else f" (device capacity {format_bytes(capacity)})"),
        fontsize=10,
        loc="left",
        y=TITLE_Y,
    )
    ax2.grid(axis="x", alpha=0.25)
    failed = sum(1 for r in rows if r["mark"])
    order = "strategies, fastest first" if len(rows) > 1 else "one strategy"
    heading = f"{result.name}: {order}"
    if failed:
        runs = "run" if failed == 1 else "runs"
        heading += f"; last, in red: {failed} {runs} that did not finish"
    fig.suptitle(heading, fontsize=11, x=0.01, ha="left")
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

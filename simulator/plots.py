"""Pictures of a run: Gantt chart, memory over time, strategy comparison.

The Gantt chart has one row per device: compute on the upper lane, coloured
by micro-batch (forward light, backward full, weight-gradient W in its own
colour, optimizer grey, recomputation hatched) and labelled ``F3``/``B3``;
communication on the lower lane, coloured by kind (pipeline, data, tensor
parallel). White space is idle time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
from matplotlib.collections import PolyCollection
from matplotlib.patches import Patch

from .engine.memory import format_bytes
from .report import time_unit
from .trace import COMM, COMPUTE, Event

MB_COLOURS = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]
W_COLOUR = "#5b6b7c"
OPT_COLOUR = "#3a3a3a"
COMM_COLOURS = {"pp": "#3b75af", "dp": "#e07b39", "tp": "#8c5fb8", "embedding": "#4f9d69"}
MAX_ROWS = 32


class _Boxes:
    """Rectangles gathered first and drawn as one collection."""

    def __init__(self) -> None:
        self.verts: list[list[tuple[float, float]]] = []
        self.colours: list[Any] = []

    def add(self, x: float, w: float, y: float, h: float, colour: Any) -> None:
        self.verts.append([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
        self.colours.append(colour)

    def collection(self, **style: Any) -> PolyCollection:
        return PolyCollection(self.verts, facecolors=self.colours, **style)


def _mb_colour(mb: int, light: bool) -> Any:
    base = MB_COLOURS[mb % len(MB_COLOURS)]
    if not light:
        return base
    rgb = mcolors.to_rgb(base)
    return tuple(0.55 * c + 0.45 for c in rgb)


def _merged(events: list[Event]) -> list[Event]:
    """Adjacent pieces of one action (a block at a time) drawn as one block."""
    out: list[Event] = []
    for e in sorted(events, key=lambda e: e.start):
        last = out[-1] if out else None
        if (
            last is not None
            and last.name == e.name
            and last.cat == e.cat
            and abs(last.end - e.start) <= 1e-12 * max(1.0, abs(e.start))
        ):
            out[-1] = Event(
                last.device, last.lane, last.start, e.end, last.name, last.cat, last.args
            )
        else:
            out.append(e)
    return out


def _style(e: Event) -> dict[str, Any]:
    mb = e.args.get("mb")
    if e.cat == "opt":
        return {"facecolor": OPT_COLOUR}
    if e.cat == "W":
        return {"facecolor": W_COLOUR}
    if e.cat == "recompute":
        return {"facecolor": _mb_colour(mb or 0, True), "hatch": "xxx"}
    return {"facecolor": _mb_colour(mb or 0, e.cat == "F")}


def _title(result: Any, unit: str, scale: float) -> str:
    m = result.metrics
    layout = f"dp{m['dp']} x tp{m['tp']} x pp{m['pp']}"
    sched = (
        f", {m['schedule']}, m={m['microbatches']}" if m["pp"] > 1 else f", m={m['microbatches']}"
    )
    bubble = f"bubble {100 * m['bubble_fraction']:.1f}%"
    if m.get("bubble_fraction_analytic") is not None and m["pp"] > 1:
        bubble += f" (analytic {100 * m['bubble_fraction_analytic']:.1f}%)"
    status = "" if m["status"] == "ok" else f"  [{m['status'].upper()}]"
    return (
        f"{m['strategy']}: {layout}{sched}\nstep {m['iteration_time_s'] / scale:.3f} {unit}"
        f", {bubble}{status}"
    )


def gantt(result: Any, path: str | Path) -> None:
    """One row per device: compute lane above, communication lane below."""
    lo, hi = result.runtime.step_windows[-1]
    scale, unit = time_unit(hi - lo)
    devices = sorted(d for w in result.plan.workers for d in w.devices)
    shown = devices[:MAX_ROWS]
    events = result.trace.window(lo, hi).events
    by_device: dict[int, list[Event]] = {d: [] for d in shown}
    for e in events:
        if e.device in by_device:
            by_device[e.device].append(e)
    fig, ax = plt.subplots(figsize=(13, 1.2 + 0.62 * len(shown)))
    span = (hi - lo) / scale
    kinds_seen: set[str] = set()
    cats_seen: set[str] = set()
    nodes = result.plan.cluster.devices_per_node
    blocks: dict[str, _Boxes] = {}  # one collection per hatch: drawing is fast
    messages = _Boxes()
    for row, d in enumerate(shown):
        y = len(shown) - 1 - row
        for e in _merged([e for e in by_device[d] if e.lane == COMPUTE]):
            x0, w = (e.start - lo) / scale, e.duration / scale
            style = _style(e)
            blocks.setdefault(style.get("hatch", ""), _Boxes()).add(
                x0, w, y + 0.36, 0.56, style["facecolor"]
            )
            cats_seen.add(e.cat)
            if w > span * 0.022 and e.cat != "opt":
                label = e.name if e.cat != "recompute" else "R" + e.name[1:]
                ax.text(
                    x0 + w / 2,
                    y + 0.64,
                    label,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if e.cat in ("F", "recompute") else "white",
                )
        for e in [e for e in by_device[d] if e.lane == COMM]:
            kinds_seen.add(e.cat)
            messages.add(
                (e.start - lo) / scale,
                e.duration / scale,
                y + 0.06,
                0.24,
                COMM_COLOURS.get(e.cat, "#999999"),
            )
    for hatch, boxes in blocks.items():
        ax.add_collection(boxes.collection(edgecolor="white", linewidth=0.4, hatch=hatch or None))
    ax.add_collection(messages.collection(alpha=0.75, edgecolor="none"))
    ax.set_yticks([len(shown) - 1 - i + 0.5 for i in range(len(shown))])
    ax.set_yticklabels([f"device {d}\nnode {d // nodes}" for d in shown], fontsize=8)
    ax.set_ylim(0, len(shown))
    ax.set_xlim(0, span * 1.005)
    ax.set_xlabel(f"time since the step started ({unit})")
    ax.grid(axis="x", alpha=0.25)
    ax.set_axisbelow(True)
    title = _title(result, unit, scale)
    if len(devices) > len(shown):
        title += f"  (first {len(shown)} of {len(devices)} devices)"
    ax.set_title(title, fontsize=10, loc="left")
    legend = []
    if "F" in cats_seen:
        legend.append(
            Patch(facecolor=_mb_colour(0, True), label="F forward (colour = micro-batch)")
        )
    if cats_seen & {"B", "BW"}:
        legend.append(Patch(facecolor=_mb_colour(0, False), label="B backward"))
    if "W" in cats_seen:
        legend.append(Patch(facecolor=W_COLOUR, label="W weight gradient"))
    if "recompute" in cats_seen:
        legend.append(Patch(facecolor=_mb_colour(0, True), hatch="xxx", label="recompute"))
    if "opt" in cats_seen:
        legend.append(Patch(facecolor=OPT_COLOUR, label="optimizer"))
    names = {
        "pp": "pipeline send",
        "dp": "data-parallel comm",
        "tp": "tensor-parallel comm",
        "embedding": "tied-embedding sync",
    }
    for k in sorted(kinds_seen):
        legend.append(
            Patch(
                facecolor=COMM_COLOURS.get(k, "#999999"),
                alpha=0.75,
                label=f"{names.get(k, k)} (lower lane)",
            )
        )
    ax.legend(
        handles=legend,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.5 / (1 + len(shown)) - 0.08),
        ncol=min(4, len(legend)),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bytes_unit(n: float) -> tuple[float, str]:
    for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return scale, name
    return 1.0, "B"


def memory(result: Any, path: str | Path) -> None:
    """Memory in use on every device over the whole run, one line per device."""
    rt = result.runtime
    devices = sorted(d for w in result.plan.workers for d in w.devices)[:16]
    end = rt.step_windows[-1][1]
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
    for lo, _ in rt.step_windows[1:]:
        ax.axvline(lo / scale_t, color="grey", linestyle=":", linewidth=0.8)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(result: Any, path: str | Path) -> None:
    """Per strategy: the step split into compute, exposed communication and bubble
    (idle), and the peak memory per device against the capacity."""
    rows = sorted(result.results, key=lambda r: (r.status != "ok", r.metrics["iteration_time_s"]))
    scale, unit = time_unit(max(r.metrics["iteration_time_s"] for r in rows))
    names = [r.name for r in rows]
    compute, exposed, idle = [], [], []
    for r in rows:
        devs = r.metrics["devices"]
        c = sum(d["compute_s"] for d in devs) / len(devs)
        x = r.metrics["exposed_comm_s"]
        compute.append(c / scale)
        exposed.append(x / scale)
        idle.append(max(0.0, r.metrics["iteration_time_s"] - c - x) / scale)
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, 2.2 + 0.5 * len(rows)), gridspec_kw={"width_ratios": [3, 2]}
    )
    ys = list(range(len(rows)))[::-1]
    ax1.barh(ys, compute, color="#4c8bc9", label="compute (mean over devices)")
    ax1.barh(ys, exposed, left=compute, color="#e07b39", label="exposed communication")
    ax1.barh(
        ys,
        idle,
        left=[a + b for a, b in zip(compute, exposed, strict=True)],
        color="#d9d9d9",
        label="bubble and other idle",
    )
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_xlabel(f"step time ({unit})")
    ax1.set_title("where the step time goes", fontsize=10, loc="left")
    ax1.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False)
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
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

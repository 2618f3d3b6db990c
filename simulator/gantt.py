"""The Gantt chart of a step: every device's compute and communication over time.

One row per device: compute on the upper lane, coloured by micro-batch
(forward light, backward full, weight-gradient W in its own colour, optimizer
grey, recomputation hatched) and labelled ``F3``/``B3``; communication on the
lower lane, coloured by kind (pipeline, data, tensor parallel). White space is
idle time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .report import time_unit
from .trace import COMM, COMPUTE, Event

# tab10 without its grey, then the lighter tab20 shades without theirs: grey is kept
# for W blocks and the optimizer, so no micro-batch looks like them
MB_COLOURS = tuple(c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7) + tuple(
    c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 and i != 15
)
W_COLOUR = "#5b6b7c"
OPT_COLOUR = "#3a3a3a"
COMM_COLOURS = {"pp": "#3b75af", "dp": "#e07b39", "tp": "#8c5fb8", "embedding": "#4f9d69"}
MAX_ROWS = 32
MANY_BOXES = 3000


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


def _finish(fig: Figure, path: str | Path | None) -> Figure | None:
    """Save to ``path`` and free the figure, or, without a path, return it (for a
    notebook to show)."""
    if path is None:
        return fig
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _mb_colour(mb: int, light: bool) -> Any:
    base = MB_COLOURS[mb % len(MB_COLOURS)]
    if not light:
        return base
    rgb = mcolors.to_rgb(base)
    return tuple(0.55 * c + 0.45 for c in rgb)


def _merged(events: list[Event], gap: float, same) -> list[Event]:
    """Pieces that ``same`` says belong together, less than ``gap`` apart, drawn as one
    block: the pieces of one action (a block at a time, interrupted by short
    tensor-parallel collectives), or back-to-back messages of one kind. Gaps
    below a pixel would not show anyway, and fewer shapes draw much faster."""
    out: list[Event] = []
    for e in sorted(events, key=lambda e: e.start):
        last = out[-1] if out else None
        if last is not None and same(last, e) and e.start - last.end <= gap:
            out[-1] = last._replace(end=max(last.end, e.end))
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


COMM_NAMES = {
    "pp": "pipeline send",
    "dp": "data-parallel comm",
    "tp": "tensor-parallel comm",
    "embedding": "tied-embedding sync",
}


def title(result: Any, unit: str, scale: float) -> str:
    """Strategy, layout, schedule, step time and bubble (measured and analytic)."""
    m = result.metrics
    layout = f"dp{m['dp']} x tp{m['tp']} x pp{m['pp']}"
    sched = f", {m['schedule']}" if m["pp"] > 1 else ""
    bubble = f"bubble {100 * m['bubble_fraction']:.1f}%"
    if m.get("bubble_fraction_analytic") is not None and m["pp"] > 1:
        bubble += f" (analytic {100 * m['bubble_fraction_analytic']:.1f}%)"
    status = "" if m["status"] == "ok" else f"  [{m['status'].upper()}]"
    return (
        f"{m['strategy']}: {layout}{sched}, m={m['microbatches']}\n"
        f"step {m['iteration_time_s'] / scale:.3f} {unit}, {bubble}{status}"
    )


def _legend(cats: set[str], kinds: set[str], plain: bool) -> list[Patch]:
    entries = [
        ("F", Patch(facecolor=_mb_colour(0, True), label="F forward (colour = micro-batch)")),
        ("B", Patch(facecolor=_mb_colour(0, False), label="B backward")),
        ("W", Patch(facecolor=W_COLOUR, label="W weight gradient")),
        (
            "recompute",
            Patch(
                facecolor=_mb_colour(0, True),
                hatch=None if plain else "xxx",
                alpha=0.6 if plain else None,
                label="recompute",
            ),
        ),
        ("opt", Patch(facecolor=OPT_COLOUR, label="optimizer")),
    ]
    cats = cats | ({"B"} if "BW" in cats else set())
    legend = [patch for cat, patch in entries if cat in cats]
    return legend + [
        Patch(
            facecolor=COMM_COLOURS.get(k, "#999999"),
            alpha=0.75,
            label=f"{COMM_NAMES.get(k, k)} (lower lane)",
        )
        for k in sorted(kinds)
    ]


def gantt(result: Any, path: str | Path | None = None) -> Figure | None:
    """Draw the last step of ``result`` (see the module docstring) into ``path``."""
    lo, hi = result.step_window
    scale, unit = time_unit(hi - lo)
    span = (hi - lo) / scale
    devices = sorted(d for w in result.plan.workers for d in w.devices)
    shown, note = devices[:MAX_ROWS], f"first {MAX_ROWS} of {len(devices)} devices"
    if len(devices) > MAX_ROWS and len(result.plan.workers[0].devices) > 1:
        # a tensor-parallel group works in lockstep: one row per group says it all
        leaders = sorted(w.devices[0] for w in result.plan.workers)
        shown = leaders[:MAX_ROWS]
        note = f"tensor-parallel rank 0 of {min(len(leaders), MAX_ROWS)} of {len(leaders)} groups"
    rows = {d: len(shown) - 1 - i for i, d in enumerate(shown)}
    by_device: dict[int, list[Event]] = {d: [] for d in rows}
    for e in result.trace.select(rows, lo, hi):
        by_device[e.device].append(e)
    blocks: dict[str, _Boxes] = {}  # one collection per hatch: drawing stays fast
    messages = _Boxes()
    labels: list[tuple[float, float, str, str]] = []
    cats = {e.cat for es in by_device.values() for e in es if e.lane == COMPUTE}
    kinds = {e.cat for es in by_device.values() for e in es if e.lane == COMM}
    pixel = (hi - lo) / 2000  # about one pixel of the time axis
    for d, y in rows.items():
        compute = [e for e in by_device[d] if e.lane == COMPUTE]
        for e in _merged(compute, pixel, lambda a, b: (a.name, a.cat) == (b.name, b.cat)):
            x0, w = (e.start - lo) / scale, e.duration / scale
            style = _style(e)
            blocks.setdefault(style.get("hatch", ""), _Boxes()).add(
                x0, w, y + 0.36, 0.56, style["facecolor"]
            )
            if w > span * 0.022 and e.cat != "opt":
                text = e.name if e.cat != "recompute" else "R" + e.name[1:]
                labels.append(
                    (
                        x0 + w / 2,
                        y + 0.64,
                        text,
                        "black" if e.cat in ("F", "recompute") else "white",
                    )
                )
        comm = [e for e in by_device[d] if e.lane == COMM]
        for e in _merged(comm, pixel, lambda a, b: a.cat == b.cat):
            messages.add(
                (e.start - lo) / scale,
                e.duration / scale,
                y + 0.06,
                0.24,
                COMM_COLOURS.get(e.cat, "#999999"),
            )
    legend = _legend(cats, kinds, plain=sum(len(b.verts) for b in blocks.values()) > MANY_BOXES)
    legend_rows = -(-len(legend) // 4)
    # margins in inches: the title above; the time axis and the legend below
    bottom = 0.7 + 0.25 * legend_rows
    height = 0.62 * len(shown) + 0.65 + bottom
    fig, ax = plt.subplots(figsize=(13, height))
    fig.subplots_adjust(left=0.08, right=0.99, top=1 - 0.6 / height, bottom=bottom / height)
    # hatching and edges cost a lot to draw: big runs get plain blocks
    many = sum(len(b.verts) for b in blocks.values()) > MANY_BOXES
    for hatch, boxes in blocks.items():
        ax.add_collection(
            boxes.collection(
                edgecolor="none" if many else "white",
                linewidth=0.4,
                hatch=None if many or not hatch else hatch,
                alpha=0.6 if many and hatch else None,
            )
        )
    ax.add_collection(messages.collection(alpha=0.75, edgecolor="none"))
    for x, y, text, colour in labels:
        ax.text(x, y, text, ha="center", va="center", fontsize=7, color=colour)
    nodes = result.plan.cluster.devices_per_node
    ax.set_yticks([y + 0.5 for y in rows.values()])
    ax.set_yticklabels([f"device {d}\nnode {d // nodes}" for d in rows], fontsize=8)
    ax.set_ylim(0, len(shown))
    ax.set_xlim(0, max(span, 1e-9) * 1.005)
    ax.set_xlabel(f"time since the step started ({unit})")
    ax.grid(axis="x", alpha=0.25)
    ax.set_axisbelow(True)
    heading = title(result, unit, scale)
    if len(devices) > len(shown):
        heading += f"  ({note})"
    ax.set_title(heading, fontsize=10, loc="left")
    fig.legend(
        handles=legend,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=max(1, min(4, len(legend))),
        fontsize=8,
        frameon=False,
    )
    return _finish(fig, path)

"""The Gantt chart of a step: what every device did, and what its idle time was.

One row per device (a subset of a large run, said in the title); each row has
a *compute* lane on top and one or two *communication* lanes below it.

* **Compute** is coloured by micro-batch: a forward ``F`` in a light shade of
  the micro-batch's colour and its backward (``BW``, or ``B`` when the schedule
  splits off the weight gradient) in the full shade of the same colour, so
  ``F3`` and ``B3`` visibly belong together. The weight gradient ``W`` has one
  slate colour, recomputation (``R``: a forward run again before its backward)
  a cross-hatched gold, the optimizer step dark grey. Blocks are labelled
  ``2F3`` (stage 2, forward, micro-batch 3: the notation of the schedules)
  when there is room; a rank's second model chunk (interleaved, ZB-V) is
  hatched and labelled ``c1``. Inside tensor-parallel layers a block is named
  after its layer (``L0 attn``), read from the collective that ends it.
* **Communication** is drawn on the sender's row: a pipeline message in its
  micro-batch's colour (light for an activation, full for a gradient),
  labelled ``a3↓`` or ``g3↑`` -- the arrow points at the receiving row -- or,
  when narrow, marked with a triangle; a collective in its kind's colour,
  labelled with Megatron-LM's operator (``f``/``g``) and its operation
  (``AR`` all-reduce, ``RS`` reduce-scatter, ``AG`` all-gather).
* **Idle time** is split as the metrics split it (docs/design.md, "Definitions"):
  hatched orange where the device waited for a collective of its own group to
  end (*exposed communication*), white for the *bubble* (idle for any other
  reason: a pipeline neighbour's message, a peer still computing, the end of
  the step). The title gives the three shares of the step.
* A failed device gets a red cross where it stopped; a straggler's row label
  says so; on a cluster of several kinds of node, every row names its GPU.

Large runs stay fast and readable: pieces closer than a pixel merge, all
rectangles of one style are one collection, and rows that repeat others
(ranks in lockstep, identical replicas) are left out -- the title says so,
and counts the blocks too narrow for a label (the Chrome trace names them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..engine.trace import Event
from ..hardware.units import time_unit
from .raster import Raster
from .views import (
    Block,
    chunk_of,
    collective_labels,
    coordinates,
    exposed_arrays,
    failures,
    layout_name,
    shown_devices,
    step_blocks,
    stragglers,
)

# tab10 without its grey, then the lighter tab20 shades without theirs: grey is kept
# for W blocks and the optimizer, so no micro-batch looks like them
MB_COLOURS = tuple(c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7) + tuple(
    c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 and i != 15
)
W_COLOUR = "#5b6b7c"
OPT_COLOUR = "#3a3a3a"
RECOMPUTE_COLOUR, RECOMPUTE_EDGE = "#f2c12e", "#8a6d00"  # gold, hatched: like no micro-batch
EXPOSED_COLOUR = "#e07b39"  # compare.png's "exposed communication" ...
EXPOSED_TINT = "#f8dcc8"  # ... faded: idle time, not work
FAILED_COLOUR = "#d62728"
COMM_COLOURS = {
    "dp": "#e07b39",
    "tp": "#8c5fb8",
    "cp": "#2a9d8f",
    "embedding": "#4f9d69",
    "ep": "#1b9aaa",
    "copies": "#b5651d",
}
COMM_NAMES = {
    "dp": "data-parallel collective",
    "tp": "tensor-parallel collective",
    "cp": "context-parallel exchange (ring step, all-gather, all-to-all)",
    "embedding": "tied-embedding sum",
    "ep": "experts' all-to-all (dispatch, combine)",
    "copies": "sum of DualPipe's stage copies",
}
CHUNK_HATCH, RECOMPUTE_HATCH = "///", "x"
MANY_BOXES = 3000  # beyond this, hatching and edges (which cost most of the drawing) go
FIG_WIDTH = 14.0  # inches
DPI = 110  # of the pictures written
#: zlib level of the PNGs written: level 3 writes a large chart twice as fast as the
#: default 6, and the file is a few per cent larger (a seventh for the largest charts)
PNG_LEVEL = 3
#: where an axes' title sits, given rather than found: left to itself, matplotlib
#: measures every tick label of every axes to lift the title above anything on top
#: (nothing is, in these pictures: the same pixels), a sixth of drawing a small one
TITLE_Y = 1.0
COMPUTE_LANE = (0.42, 0.52)  # bottom and height inside a row of height 1
ONE_LANE = {"pp": (0.06, 0.3), "coll": (0.06, 0.3)}
TWO_LANES = {"pp": (0.23, 0.16), "coll": (0.04, 0.16)}


class _Boxes:
    """Rectangles gathered first and drawn as one collection."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []  # x, width, y, height
        self.colours: list[Any] = []

    def __len__(self) -> int:
        return len(self.boxes)

    def add(self, x: float, w: float, y: float, h: float, colour: Any) -> None:
        self.boxes.append((x, w, y, h))
        self.colours.append(colour)

    def collection(self, **style: Any) -> PolyCollection:
        x, w, y, h = np.array(self.boxes, dtype=float).reshape(-1, 4).T
        corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        verts = np.stack([np.stack(c, axis=-1) for c in corners], axis=1)
        return PolyCollection(verts, facecolors=self.colours, **style)


def finish_figure(fig: Figure, path: str | Path | None) -> Figure | None:
    """Save to ``path`` and free the figure, or, without a path, return it (for a
    notebook to show)."""
    if path is None:
        return fig
    png = str(path).lower().endswith(".png")
    fig.savefig(path, dpi=DPI, **({"pil_kwargs": {"compress_level": PNG_LEVEL}} if png else {}))
    plt.close(fig)
    return None


def mb_colour(mb: int, light: bool) -> Any:
    """Micro-batch ``mb``'s colour: full for its backward, light for its forward."""
    base = MB_COLOURS[mb % len(MB_COLOURS)]
    return tuple(0.55 * c + 0.45 for c in mcolors.to_rgb(base)) if light else base


def _style(e: Event) -> tuple[Any, str, str]:
    """Face colour, hatch and text colour of a compute block."""
    colour = _colour(e.cat, e.args.get("mb") or 0)
    if e.cat == "recompute":
        return colour, RECOMPUTE_HATCH, "black"
    return colour, "", "black" if e.cat == "F" else "white"


def _colour(cat: str, mb: int) -> Any:
    """Face colour of a compute block of kind ``cat`` and micro-batch ``mb``."""
    if cat == "opt":
        return OPT_COLOUR
    if cat == "W":
        return W_COLOUR
    if cat == "recompute":
        return RECOMPUTE_COLOUR
    return mb_colour(max(mb, 0), cat == "F")


# -- labels -----------------------------------------------------------------------------
def _compute_texts(e: Event, layer: str, pipeline: bool, chunk: int | None) -> list[str]:
    """Candidate labels of a compute block, most informative first."""
    if e.cat == "opt":
        return ["optimizer", "opt"]
    mb = e.args.get("mb")
    if mb is None:
        return [e.name]
    kind = "R" if e.cat == "recompute" else e.cat
    tail = f" c{chunk}" if chunk is not None else ""
    base = f"{e.args.get('chunk', 0)}{kind}{mb}{tail}" if pipeline else f"{kind}{mb}{tail}"
    texts = [base, f"{kind}{mb}{tail}", f"{kind}{mb}"]
    if layer:
        short = layer.replace("layer", "L").replace("attention", "attn")
        texts = [f"{base} {short}", f"{base}\n{short}", *texts]
    return list(dict.fromkeys(texts))


def _fit(texts: Sequence[str], width_pt: float, fontsize: float) -> str | None:
    """The first text whose longest line fits in ``width_pt`` points (DejaVu Sans
    averages about 0.6 em a character)."""
    for text in texts:
        if max(map(len, text.split("\n"))) * 0.6 * fontsize + 3 <= width_pt:
            return text
    return None


def title(result: Any, unit: str, scale: float) -> str:
    """Strategy, layout, schedule; the step and its three parts (and the schedule's
    closed-form bubble)."""
    m = result.metrics
    sched = ""
    if m["pp"] > 1:
        chunks = f" ({m['chunks']} chunks per rank)" if m["chunks"] > 1 else ""
        sched = f", {m['schedule']}{chunks}"
    parts = (
        f"compute {100 * m['compute_fraction']:.1f}%, exposed comm "
        f"{100 * m['exposed_comm_fraction']:.1f}%, bubble {100 * m['bubble_fraction']:.1f}%"
    )
    if m.get("bubble_fraction_analytic") is not None and m["pp"] > 1:
        parts += f" (closed form {100 * m['bubble_fraction_analytic']:.1f}%)"
    status = "" if m["status"] == "ok" else f"  [{m['status'].upper()}]"
    return (
        f"{m['strategy']}: {layout_name(m)}{sched}, "
        f"m={m['microbatches']}{status}\n"
        f"step {m['iteration_time_s'] / scale:.3f} {unit}: {parts}"
    )


def _row_label(result: Any, d: int, slow: dict[int, Any], failed: dict[int, float]) -> str:
    """``device 5 · node 1`` and its ``d t p`` coordinates; on a cluster of several
    kinds of node, the device's GPU (``A100-SXM4-80GB``); stragglers and failures."""
    plan = result.plan
    label = f"device {d} · node {plan.cluster.node_of(d)}"
    if not plan.cluster.homogeneous:
        label += f"\n{plan.cluster.device_of(d).name}"
    if plan.strategy.num_devices > 1:
        label += "\n" + coordinates(plan, d)
    if d in slow:
        label += f"\nstraggler x{slow[d].factor:g}"
    return label + ("\nfailed" if d in failed else "")


# -- the chart ----------------------------------------------------------------------------
@dataclass
class _Drawing:
    """Everything one chart draws, gathered before any of it is drawn."""

    pt_per_unit: float  # points of paper per unit of the time axis
    pixel: float  # seconds: pieces closer than this merge
    row_in: float  # inches per row
    raster: Raster  # blocks too narrow to draw as shapes
    blocks: dict[str, _Boxes] = field(default_factory=dict)  # by hatch
    messages: _Boxes = field(default_factory=_Boxes)
    exposed: _Boxes = field(default_factory=_Boxes)
    texts: list[tuple[float, float, str, str, float]] = field(default_factory=list)
    arrows: list[tuple[float, float, bool, float]] = field(default_factory=list)
    cats: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)
    instant: set[str] = field(default_factory=set)
    mbs: set[int] = field(default_factory=set)
    idle_exposed: bool = False  # some device sat idle waiting for its group's collective
    unlabelled: dict[str, int] = field(default_factory=dict)  # lane -> blocks with no label
    drawn: dict[str, int] = field(default_factory=dict)  # lane -> blocks drawn

    def count(self, lane: str, labelled: bool) -> None:
        self.drawn[lane] = self.drawn.get(lane, 0) + 1
        if not labelled:
            self.unlabelled[lane] = self.unlabelled.get(lane, 0) + 1

    def left_out(self) -> str:
        """What the chart leaves out, in words: the blocks too narrow for a label."""
        parts = [
            f"{self.unlabelled[lane]} of {self.drawn[lane]} {lane} blocks"
            for lane in ("compute", "communication")
            if self.unlabelled.get(lane)
        ]
        if not parts:
            return ""
        return f"unlabelled, too narrow: {' and '.join(parts)} (the Chrome trace names each)"

    @property
    def many(self) -> bool:
        return sum(map(len, self.blocks.values())) + len(self.messages) > MANY_BOXES

    def box(self, boxes: _Boxes, x: float, w: float, y: float, h: float, colour: Any) -> bool:
        """Add a block to ``boxes``, or paint it when it is too narrow to draw; returns
        whether it is drawn (and may be labelled)."""
        if self.raster.narrow(w):
            self.raster.add(x, w, y, h, colour)
            return False
        boxes.add(x, w, y, h, colour)
        return True


def _add_compute(
    dr: _Drawing, blocks: list[Block], d: int, y: float, x_of, pipeline: bool, chunks, trace
) -> None:
    """Compute blocks of one row (pieces of one action closer than a pixel merged, with
    their layer when they share it: :func:`~.views.step_blocks`)."""
    bottom, height = COMPUTE_LANE
    mbs = trace.mb
    for b in blocks:
        dr.cats.add(b.cat)
        x0, w = x_of(b.start), x_of(b.end) - x_of(b.start)
        mb = mbs[b.row]
        if mb >= 0:
            dr.mbs.add(mb)
        if dr.raster.narrow(w):  # a sliver of colour: no shape, no label
            dr.raster.add(x0, w, y + bottom, height, _colour(b.cat, mb))
            dr.count("compute", False)
            continue
        e = b.event(trace, d)
        stage = e.args.get("chunk")
        chunk = chunks.get(stage) if chunks and stage is not None else None
        colour, hatch, ink = _style(e)
        if chunk:
            hatch = hatch or CHUNK_HATCH
        dr.blocks.setdefault(hatch, _Boxes()).add(x0, w, y + bottom, height, colour)
        # the most informative label that fits, in a smaller font before a shorter label
        size = None
        for text in _compute_texts(e, b.more, pipeline, chunk):
            size = next((z for z in (7, 6) if _fit([text], w * dr.pt_per_unit, z)), None)
            if size:
                dr.texts.append((x0 + w / 2, y + bottom + height / 2, text, ink, size))
                break
        dr.count("compute", bool(size))


def _add_comm(dr: _Drawing, comm: list[Block], d: int, y: float, x_of, lanes, trace) -> None:
    """Communication of one row (merged below a pixel: :func:`~.views.step_blocks`):
    pipeline messages on their sender's row, collectives."""
    for b in comm:
        if b.cat == "pp" and b.more != "send":
            continue  # a pipeline message is drawn once, on its sender's row
        if b.end <= b.start:
            dr.instant.add(b.cat)  # free links: it takes no time
            continue
        dr.kinds.add(b.cat)
        bottom, height = lanes["pp" if b.cat == "pp" else "coll"]
        x0, w = x_of(b.start), x_of(b.end) - x_of(b.start)
        gradient = b.name.startswith("grad")
        mb = max(trace.mb[b.row], 0)
        colour = (
            mb_colour(mb, light=not gradient)
            if b.cat == "pp"
            else COMM_COLOURS.get(b.cat, "#999999")
        )
        if dr.raster.narrow(w):  # a sliver of colour: no shape, no label
            dr.raster.add(x0, w, y + bottom, height, colour)
            dr.count("communication", b.cat == "pp")
            continue
        dr.messages.add(x0, w, y + bottom, height, colour)
        e = b.event(trace, d)
        if e.cat == "pp":
            down = e.args.get("peer", d) > d  # rows go down as devices go up
            candidates = [f"{'g' if gradient else 'a'}{mb}{'↓' if down else '↑'}"]
        else:
            candidates = list(collective_labels(e.name)) if e.name else []
        text = _fit(candidates, w * dr.pt_per_unit, 5.5)
        dr.count("communication", bool(text) or e.cat == "pp")  # a send without room: an arrow
        centre = (x0 + w / 2, y + bottom + height / 2)
        if text:
            ink = "white" if e.cat != "pp" or gradient else "black"
            dr.texts.append((*centre, text, ink, 5.5))
        elif e.cat == "pp":  # no room for "a3↓": a triangle shows the way
            size = min(w * dr.pt_per_unit, height * dr.row_in * 72) * 0.8
            if size >= 2.5:
                dr.arrows.append((*centre, down, size))


def gantt(result: Any, path: str | Path | None = None) -> Figure | None:
    """Draw the last step of ``result`` (see the module docstring) into ``path``."""
    lo, hi = result.step_window
    scale, unit = time_unit(hi - lo)
    span = (hi - lo) / scale or 1.0
    plan = result.plan
    shown, note = shown_devices(result)
    failed, slow = failures(result), stragglers(result)
    pixel = (hi - lo) / 2000
    blocks = step_blocks(result, shown, pixel)
    idle = exposed_arrays(result, shown)
    has_p2p = any(b.cat == "pp" for _, comm in blocks.values() for b in comm)
    has_coll = any(b.cat != "pp" for _, comm in blocks.values() for b in comm)
    lanes = TWO_LANES if has_p2p and has_coll else ONE_LANE
    labels = [_row_label(result, d, slow, failed) for d in shown]
    left_in = 0.25 + 0.065 * max(len(line) for text in labels for line in text.split("\n"))
    width_in = FIG_WIDTH - left_in - 0.15  # of the axes
    dr = _Drawing(
        pt_per_unit=width_in * 72 / (span * 1.005),
        pixel=pixel,
        row_in=0.7 if lanes is TWO_LANES else 0.62,
        raster=Raster(width_in * DPI, span * 1.005),
    )
    chunks = chunk_of(plan) if plan.schedule.chunks_per_rank > 1 else {}
    rows = {d: len(shown) - 1 - i for i, d in enumerate(shown)}

    def x_of(t: float) -> float:
        return (t - lo) / scale

    for d, y in rows.items():
        compute, comm = blocks[d]
        dr.idle_exposed |= len(idle[d]) > 0
        for a, b in _union(idle[d][:, 0], idle[d][:, 1] + dr.pixel):  # merge below a pixel
            dr.box(dr.exposed, x_of(a), x_of(b - dr.pixel) - x_of(a), y + COMPUTE_LANE[0],
                   COMPUTE_LANE[1], EXPOSED_TINT)  # fmt: skip
        _add_compute(dr, compute, d, y, x_of, plan.strategy.pp > 1, chunks, result.trace)
        _add_comm(dr, comm, d, y, x_of, lanes, result.trace)

    legend = _legend(dr, bool(chunks), failed)
    heading = title(result, unit, scale) + (f"\nshowing {note}" if note else "")
    if dr.left_out():
        heading += f"\n{dr.left_out()}"
    top_in = 0.5 + 0.2 * heading.count("\n")
    bottom_in = 0.6 + 0.24 * -(-len(legend) // 3)
    height = dr.row_in * len(shown) + top_in + bottom_in
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, height))
    fig.subplots_adjust(left=left_in / FIG_WIDTH, right=1 - 0.15 / FIG_WIDTH,
                        top=1 - top_in / height, bottom=bottom_in / height)  # fmt: skip
    _draw(ax, dr)
    for d, when in failed.items():
        if d in rows and lo <= when <= hi:
            x, y = x_of(when), rows[d] + COMPUTE_LANE[0] + COMPUTE_LANE[1] / 2
            ax.plot([x], [y], marker="X", markersize=13, color=FAILED_COLOUR, mec="white", zorder=5)
            ax.axvline(x, color=FAILED_COLOUR, linewidth=0.8, linestyle="--", alpha=0.6)
            ax.text(x, y + 0.36, f" device {d} fails", color=FAILED_COLOUR, fontsize=8,
                    va="bottom", ha="left")  # fmt: skip
    ax.set_yticks([y + 0.5 for y in rows.values()])
    ax.set_yticklabels(labels, fontsize=7.5)
    for tick, d in zip(ax.get_yticklabels(), rows, strict=True):
        if d in failed:
            tick.set_color(FAILED_COLOUR)
    ax.set_ylim(0, len(shown))
    ax.set_xlim(0, span * 1.005)
    ax.set_xlabel(f"time since the step started ({unit})")
    ax.grid(axis="x", alpha=0.25)
    ax.set_axisbelow(True)
    ax.set_title(heading, fontsize=9.5, loc="left", y=TITLE_Y)
    fig.legend(
        handles=[h for h, _ in legend],
        labels=[text for _, text in legend],
        handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(3, len(legend)),
        fontsize=7.5,
        frameon=False,
        handlelength=3.2,
    )
    return finish_figure(fig, path)


def _union(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """The sorted, disjoint intervals covering exactly ``[starts[i], ends[i]]`` (none
    shorter than nothing), as :func:`simulator.runtime.intervals.union` finds them."""
    if not len(starts):
        return []
    order = np.lexsort((ends, starts))
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)  # the end of the union so far
    new = np.flatnonzero(s[1:] > reach[:-1]) + 1
    first = np.concatenate(([0], new))
    last = np.concatenate((new - 1, [len(s) - 1]))
    return list(zip(s[first].tolist(), reach[last].tolist(), strict=True))


def _draw(ax: Axes, dr: _Drawing) -> None:
    """Put what ``dr`` gathered on ``ax``: one collection per style."""
    if dr.raster:
        dr.raster.draw(ax)
    many = dr.many
    ax.add_collection(
        dr.exposed.collection(edgecolor=EXPOSED_COLOUR, linewidth=0, hatch=None if many else "////")
    )
    for hatch, boxes in dr.blocks.items():
        ax.add_collection(
            boxes.collection(
                edgecolor=RECOMPUTE_EDGE if hatch == RECOMPUTE_HATCH and not many else "white",
                linewidth=0 if many else 0.4,
                # chunks stay told apart at any size
                hatch=hatch if hatch == CHUNK_HATCH or (hatch and not many) else None,
            )
        )
    ax.add_collection(dr.messages.collection(edgecolor="none"))
    for x, y, text, colour, size in dr.texts:
        ax.text(x, y, text, ha="center", va="center", fontsize=size, color=colour, clip_on=True)
    for down in (True, False):
        points = [(x, y, size) for x, y, way, size in dr.arrows if way == down]
        if points:
            xs, ys, sizes = zip(*points, strict=True)
            ax.scatter(xs, ys, s=[z * z for z in sizes], marker="v" if down else "^",
                       color="#333333", linewidths=0, zorder=4)  # fmt: skip


def _legend(dr: _Drawing, chunked: bool, failed: dict[int, float]) -> list[tuple[Any, str]]:
    """Legend entries, (handle, text), for what the chart shows and nothing else."""
    mbs = sorted(dr.mbs)
    few = mbs[:6] or [0]
    numbers = ", ".join(map(str, few)) + (", …" if len(mbs) > len(few) else "")
    if len(mbs) > len(MB_COLOURS):
        numbers += f"; colours repeat every {len(MB_COLOURS)}"
    light = tuple(Patch(facecolor=mb_colour(k, True)) for k in few)
    full = tuple(Patch(facecolor=mb_colour(k, False)) for k in few)
    hatched = not dr.many
    entries: list[tuple[str | bool, Any, str]] = [
        ("F", light, f"F forward: light shade; colour = micro-batch ({numbers})"),
        ("BW", full, "BW backward (input and weight gradients): full shade"),
        ("B", full, "B backward, input gradient only: full shade"),
        ("W", Patch(facecolor=W_COLOUR), "W weight gradient"),
        (
            "recompute",
            Patch(
                facecolor=RECOMPUTE_COLOUR,
                edgecolor=RECOMPUTE_EDGE,
                hatch=RECOMPUTE_HATCH if hatched else None,
            ),
            "R recompute: a forward run again before its backward",
        ),
        ("opt", Patch(facecolor=OPT_COLOUR), "optimizer step"),
    ]
    out = [(handle, text) for cat, handle, text in entries if cat in dr.cats]
    if chunked:
        out.append((Patch(facecolor="#bbbbbb", hatch=CHUNK_HATCH, edgecolor="white"),
                    "c1: the rank's second model chunk"))  # fmt: skip
    if "pp" in dr.kinds:
        pair = (Patch(facecolor=mb_colour(few[0], True)), Patch(facecolor=mb_colour(few[0], False)))
        out.append((pair, "pipeline send (on the sender): a3↓ activation, g3↑ gradient"))
    for kind in sorted(dr.kinds - {"pp"}):
        out.append((Patch(facecolor=COMM_COLOURS.get(kind, "#999999")), COMM_NAMES.get(kind, kind)))
    if dr.instant - dr.kinds:
        out.append((Patch(facecolor="none", edgecolor="none"), "messages take no time: free links"))
    if dr.idle_exposed:
        out.append((Patch(facecolor=EXPOSED_TINT, edgecolor=EXPOSED_COLOUR, linewidth=0,
                          hatch="////" if hatched else None),
                    "exposed comm: idle until its group's collective ends"))  # fmt: skip
    out.append((Patch(facecolor="white", edgecolor="#999999"), "white: bubble (idle otherwise)"))
    if failed:
        marker = Line2D([], [], marker="X", color=FAILED_COLOUR, linestyle="none", markersize=9)
        out.append((marker, "device failed"))
    return out

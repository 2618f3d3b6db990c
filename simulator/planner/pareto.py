"""The picture of a plan: step time against peak memory, with the Pareto front.

A layout is on the Pareto front when no other layout that fits is both
faster and lighter: those are the only ones worth choosing between, trading
memory headroom (a larger batch, a longer sequence) for speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from ..hardware import GiB
from ..viz.gantt import finish_figure


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(memory, time)`` that no other point beats on both,
    by increasing memory (and so decreasing time)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front: list[int] = []
    for i in order:
        if not front or points[i][1] < points[front[-1]][1]:
            front.append(i)
    return front


def draw(
    rows: Sequence[dict[str, Any]], capacity: float, title: str, path: str | Path | None = None
) -> Figure | None:
    """The plan's scatter of every simulated layout: saved to ``path``, or without a
    path returned (for a notebook to show).

    Step times span orders of magnitude (a layer-wise pipeline is many times
    slower than the best layouts), so the time axis is logarithmic.
    """
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    oom = [r for r in rows if r["status"] == "oom"]
    points = [(r["peak_memory_bytes"] / GiB, r["iteration_time_s"]) for r in ok]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(8, 5.2), layout="constrained")
    ax.scatter(
        [p[0] for p in points],
        [p[1] for p in points],
        s=12,
        color="0.7",
        label=f"layouts that fit ({len(ok)})",
        zorder=2,
    )
    if oom:
        ax.scatter(
            [r["peak_memory_bytes"] / GiB for r in oom],
            [r["iteration_time_s"] for r in oom],
            s=20,
            marker="x",
            color="tab:red",
            label=f"out of memory ({len(oom)})",
            zorder=2,
        )
    if front:
        fx, fy = zip(*(points[i] for i in front), strict=True)
        ax.plot(fx, fy, "-o", color="tab:blue", ms=5, lw=1.5, label="Pareto front", zorder=3)
        best = min(range(len(ok)), key=lambda i: points[i][1])
        ax.annotate(
            f"fastest: {ok[best]['name']}\n{points[best][1]:.3g} s, {points[best][0]:.1f} GiB",
            points[best],
            # below and right of the fastest layout, where no other layout can be
            xytext=(12, -8),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=8,
            color="tab:blue",
            bbox={"boxstyle": "round", "fc": "white", "ec": "tab:blue", "lw": 0.6, "alpha": 0.9},
            arrowprops={"arrowstyle": "-", "color": "tab:blue", "lw": 0.8},
            zorder=4,
        )
    ax.axvline(capacity / GiB, color="tab:red", ls="--", lw=1)
    ax.text(
        capacity / GiB,
        0.98,
        f"device memory {capacity / GiB:.0f} GiB ",
        transform=ax.get_xaxis_transform(),
        va="top",
        ha="right",
        fontsize=8,
        color="tab:red",
    )
    ax.set_yscale("log")
    for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis_format(FormatStrFormatter("%g"))  # seconds as plain numbers on the log scale
    if front:
        ax.set_ylim(bottom=min(p[1] for p in points) / 1.3)  # room for the label
    ax.set_xlabel("peak memory per device (GiB)")
    ax.set_ylabel("step time (s, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return finish_figure(fig, path)

"""The picture of a plan: step time against peak memory, with the Pareto front.

A layout is on the Pareto front when no other layout that fits is both
faster and lighter: those are the only ones worth choosing between, trading
memory headroom (a larger batch, a longer sequence) for speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..hardware import GiB


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(memory, time)`` that no other point beats on both,
    by increasing memory (and so decreasing time)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front: list[int] = []
    for i in order:
        if not front or points[i][1] < points[front[-1]][1]:
            front.append(i)
    return front


def draw(rows: Sequence[dict[str, Any]], capacity: float, path: str | Path, title: str) -> None:
    """Save the plan's scatter of every simulated layout to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    oom = [r for r in rows if r["status"] == "oom"]
    points = [(r["peak_memory_bytes"] / GiB, r["iteration_time_s"]) for r in ok]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    ax.scatter(
        [p[0] for p in points],
        [p[1] for p in points],
        s=14,
        color="0.65",
        label=f"layouts that fit ({len(ok)})",
        zorder=2,
    )
    if oom:
        ax.scatter(
            [r["peak_memory_bytes"] / GiB for r in oom],
            [r["iteration_time_s"] for r in oom],
            s=18,
            marker="x",
            color="tab:red",
            label=f"out of memory ({len(oom)})",
            zorder=2,
        )
    if front:
        fx, fy = zip(*(points[i] for i in front), strict=True)
        ax.plot(fx, fy, "-o", color="tab:blue", ms=6, lw=1.5, label="Pareto front", zorder=3)
        best = min(range(len(ok)), key=lambda i: points[i][1])
        ax.annotate(
            ok[best]["name"],
            points[best],
            xytext=(8, -4),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="tab:blue",
        )
    ax.axvline(capacity / GiB, color="tab:red", ls="--", lw=1)
    ax.text(
        capacity / GiB,
        1.0,
        f" device memory {capacity / GiB:.0f} GiB",
        transform=ax.get_xaxis_transform(),
        va="top",
        ha="right",
        rotation=90,
        fontsize=8,
        color="tab:red",
    )
    ax.set_xlabel("peak memory per device (GiB)")
    ax.set_ylabel("step time (s)")
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=130)
    plt.close(fig)

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
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..hardware.units import bytes_unit, format_bytes, time_unit
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


def scales(rows: Sequence[dict[str, Any]], capacity: float) -> dict[str, Any]:
    """The units the picture of ``rows`` uses: memory in the binary unit of the largest
    peak (a tiny model's MiB, not "0.0 GiB"), the device memory drawn as a line only
    when it is on that scale (else named in the corner), step time in the unit of
    the slowest layout (s, ms or us)."""
    peak = max((r["peak_memory_bytes"] for r in rows), default=0) or 1
    show_capacity = capacity <= 3 * peak
    memory_scale, memory_unit = bytes_unit(max(peak, capacity) if show_capacity else peak)
    time_scale, time_unit_name = time_unit(max(r["iteration_time_s"] for r in rows))
    return {
        "memory_scale": memory_scale,
        "memory_unit": memory_unit,
        "show_capacity": show_capacity,
        "time_scale": time_scale,
        "time_unit": time_unit_name,
    }


def draw(
    rows: Sequence[dict[str, Any]], capacity: float, title: str, path: str | Path | None = None
) -> Figure | None:
    """The plan's scatter of every simulated layout: saved to ``path``, or without a
    path returned (for a notebook to show).

    Step times span orders of magnitude (a layer-wise pipeline is many times
    slower than the best layouts), so the time axis is logarithmic, its ticks at
    1, 2 and 5 of every power of ten (finer when the times span less
    than a decade), each labelled. The units are
    :func:`scales`'.
    """
    import matplotlib.pyplot as plt

    u = scales(rows, capacity)
    mb, mu, ts, tu = u["memory_scale"], u["memory_unit"], u["time_scale"], u["time_unit"]
    ok = [r for r in rows if r["status"] == "ok"]
    oom = [r for r in rows if r["status"] == "oom"]
    points = [(r["peak_memory_bytes"] / mb, r["iteration_time_s"] / ts) for r in ok]
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
            [r["peak_memory_bytes"] / mb for r in oom],
            [r["iteration_time_s"] / ts for r in oom],
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
            f"fastest: {ok[best]['name']}\n{points[best][1]:.3f} {tu}, {points[best][0]:.2f} {mu}",
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
    memory_text = f"device memory {format_bytes(capacity)}"
    if u["show_capacity"]:
        ax.axvline(capacity / mb, color="tab:red", ls="--", lw=1)
        ax.text(capacity / mb, 0.98, memory_text + " ", transform=ax.get_xaxis_transform(),
                va="top", ha="right", fontsize=8, color="tab:red")  # fmt: skip
    else:
        ax.text(0.99, 0.98, memory_text + ", far right of every layout", transform=ax.transAxes,
                va="top", ha="right", fontsize=8, color="tab:red")  # fmt: skip
    ax.set_yscale("log")
    times = [r["iteration_time_s"] / ts for r in rows]
    narrow = max(times) < 10 * min(times)  # under a decade: a tick at every 1..9 of it
    subs = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9) if narrow else (1.0, 2.0, 5.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if front:
        ax.set_ylim(bottom=min(p[1] for p in points) / 1.3)  # room for the label
    ax.set_xlabel(f"peak memory per device ({mu})")
    ax.set_ylabel(f"step time ({tu}, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return finish_figure(fig, path)

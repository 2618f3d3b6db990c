"""How close the simulator comes to measured Megatron-LM runs and to nccl-tests.

Three sets of measurements, replayed from datasheet figures (and the few
calibrated link efficiencies :mod:`simulator.hardware` names):

* **vTrain's multi-node set** (``data/README.md``): 108 measured iteration
  times of Megatron-LM GPT runs on 64 to 512 A100s, full recomputation, 1F1B,
  one gradient all-reduce after backward. vTrain itself, with kernel times
  profiled on a real A100, reports a mean absolute percentage error of 14.73%.
* **Korthikanti et al. 2022** ("Reducing Activation Recomputation in Large
  Transformer Models", MLSys 2023), Table 5: end-to-end iteration times of
  GPT models of 22B, 175B, 530B and 1T parameters on Selene (DGX A100 nodes,
  8 x HDR 200 Gb/s each), with full recomputation and with sequence
  parallelism plus selective recomputation; configurations from their
  Table 3 (tensor-parallel size 8, vocabulary 51200, sequence 2048).
* **nccl-tests** bus bandwidths of a 1 GB all-reduce published for A100 and
  H100 systems (sources in :data:`NCCL`).

Prints one line per run, the mean absolute percentage error (MAPE) per group
and overall, Spearman's rank correlation of predicted against measured times
(overall and between the layouts of one model), writes the scatter plot
``docs/images/calibration.png``, and compares ``collective`` with nccl-tests.

Run: ``python benchmarks/megatron_calibration.py [--every N] [--plot PATH]``
(not part of the test suite). ``--every N`` replays every N-th vTrain run
only (default 1: all 108) for a quicker look; every run prints its wall time.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from simulator import GPTConfig, Strategy, TrainingConfig, preset, run_strategy
from simulator.comm import closed_forms
from simulator.experiment.collective import run_collective
from simulator.hardware import GB, US, ClusterSpec, LinkSpec

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "megatron_a100_measured.csv"
PLOT = ROOT / "docs" / "images" / "calibration.png"


@dataclass(frozen=True)
class Run:
    """One measured training step and how to replay it."""

    group: str
    label: str
    model: GPTConfig
    strategy: Strategy
    cluster: ClusterSpec
    batch: int
    measured_s: float


def vtrain_cluster(gpus: int) -> ClusterSpec:
    """DGX A100 nodes with the links of vTrain's configuration files: 150 GB/s per GPU
    inside a node (their figure), 800 Gb/s per node between nodes, as 8 NICs of
    100 Gb/s (with InfiniBand's achievable fraction, :mod:`simulator.hardware`)."""
    base = preset("dgx-a100", nodes=math.ceil(gpus / 8))
    nic = replace(base.inter_node, bandwidth=12.5 * GB)
    return replace(base, intra_node=LinkSpec(150 * GB, 3 * US), inter_node=nic)


def vtrain_runs() -> list[Run]:
    """The 108 runs of vTrain's multi-node validation set."""
    with DATA.open() as f:
        rows = list(csv.reader(f))[1:]
    out = []
    for r in rows:
        params, gpus, batch, mb, h, a, layers, s, t, d, p, ms = r
        gpus, batch, mb, h, a, layers, s, t, d, p = map(
            int, (gpus, batch, mb, h, a, layers, s, t, d, p)
        )
        group = "vTrain tp=1" if t == 1 else "vTrain tp 2-8" if t <= 8 else "vTrain tp=16 (2 nodes)"
        model = GPTConfig(
            layers=layers, hidden=h, heads=a, seq_len=s, vocab=50257, dropout=0.1, dtype="bf16"
        )
        strategy = Strategy(
            f"{params}B-t{t}d{d}p{p}b{mb}",
            dp=d,
            tp=t,
            pp=p,
            microbatches=batch // (d * mb),
            partition="uniform",
            recompute="full",
        )
        out.append(
            Run(group, strategy.name, model, strategy, vtrain_cluster(gpus), batch, float(ms) / 1e3)
        )
    return out


#: Korthikanti et al. 2022, Table 3 (heads, hidden, layers, pipeline size, GPUs, global
#: batch, micro-batch; tensor-parallel size 8 throughout) and Table 5 (iteration time in
#: seconds with full recomputation, and with sequence parallelism and selective
#: recomputation, "present work").
KORTHIKANTI = {
    "22B": (64, 6144, 48, 1, 8, 4, 4, 1.42, 1.10),
    "175B": (96, 12288, 96, 8, 64, 64, 1, 18.13, 13.75),
    "530B": (128, 20480, 105, 35, 280, 280, 1, 49.05, 37.83),
    "1T": (160, 25600, 128, 64, 512, 512, 1, 94.42, 71.49),
}


def korthikanti_runs() -> list[Run]:
    out = []
    for name, (a, h, layers, p, gpus, batch, mb, full_s, present_s) in KORTHIKANTI.items():
        model = GPTConfig(
            layers=layers, hidden=h, heads=a, seq_len=2048, vocab=51200, dropout=0.1, dtype="bf16"
        )
        cluster = preset("dgx-a100", nodes=math.ceil(gpus / 8))
        for group, recompute, sp, seconds in (
            ("Korthikanti full recompute", "full", False, full_s),
            ("Korthikanti SP + selective", "selective", True, present_s),
        ):
            strategy = Strategy(
                f"{name}-{recompute}",
                tp=8,
                pp=p,
                dp=gpus // (8 * p),
                microbatches=batch // mb,
                partition="uniform",
                recompute=recompute,
                sequence_parallel=sp,
            )
            out.append(Run(group, strategy.name, model, strategy, cluster, batch, seconds))
    return out


def simulate(run: Run) -> float:
    training = TrainingConfig(numerics=False, global_batch=run.batch, steps=1, optimizer="adam")
    result = run_strategy(run.cluster, run.model, training, run.strategy)
    return result.metrics["iteration_time_s"]


def mape(pairs: list[tuple[float, float]]) -> float:
    """Mean absolute percentage error of ``(predicted, measured)`` pairs, in %."""
    return 100 * sum(abs(p - m) / m for p, m in pairs) / len(pairs)


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks; ties share their mean rank)."""

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        for v in set(values):  # ties: the mean of their ranks
            tied = [i for i, w in enumerate(values) if w == v]
            r[tied] = r[tied].mean()
        return r

    return float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])


# -- nccl-tests -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    label: str
    preset: str
    nodes: int
    low_gbs: float
    high_gbs: float
    source: str


#: Published all-reduce bus bandwidths for 1 GB (NVIDIA/nccl-tests reports busbw =
#: algbw x 2(n-1)/n, doc/PERFORMANCE.md).
NCCL = [
    Published(
        "8 x A100 SXM4, one node",
        "a100-node",
        1,
        200,
        235,
        "nccl-tests on 8 x A100 over NVSwitch: about 200 GB/s (NVIDIA/nccl-tests issue "
        "#149) up to about 235 GB/s on DGX A100",
    ),
    Published(
        "2 x DGX A100, 8 x HDR each",
        "dgx-a100",
        2,
        192 * 0.85,
        192 * 1.15,
        "NVIDIA's measured ring all-reduce on DGX A100 nodes: 192 GB/s (+-15% shown)",
    ),
    Published(
        "4 x DGX A100, 8 x HDR each",
        "dgx-a100",
        4,
        192 * 0.85,
        192 * 1.15,
        "as above, 4 nodes",
    ),
    Published(
        "8 x H100 SXM5, one node, ring",
        "h100-node",
        1,
        360,
        380,
        "NCCL_ALGO=RING on 8 x H100: about 370 GB/s (NCCL maintainer, NVIDIA/nccl-tests "
        "issue #212; NVLink SHARP reaches 480 GB/s busbw, which the simulator does not model)",
    ),
]


def nccl_table() -> None:
    print("\nall-reduce of 1 GB, simulator `collective` (auto) against published nccl-tests")
    print(f"{'system':<32} {'ran':>10} {'busbw GB/s':>11} {'published':>15}  source")
    for pub in NCCL:
        cluster = preset(pub.preset, pub.nodes)
        devices = cluster.num_devices
        timed = run_collective("all_reduce", "auto", cluster, devices, 10**9)
        busbw = closed_forms.busbw("all_reduce", devices, 10**9, timed.seconds) / GB
        ran = timed.algorithm + (f" x{timed.channels}" if timed.channels > 1 else "")
        inside = "ok" if pub.low_gbs <= busbw <= pub.high_gbs else "OUT"
        print(
            f"{pub.label:<32} {ran:>10} {busbw:>11.1f} {pub.low_gbs:>6.0f}-{pub.high_gbs:<4.0f}"
            f" {inside:>3}  {pub.source}"
        )


# -- the plot ---------------------------------------------------------------------------------
def plot(results: list[tuple[Run, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "vTrain tp=1": ("#4c72b0", "o"),
        "vTrain tp 2-8": ("#55a868", "o"),
        "vTrain tp=16 (2 nodes)": ("#c44e52", "o"),
        "Korthikanti full recompute": ("#8172b2", "s"),
        "Korthikanti SP + selective": ("#dd8452", "D"),
    }
    fig, ax = plt.subplots(figsize=(6.4, 6.0), dpi=150)
    measured = [r.measured_s for r, _ in results]
    lo, hi = min(measured) / 1.6, max(measured) * 1.6
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85",
                    label="within 10%")  # fmt: skip
    for group, (color, marker) in styles.items():
        pts = [(r.measured_s, p) for r, p in results if r.group == group]
        if pts:
            err = mape([(p, m) for m, p in pts])
            ax.scatter(*zip(*pts, strict=True), s=22, color=color, marker=marker,
                       edgecolor="white", linewidth=0.4, zorder=3,
                       label=f"{group} ({len(pts)} runs, MAPE {err:.0f}%)")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
    ax.set_xlabel("measured iteration time (s)")
    ax.set_ylabel("simulated iteration time (s)")
    overall = mape([(p, r.measured_s) for r, p in results])
    rho = spearman([r.measured_s for r, _ in results], [p for _, p in results])
    ax.set_title(
        f"Megatron-LM on A100s: simulated vs measured\n"
        f"{len(results)} runs, MAPE {overall:.1f}%, Spearman {rho:.3f}",
        fontsize=10,
    )
    ax.grid(True, which="both", color="0.92", lw=0.5)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=1, help="replay every N-th vTrain run")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where to write the scatter")
    args = parser.parse_args()
    runs = vtrain_runs()[:: max(args.every, 1)] + korthikanti_runs()
    print(f"{'group':<27} {'run':<24} {'GPUs':>5} {'measured s':>10} {'simulated s':>11} "
          f"{'error':>7} {'wall s':>7}")  # fmt: skip
    results: list[tuple[Run, float]] = []
    started = time.perf_counter()
    for run in runs:
        start = time.perf_counter()
        predicted = simulate(run)
        wall = time.perf_counter() - start
        results.append((run, predicted))
        error = 100 * (predicted - run.measured_s) / run.measured_s
        print(
            f"{run.group:<27} {run.label:<24} {run.strategy.num_devices:>5} "
            f"{run.measured_s:>10.3f} {predicted:>11.3f} {error:>6.1f}% {wall:>7.1f}",
            flush=True,
        )
    print(f"\n{len(results)} runs replayed in {time.perf_counter() - started:.0f} s")
    groups = sorted({r.group for r, _ in results})
    for group in groups:
        pairs = [(p, r.measured_s) for r, p in results if r.group == group]
        print(f"MAPE {group:<27} {mape(pairs):5.1f}%  ({len(pairs)} runs)")
    pairs = [(p, r.measured_s) for r, p in results]
    print(f"MAPE {'all':<27} {mape(pairs):5.1f}%  ({len(pairs)} runs)")
    rho = spearman([m for _, m in pairs], [p for p, _ in pairs])
    print(f"Spearman rank correlation, all runs: {rho:.3f}")
    by_model: dict[str, list[tuple[float, float]]] = {}
    for r, p in results:
        if r.group.startswith("vTrain"):
            by_model.setdefault(r.label.split("-")[0], []).append((p, r.measured_s))
    within = {
        model: spearman([m for _, m in pairs], [p for p, _ in pairs])
        for model, pairs in by_model.items()
        if len(pairs) >= 3
    }
    print(
        f"Spearman between the layouts of one model (vTrain, {len(within)} models): "
        + ", ".join(f"{model} {rho:.3f}" for model, rho in within.items())
    )
    plot(results, args.plot)
    print(f"wrote {args.plot}")
    nccl_table()


if __name__ == "__main__":
    main()

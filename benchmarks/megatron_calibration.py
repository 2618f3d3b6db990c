"""How far a datasheet-only roofline gets on real Megatron-LM runs.

Replays measured GPT training runs on A100 clusters (see ``data/README.md``:
the vTrain validation set, Bang et al., MICRO 2024) in shape-only mode and
compares the simulated iteration time with the measured one. vTrain, with
kernel times profiled on a real A100, reports a mean absolute percentage error
of 14.73% on this set; this simulator has no profiled kernels.

Tensor-parallel groups that span nodes come out several times too slow: their
ring all-reduce crosses the network on one port per hop, where NCCL spreads
parallel rings over all eight network adapters of a DGX node.

Run: ``python benchmarks/megatron_calibration.py [--max-work N] [--all]``
(not part of the test suite; the whole set takes tens of minutes).
``--max-work`` keeps the runs whose simulated work -- layer passes over all
workers -- is at most N (default 12000: 28 runs, about two minutes).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import replace
from pathlib import Path

from simulator import GPTConfig, Strategy, TrainingConfig, preset, run_strategy
from simulator.hardware import GB, US, LinkSpec

DATA = Path(__file__).parent / "data" / "megatron_a100_measured.csv"
VOCAB = 50257


def cluster(gpus: int):
    """DGX A100 nodes with the links vTrain's configuration gives: 150 GB/s per GPU
    inside a node, 800 Gb/s per node (100 Gb/s per GPU) between nodes."""
    base = preset("dgx-a100", nodes=math.ceil(gpus / 8))
    return replace(
        base, intra_node=LinkSpec(150 * GB, 3 * US), inter_node=LinkSpec(12.5 * GB, 8 * US, 0.9)
    )


def padded_vocab(t: int) -> int:
    """Megatron-LM pads the vocabulary to a multiple of 128 x tp."""
    unit = 128 * t
    return math.ceil(VOCAB / unit) * unit


def runs() -> list[dict]:
    with DATA.open() as f:
        rows = list(csv.reader(f))[1:]
    out = []
    for r in rows:
        params, gpus, batch, mb, h, a, layers, s, t, d, p, ms = r
        gpus, batch, mb, h, a, layers, s, t, d, p = map(
            int, (gpus, batch, mb, h, a, layers, s, t, d, p)
        )
        m = batch // (d * mb)
        out.append(
            {
                "params": params,
                "gpus": gpus,
                "batch": batch,
                "m": m,
                "h": h,
                "a": a,
                "layers": layers,
                "s": s,
                "t": t,
                "d": d,
                "p": p,
                "measured_s": float(ms) / 1e3,
                "work": d * m * 2 * layers,
            }
        )
    return out


def simulate(run: dict) -> float:
    model = GPTConfig(
        layers=run["layers"],
        hidden=run["h"],
        heads=run["a"],
        seq_len=run["s"],
        vocab=padded_vocab(run["t"]),
        dropout=0.1,
        dtype="bf16",
    )
    training = TrainingConfig(numerics=False, global_batch=run["batch"], steps=1, optimizer="adam")
    strategy = Strategy(
        "megatron",
        dp=run["d"],
        tp=run["t"],
        pp=run["p"],
        microbatches=run["m"],
        schedule="1f1b",
        partition="uniform",
        recompute="full",
    )
    return run_strategy(cluster(run["gpus"]), model, training, strategy).metrics["iteration_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-work", type=int, default=12000)
    parser.add_argument("--all", action="store_true", help="every run, however long")
    args = parser.parse_args()
    chosen = [r for r in runs() if args.all or r["work"] <= args.max_work]
    errors: list[tuple[float, bool]] = []  # (|error|, tensor-parallel group inside a node)
    print(
        f"{'params':>6} {'GPUs':>5} {'tp':>3} {'dp':>3} {'pp':>3} {'m':>4} "
        f"{'measured s':>10} {'simulated s':>11} {'error':>7} {'wall s':>7}"
    )
    for r in chosen:
        start = time.perf_counter()
        predicted = simulate(r)
        wall = time.perf_counter() - start
        error = (predicted - r["measured_s"]) / r["measured_s"]
        errors.append((abs(error), r["t"] <= 8))
        print(
            f"{r['params']:>6} {r['gpus']:>5} {r['t']:>3} {r['d']:>3} {r['p']:>3} {r['m']:>4} "
            f"{r['measured_s']:>10.3f} {predicted:>11.3f} {100 * error:>6.1f}% {wall:>7.1f}"
        )
    for label, keep in (
        ("all", lambda inside: True),
        ("tp inside a node", bool),
        ("tp across nodes", lambda inside: not inside),
    ):
        picked = [e for e, inside in errors if keep(inside)]
        if picked:
            print(
                f"{label}: {len(picked)} runs, mean absolute percentage error "
                f"{100 * sum(picked) / len(picked):.1f}%"
            )


if __name__ == "__main__":
    main()

"""What tracing each kind of block once saves: shape-only runs with and without it.

Each layout runs alternately with block reuse (:mod:`simulator.parallel.reuse`)
and with every block traced, in this one process, and the wall times' medians
are compared; the two runs' metrics must be equal, or the benchmark stops.

    python benchmarks/bench_reuse.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

from simulator import GPTConfig, Strategy, TrainingConfig, preset, run_strategy
from simulator.runtime import replay

GPT3 = GPTConfig(
    layers=96, hidden=12288, heads=96, seq_len=2048, vocab=51200, dropout=0.1, dtype="bf16"
)
CASES = {
    # notebook 05's hand-written layout on 64 GPUs
    "175B tp8-pp8 m16, full recomputation, 8 nodes": (
        8, 16, Strategy("tp8-pp8", tp=8, pp=8, microbatches=16, recompute="full",
                        partition="uniform"),
    ),
    # the planner's best layout on 1024 GPUs
    "175B dp64-tp4-pp4-interleavedx4 m24, 128 nodes": (
        128, 1536, Strategy("best", dp=64, tp=4, pp=4, schedule="interleaved", chunks=4,
                            microbatches=24, zero=1, sequence_parallel=True,
                            recompute="selective"),
    ),
    # ZeRO-3 with every layer on one stage
    "175B dp256-tp4-pp1-zero3 m2, 128 nodes": (
        128, 1536, Strategy("zero3", dp=256, tp=4, microbatches=2, zero=3,
                            sequence_parallel=True, recompute="selective"),
    ),
}  # fmt: skip


def timed(nodes: int, batch: int, strategy: Strategy) -> tuple[float, dict]:
    training = TrainingConfig(numerics=False, global_batch=batch, steps=1, optimizer="adam")
    start = time.perf_counter()
    result = run_strategy(preset("dgx-a100", nodes=nodes), GPT3, training, strategy)
    return time.perf_counter() - start, result.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name, (nodes, batch, strategy) in CASES.items():
        timed(nodes, batch, strategy)  # warm the process's caches
        on, off = [], []
        for _ in range(args.repeat):
            seconds, with_reuse = timed(nodes, batch, strategy)
            on.append(seconds)
            with mock.patch.object(replay, "BlockReuse", lambda: None):
                seconds, without = timed(nodes, batch, strategy)
            off.append(seconds)
            if with_reuse != without:
                raise SystemExit(f"{name}: the metrics differ with and without block reuse")
        a, b = statistics.median(on), statistics.median(off)
        print(f"{name}: {a:.2f} s with reuse, {b:.2f} s tracing every block ({a / b:.2f} x)")


if __name__ == "__main__":
    main()

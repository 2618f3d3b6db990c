"""How long simulations take, as ratios against a baseline run in the same process.

Run: ``python benchmarks/bench_simulator.py`` (not part of the test suite).
Wall-clock times depend on the machine; the ratios to the baseline -- one
single-device step of the quick-start MLP -- are what to compare across
changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from simulator import (
    GPTConfig,
    MLPConfig,
    Strategy,
    TrainingConfig,
    preset,
    run_strategy,
)
from simulator.comm.timing import time_collective

GPT3 = GPTConfig(
    layers=96, hidden=12288, heads=96, seq_len=2048, vocab=51200, dropout=0.1, dtype="bf16"
)


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` wall-clock runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def mlp(strategy: Strategy, batch: int = 256, nodes: int = 1) -> Callable[[], object]:
    return lambda: run_strategy(
        preset("toy", nodes=nodes),
        MLPConfig(8, 256),
        TrainingConfig(global_batch=batch, steps=1),
        strategy,
    )


def gpt3(strategy: Strategy, nodes: int, batch: int) -> Callable[[], object]:
    training = TrainingConfig(numerics=False, global_batch=batch, steps=1, optimizer="adam")
    return lambda: run_strategy(preset("dgx-a100", nodes=nodes), GPT3, training, strategy)


CASES: dict[str, Callable[[], object]] = {
    "MLP 1F1B, 4 stages, 8 micro-batches (numerics)": mlp(Strategy("1f1b", pp=4, microbatches=8)),
    "MLP DDP with buckets, 8 replicas on 2 nodes (numerics)": mlp(
        Strategy("ddp", dp=8, bucket_mb=0.5), batch=512, nodes=2
    ),
    "MLP ZeRO-3, 8 replicas (numerics)": mlp(Strategy("z3", dp=8, zero=3), batch=512, nodes=2),
    "GPT-3 175B, 1 device (shape-only)": gpt3(Strategy("one"), 1, 1),
    "GPT-3 175B, dp2 x pp8, 64 micro-batches, full recompute (shape-only)": gpt3(
        Strategy("p", dp=2, pp=8, microbatches=64, partition="uniform", recompute="full"), 2, 128
    ),
    "GPT-3 175B, tp8 x pp8 on 64 A100s, 32 micro-batches, full recompute (shape-only)": gpt3(
        Strategy("t", tp=8, pp=8, microbatches=32, partition="uniform", recompute="full"), 8, 32
    ),
    "ring all-reduce of 1 GB over 256 devices, every message timed": lambda: time_collective(
        "all_reduce", "ring", preset("dgx-a100", nodes=32), 256, 10**9
    ),
}


def main() -> None:
    baseline = best_of(mlp(Strategy("single")))
    print(f"baseline: one single-device step of an 8 x 256 MLP, batch 256: {baseline * 1e3:.1f} ms")
    print(f"{'case':<72} {'seconds':>8} {'x baseline':>11}")
    for name, fn in CASES.items():
        t = best_of(fn)
        print(f"{name:<72} {t:>8.3f} {t / baseline:>11.1f}")


if __name__ == "__main__":
    main()

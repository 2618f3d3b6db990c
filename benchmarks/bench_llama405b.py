"""How long a Llama 3 405B step on 16,384 H100s takes to simulate, shape-only, no files.

Run: ``python benchmarks/bench_llama405b.py`` (not part of the test suite).

The layout is the Llama 3 paper's at 16,384 GPUs (Llama Team 2024, "The Llama 3
Herd of Models", Table 4): tensor parallelism 8, pipeline parallelism 16, data
parallelism 128, sequences of 8,192 tokens in batches of 16M tokens (2,048
sequences, 16 per replica), with sequence parallelism, the interleaved
schedule (two chunks per rank), ZeRO-1 and FlashAttention, on 2,048 DGX H100
nodes. The whole ``run_strategy`` call is timed -- building the plan,
simulating the step (the 128 identical replicas folded into one, their
gradient collectives still over all 16,384 devices), the metrics -- without
writing pictures or traces. The wall time is printed next to the rate at
which bare SimPy processes ``env.timeout`` events in the same process, since
both follow the machine; the simulated MFU is printed next to the paper's
41% (BF16, 16,384 GPUs), and the run with FP8 GEMMs beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_simulator import bare_simpy_rate

from simulator import Strategy, TrainingConfig, preset, run_strategy
from simulator.nn.named import named_model

GPUS = 16_384
LAYOUT = {
    "dp": 128,
    "tp": 8,
    "pp": 16,
    "microbatches": 16,
    "schedule": "interleaved",
    "chunks": 2,
    "sequence_parallel": True,
    "zero": 1,
}


def step(precision: str) -> tuple[float, dict]:
    """Wall seconds of the whole ``run_strategy`` call, and its metrics."""
    model = named_model("llama3-405b")
    cluster = preset("dgx-h100", nodes=GPUS // 8)
    training = TrainingConfig(
        numerics=False, global_batch=model.global_batch, steps=1, optimizer="adam"
    )
    strategy = Strategy(f"405b-{precision}", precision=precision, **LAYOUT)
    start = time.perf_counter()
    result = run_strategy(cluster, model.config, training, strategy)
    return time.perf_counter() - start, result.metrics


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    rate = bare_simpy_rate()
    print(f"bare SimPy: {rate / 1e6:.2f} million events per second in this process")
    for precision in ("bf16", "fp8"):
        wall, m = step(precision)
        print(
            f"Llama 3 405B, {GPUS:,} H100s (dp 128 x tp 8 x pp 16, interleaved, ZeRO-1), "
            f"{precision}: {wall:.1f} s to simulate one step; simulated step "
            f"{m['iteration_time_s']:.2f} s, MFU {m['mfu']:.1%} (the paper: 41% in BF16), "
            f"peak memory {m['peak_memory_bytes'] / 2**30:.1f} GiB, status {m['status']}, "
            f"{m['folded_replicas']} replicas folded"
        )


if __name__ == "__main__":
    main()

"""How fast the planner is, and how good its best layout is, on GPT-3 175B.

The target (Narayanan et al. 2021, sec. 5.1 and Table 1, report 44-49% of
the A100's peak for 145.6B to 310.1B models on 1536 to 1920 GPUs; GPT-3 175B
is trained with tp = 8 inside a node, pp = 8 or 16 across nodes, interleaved
1F1B, full recomputation): on 128 DGX A100 nodes with a batch of 1536,

1. enumerate and prune every layout, and count what each rule removed;
2. simulate every survivor, within 60 s on 2 cores;
3. find a layout no slower than Megatron-LM's choice simulated the same way,
   with an MFU within 15% of 44-49%.

Three parts, each printed as it finishes:

* ``prune``: steps 1 at full scale (no simulation), with its wall time;
* ``cost``: one full-scale simulation of Megatron's choice, timed, and the
  time every survivor would take at that cost on ``--workers`` processes;
* ``plan``: a plan that finishes here, on ``--nodes`` nodes with a batch of
  ``--batch`` (default 8 nodes, 32 sequences) over Megatron's family of
  layouts, and its best layout against Megatron's choice on that cluster.

Run: ``python benchmarks/bench_planner.py [--parts prune,cost,plan] [--workers 2]``
(not part of the test suite; ``cost`` alone takes minutes at full scale).
"""

from __future__ import annotations

import argparse
import time

from simulator import Strategy, TrainingConfig, preset, run_strategy
from simulator.planner import SearchSpace, model_preset, plan
from simulator.planner.prune import Pruner
from simulator.planner.space import layouts

MODEL = model_preset("gpt3-175b").config
#: Megatron-LM's published family for GPT-3 175B (Narayanan et al. 2021, sec. 5)
MEGATRON_FAMILY = {
    "max_tp": 8,
    "schedules": ("1f1b", "interleaved"),
    "max_chunks": 2,
    "orders": ("tp-cp-dp-pp",),
}


def training(batch: int) -> TrainingConfig:
    return TrainingConfig(numerics=False, global_batch=batch, steps=1, optimizer="adam")


def megatron_choice(nodes: int, batch: int) -> Strategy:
    """tp = 8 in a node, pp = 8 across nodes, interleaved with 2 chunks, full
    recomputation, micro-batches of 1, the rest data-parallel."""
    pp = 8
    dp = nodes * 8 // (8 * pp)
    return Strategy(
        "megatron",
        dp=dp,
        tp=8,
        pp=pp,
        microbatches=batch // dp,
        schedule="interleaved",
        chunks=2,
        recompute="full",
        partition="uniform",
    )


def part_prune(nodes: int, batch: int) -> int:
    cluster = preset("dgx-a100", nodes)
    started = time.perf_counter()
    pruner = Pruner(cluster, MODEL, training(batch))
    survivors = sum(1 for _ in pruner.survivors(layouts(cluster.num_devices, batch, SearchSpace())))
    seconds = time.perf_counter() - started
    print(f"prune: GPT-3 175B on {nodes} x 8 A100, batch {batch}, the whole default space")
    print(f"  {pruner.checked} distinct layouts, {survivors} survive, in {seconds:.1f} s")
    for rule, n in sorted(pruner.pruned.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>8}  {rule}")
    return survivors


def part_cost(nodes: int, batch: int, survivors: int | None, workers: int) -> None:
    cluster = preset("dgx-a100", nodes)
    s = megatron_choice(nodes, batch)
    started = time.perf_counter()
    metrics = run_strategy(cluster, MODEL, training(batch), s).metrics
    seconds = time.perf_counter() - started
    print(f"cost: Megatron's layout {s.dp} x {s.tp} x {s.pp}, m = {s.microbatches}, interleaved")
    print(
        f"  simulated in {seconds:.1f} s: step {metrics['iteration_time_s']:.2f} s, "
        f"MFU {100 * metrics['mfu']:.1f}%, peak {metrics['peak_memory_bytes'] / 2**30:.1f} GiB, "
        f"{metrics['status']}"
    )
    if survivors:
        print(
            f"  {survivors} survivors at that cost on {workers} processes: about "
            f"{survivors * seconds / workers / 60:.0f} min (target: 1 min)"
        )


def part_plan(nodes: int, batch: int, workers: int) -> None:
    cluster = preset("dgx-a100", nodes)
    started = time.perf_counter()
    result = plan(
        cluster,
        MODEL,
        training(batch),
        base=Strategy(partition="uniform"),
        workers=workers,
        **MEGATRON_FAMILY,
    )
    seconds = time.perf_counter() - started
    print(f"plan: GPT-3 175B on {nodes} x 8 A100, batch {batch}, Megatron's family of layouts")
    print(result.summary())
    print(result.table())
    print(f"  {seconds:.1f} s on {workers} processes")
    reference = run_strategy(cluster, MODEL, training(batch), megatron_choice(nodes, batch))
    best = result.rows[0]
    ref = reference.metrics
    print(
        f"  best {best['name']}: {best['iteration_time_s']:.3f} s, MFU {100 * best['mfu']:.1f}%; "
        f"Megatron's choice: {ref['iteration_time_s']:.3f} s, MFU {100 * ref['mfu']:.1f}%"
    )
    faster = best["iteration_time_s"] <= ref["iteration_time_s"]
    within = 0.85 * 0.44 <= best["mfu"] <= 1.15 * 0.49
    print(f"  no slower than Megatron's choice: {faster}; MFU within 15% of 44-49%: {within}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="prune,plan", help="prune,cost,plan (prune,plan)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=8, help="nodes of the plan part (8)")
    parser.add_argument("--batch", type=int, default=32, help="batch of the plan part (32)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    survivors = part_prune(128, 1536) if "prune" in parts else None
    if "cost" in parts:
        part_cost(128, 1536, survivors, args.workers)
    if "plan" in parts:
        part_plan(args.nodes, args.batch, args.workers)


if __name__ == "__main__":
    main()

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

* ``plan``: plans on ``--nodes`` nodes with a batch of ``--batch`` (default
  128 nodes, 1536 sequences) over Megatron's family of layouts, once with
  the paper's recipe (full recomputation) and once with selective
  recomputation and sequence parallelism as well, timed, and their best
  layouts against Megatron's choice on that cluster;
* ``prune``: step 1 over the whole default space at full scale (no
  simulation), with its wall time; then, given the best step (the one
  ``plan`` found, or ``--best``, e.g. 17.011 from the unrestricted search),
  what the search does before it simulates -- check every family and price
  its floor, expand the families whose floor is under the best step, work out
  their layouts' tight bounds -- each timed, and how many layouts have a
  tight bound under the best step (those branch and bound must simulate);
* ``cost``: one full-scale simulation of Megatron's choice, timed;
* ``full``: the unrestricted search (the whole default space) on ``--nodes``
  nodes, timed, and its best layout against Megatron's choice;
* ``facts``: the schedule facts the memory estimate and the bound read, for
  the schedules of the whole default space at full scale, in closed form
  (:mod:`simulator.planner.schedule_facts`) against building every schedule
  and walking it, in this process.

Run: ``python benchmarks/bench_planner.py [--parts prune,cost,plan,facts,full] [--workers 2]
[--best SECONDS]``
(not part of the test suite; ``cost`` alone takes minutes at full scale).
"""

from __future__ import annotations

import argparse
import time

from simulator import Strategy, TrainingConfig, preset, run_strategy
from simulator.errors import SimulatorError
from simulator.hardware import ClusterSpec
from simulator.parallel.pipeline import get_schedule
from simulator.planner import SearchSpace, model_preset, plan
from simulator.planner.bound import StepBound
from simulator.planner.branch import BranchAndBound, families
from simulator.planner.prune import Pruner
from simulator.planner.schedule_facts import CLOSED_FORMS, facts_of_schedule
from simulator.planner.space import layout_groups, layout_name

MODEL = model_preset("gpt3-175b").config
#: Megatron-LM's published family for GPT-3 175B (Narayanan et al. 2021, sec. 5)
MEGATRON_FAMILY = {
    "max_tp": 8,
    "schedules": ("1f1b", "interleaved"),
    "max_chunks": 2,
    "orders": ("tp-cp-dp-pp",),
    "zero": (0, 1),
    "microbatch_sizes": (1,),
}
#: the recipe of Narayanan et al. 2021, and the one of Korthikanti et al. 2022
RECIPES = {
    "full recomputation": {"recompute": ("full",), "sequence_parallel": (False,)},
    "selective + sequence parallel": {
        "recompute": ("selective", "full"),
        "sequence_parallel": (True,),
    },
}


#: ``facts`` times one in this many of the schedules.
SAMPLE = 10


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


def part_prune(nodes: int, batch: int, best_step: float | None) -> None:
    cluster = preset("dgx-a100", nodes)
    started = time.perf_counter()
    pruner = Pruner(cluster, MODEL, training(batch))
    space = layout_groups(cluster.num_devices, batch, SearchSpace())
    survivors = [s for s, _ in pruner.survivors_of_groups(space)]
    seconds = time.perf_counter() - started
    print(f"prune: GPT-3 175B on {nodes} x 8 A100, batch {batch}, the whole default space")
    print(f"  {pruner.checked} distinct layouts, {len(survivors)} survive, in {seconds:.1f} s")
    for rule, n in sorted(pruner.pruned.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>8}  {rule}")
    if best_step is not None:
        bounded(cluster, batch, best_step)


def bounded(cluster: ClusterSpec, batch: int, best_step: float) -> None:
    """What the search does before it simulates, given the best step: check every
    family and price its floor, expand the families whose floor is under the best step,
    and work out their layouts' tight bounds; each phase timed."""
    started = time.perf_counter()
    pruner = Pruner(cluster, MODEL, training(batch))
    fams = families(layout_groups(cluster.num_devices, batch, SearchSpace()))
    search = BranchAndBound(pruner, StepBound(pruner), fams, layout_name)
    floors = time.perf_counter() - started
    started = time.perf_counter()
    candidates = search.expand(below=best_step)
    expanded = time.perf_counter() - started
    started = time.perf_counter()
    under = sum(search.bound_of(c) < best_step for c in candidates)
    tight = time.perf_counter() - started
    print(f"  the search's bounds, given the best step {best_step:.3f} s:")
    print(f"    {len(fams)} families checked and floored in {floors:.1f} s")
    print(f"    {len(candidates)} layouts in the families under it, expanded in {expanded:.1f} s")
    print(f"    {under} of them with a tight bound under it, bounds in {tight:.1f} s")


def part_cost(nodes: int, batch: int) -> None:
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


def part_plan(nodes: int, batch: int, workers: int) -> float:
    cluster = preset("dgx-a100", nodes)
    reference = run_strategy(cluster, MODEL, training(batch), megatron_choice(nodes, batch))
    ref = reference.metrics
    fastest = float("inf")
    for recipe, space in RECIPES.items():
        started = time.perf_counter()
        result = plan(
            cluster,
            MODEL,
            training(batch),
            base=Strategy(partition="uniform"),
            workers=workers,
            **MEGATRON_FAMILY,
            **space,
        )
        seconds = time.perf_counter() - started
        print(f"plan: GPT-3 175B on {nodes} x 8 A100, batch {batch}, Megatron's family, {recipe}")
        print(result.summary())
        print(result.table())
        print(f"  {seconds:.1f} s on {workers} processes")
        best = result.rows[0]
        fastest = min(fastest, best["iteration_time_s"])
        print(
            f"  best {best['name']}: {best['iteration_time_s']:.3f} s, "
            f"MFU {100 * best['mfu']:.1f}%; Megatron's choice: {ref['iteration_time_s']:.3f} s, "
            f"MFU {100 * ref['mfu']:.1f}%"
        )
        faster = best["iteration_time_s"] <= ref["iteration_time_s"]
        within = 0.85 * 0.44 <= best["mfu"] <= 1.15 * 0.49
        print(f"  no slower than Megatron's choice: {faster}; MFU within 15% of 44-49%: {within}")
    return fastest


def part_full(nodes: int, batch: int, workers: int) -> None:
    """The unrestricted search (the default space), timed, and its best layout against
    Megatron's choice simulated the same way."""
    cluster = preset("dgx-a100", nodes)
    started = time.perf_counter()
    result = plan(cluster, MODEL, training(batch), workers=workers)
    seconds = time.perf_counter() - started
    ref = run_strategy(cluster, MODEL, training(batch), megatron_choice(nodes, batch)).metrics
    best = result.rows[0]
    print(f"full: GPT-3 175B on {nodes} x 8 A100, batch {batch}, the whole default space")
    print(result.summary())
    print(result.table())
    print(f"  {seconds:.1f} s on {workers} processes, {result.scheduled} layouts simulated")
    print(
        f"  best {best['name']}: {best['iteration_time_s']:.3f} s; Megatron's choice: "
        f"{ref['iteration_time_s']:.3f} s; no slower: "
        f"{best['iteration_time_s'] <= ref['iteration_time_s']}"
    )


def part_facts(nodes: int, batch: int) -> None:
    cluster = preset("dgx-a100", nodes)
    keys = sorted({(s.schedule, s.pp, s.microbatches, s.chunks)
                   for s, _ in layout_groups(cluster.num_devices, batch, SearchSpace())
                   if s.pp > 1 and s.schedule in CLOSED_FORMS})  # fmt: skip
    blocks = len(MODEL.build(0, numerics=False).blocks)  # longer pipelines fail first
    valid = []
    for name, p, m, v in keys:
        if p * v > blocks:
            continue
        try:
            get_schedule(name).check(p, m, v)
        except SimulatorError:
            continue
        valid.append((name, p, m, v))
    valid = valid[::SAMPLE]  # building them all takes many minutes
    started = time.perf_counter()
    closed = [CLOSED_FORMS[name](p, m, v) for name, p, m, v in valid]
    fast = time.perf_counter() - started
    started = time.perf_counter()
    built = [facts_of_schedule(get_schedule(name)(p, m, v)) for name, p, m, v in valid]
    slow = time.perf_counter() - started
    print(f"facts: {len(valid)} schedules, one in {SAMPLE} of the default space's, "
          f"{nodes} x 8 A100, batch {batch}")  # fmt: skip
    print(f"  built and walked {slow:.1f} s, closed form {fast:.2f} s: {slow / fast:.0f}x; "
          f"the same facts: {closed == built}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default="plan,prune", help="plan,prune,cost,facts,full (plan,prune)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=128, help="nodes of the plan part (128)")
    parser.add_argument("--batch", type=int, default=1536, help="batch of the plan part (1536)")
    parser.add_argument(
        "--best", type=float, help="the best step of the full search, for prune without plan"
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    best = part_plan(args.nodes, args.batch, args.workers) if "plan" in parts else args.best
    if "prune" in parts:
        part_prune(128, 1536, best if (args.nodes, args.batch) == (128, 1536) else None)
    if "cost" in parts:
        part_cost(128, 1536)
    if "facts" in parts:
        part_facts(128, 1536)
    if "full" in parts:
        part_full(args.nodes, args.batch, args.workers)


if __name__ == "__main__":
    main()

"""How fast the simulator is, measured against baselines run in the same process.

Run: ``python benchmarks/bench_simulator.py [--quick]`` (not part of the test
suite; wall-clock times depend on the machine and on what else runs on it,
so every figure is printed next to a baseline measured alongside it).

1. **Pipeline ops per second.** The abstract 1F1B pipeline (F = 1 ms,
   B = 2 ms, no communication), the whole ``run_scenario`` call -- plan, lowering,
   runtime set-up, simulate, metrics, no files -- at 64 stages x 512
   micro-batches, as a fraction of the rate at which bare SimPy processes
   ``env.timeout`` events in the same process, beside the same 1F1B written
   directly in SimPy with nothing recorded (:func:`plain_simpy_pipeline`); the
   cost per op at 64 x 512 against 8 x 32 (the core must scale linearly); and
   one 8 x 32 run against PP-Schedule-Visualization
   (github.com/Victarry/PP-Schedule-Visualization) building and executing the
   same 1F1B schedule, when a checkout of it is found (``--peer DIR``, default
   ``../PP-Schedule-Visualization`` beside this repository). Both sides in CPU
   time of this process (``time.process_time``, which a busy machine disturbs
   least), each figure the median of ``--repeat`` rounds, the two sides of a
   ratio taken in the same round.
2. **Narayanan et al. 2021, Table 1**, each row one ``python -m simulator run``
   of a scenario in ``scenarios/megatron_table1/`` at full size, in a child
   process: its wall time and peak resident memory.
3. **GPT-3 175B on 1024 A100s** (dp16 x tp8 x pp8, global batch 1536).
4. **``scenarios/gpt3_175b_layouts.toml``**, the whole scenario.
5. **A numerics step against plain numpy**: one training step of an MLP
   through the simulator (math, tape, replay) against the same math written
   directly in numpy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import simpy

# first: before numpy loads, the simulator limits its BLAS to one thread, for both sides
from simulator import (
    GPTConfig,
    MLPConfig,
    Scenario,
    Strategy,
    TrainingConfig,
    parse_scenario,
    preset,
    run_scenario,
    run_strategy,
)
from simulator.runtime.core import collector_paused

ROOT = Path(__file__).resolve().parent.parent


def bare_simpy_rate(events: int = 400_000) -> float:
    """Events per second of one SimPy process that only yields timeouts."""
    env = simpy.Environment()

    def process():
        for _ in range(events):
            yield env.timeout(1)

    env.process(process())
    start = time.process_time()
    env.run()
    return events / (time.process_time() - start)


def plain_simpy_pipeline(p: int, m: int) -> float:
    """CPU seconds of 1F1B written directly in SimPy: one process per stage, an
    ``env.timeout`` per op (F = 1, B = 2) and an event per message, nothing
    recorded -- what a SimPy design pays before any bookkeeping (the ceiling of
    a simulator that runs each stage as a SimPy process). The cyclic garbage
    collector is paused, as the simulator's runtime pauses it."""
    with collector_paused():
        start = time.process_time()
        env = simpy.Environment()
        # the event of each message: [stage that receives it][micro-batch], per direction
        activations = [[env.event() for _ in range(m)] for _ in range(p)]
        gradients = [[env.event() for _ in range(m)] for _ in range(p)]

        def stage(s: int):
            warmup = min(p - s - 1, m)
            order = [(True, i) for i in range(warmup)]
            for i in range(m):  # steady state and cool-down: one forward, one backward
                order += [(True, warmup + i)] if warmup + i < m else []
                order.append((False, i))
            for forward, mb in order:
                inbox = activations if forward else gradients
                if (s > 0 if forward else s < p - 1) and not inbox[s][mb].processed:
                    yield inbox[s][mb]
                yield env.timeout(1.0 if forward else 2.0)
                if forward and s < p - 1:
                    activations[s + 1][mb].succeed()
                elif not forward and s > 0:
                    gradients[s - 1][mb].succeed()

        for s in range(p):
            env.process(stage(s))
        env.run()
        seconds = time.process_time() - start
    assert env.now == 3.0 * (m + p - 1), "not 1F1B's step, (m + p - 1)(F + B)"
    return seconds


def pipeline_scenario(p: int, m: int) -> Scenario:
    """The abstract 1F1B pipeline of ``p`` stages and ``m`` micro-batches, as a scenario."""
    return parse_scenario(
        {
            "name": "bench",
            "cluster": {"preset": "toy", "nodes": max(1, p // 4)},
            "model": {"kind": "abstract", "stages": p, "forward_ms": 1.0, "backward_ms": 2.0,
                      "weight_ms": 0.0},
            "training": {"numerics": False, "global_batch": m, "steps": 1},
            "strategy": [{"name": "1f1b", "pp": p, "microbatches": m, "schedule": "1f1b"}],
        }
    )  # fmt: skip


def pipeline_seconds(scenario: Scenario) -> float:
    """CPU seconds of one whole ``run_scenario`` call (no files)."""
    start = time.process_time()
    run_scenario(scenario)
    return time.process_time() - start


def peer_runner(path: Path) -> Callable[[int, int], float] | None:
    """``(p, m) -> CPU seconds`` of PP-Schedule-Visualization building, executing and
    measuring (its bubble rate) a 1F1B schedule of ``p`` stages and ``m`` micro-batches
    with the same op times, or None when no checkout is at ``path``."""
    if not (path / "src" / "execution_model.py").is_file():
        return None
    sys.path.insert(0, str(path))
    from src.execution_model import ScheduleConfig  # type: ignore[import-not-found]
    from src.strategies import generate_1f1b_schedule  # type: ignore[import-not-found]

    def seconds(p: int, m: int) -> float:
        start = time.process_time()
        config = ScheduleConfig(p, p, m, op_times={"forward": 1.0, "backward": 2.0})
        schedule = generate_1f1b_schedule(config)
        schedule.execute()
        schedule.get_bubble_rate()
        return time.process_time() - start

    return seconds


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def run_file(path: Path) -> tuple[float, float, str]:
    """Wall seconds, the child's peak RSS (GB) and the table row of ``run PATH --no-files``."""
    child = (
        "import resource, sys\n"
        "from simulator.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('peak-rss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", child, "run", str(path), "--no-files", "--quiet",
         "--out", str(ROOT / "out" / "bench" / path.stem)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    kib = int(done.stderr.split("peak-rss")[1].split()[0])
    lines = done.stdout.splitlines()
    row = lines[lines.index(next(x for x in lines if x.startswith("--"))) + 1]
    return wall, kib * 1024 / 1e9, row


def numpy_step(x: np.ndarray, y: np.ndarray, ws: list, bs: list, lr: float) -> None:
    """One SGD step of the MLP in plain numpy (the simulator's model, written out)."""
    acts, h = [], x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        acts.append(h)
        h = h @ w + b
        if i < len(ws) - 1:
            acts.append(h)
            h = np.maximum(h, 0)
    grad = 2.0 * (h - y) / h.size
    for i in reversed(range(len(ws))):
        if i < len(ws) - 1:
            grad = grad * (acts.pop() > 0)
        inp = acts.pop()
        dw, db = inp.T @ grad, grad.sum(axis=0)
        grad = grad @ ws[i].T
        ws[i] -= lr * dw
        bs[i] -= lr * db


def numerics_ratio(layers: int = 8, width: int = 256, batch: int = 256) -> tuple[float, float]:
    """Seconds per step through the simulator and in plain numpy (steps beyond the first)."""
    model = MLPConfig(layers, width)

    def simulated(steps: int) -> float:
        start = time.perf_counter()
        run_strategy(
            preset("toy"), model, TrainingConfig(global_batch=batch, steps=steps), Strategy()
        )
        return time.perf_counter() - start

    sim = min((simulated(6) - simulated(1)) / 5 for _ in range(3))
    rng = np.random.default_rng(0)
    teacher = rng.normal(0.0, 1.0 / np.sqrt(width), (width, width))
    ws = [rng.normal(size=(width, width)) / np.sqrt(width) for _ in range(layers)]
    bs = [np.zeros(width) for _ in range(layers)]
    plain = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(5):
            # the step's batch, drawn as the simulator's regression task draws it
            x = rng.normal(0.0, 1.0, (batch, width))
            numpy_step(x, np.tanh(x @ teacher), ws, bs, 1e-3)
        plain.append((time.perf_counter() - start) / 5)
    return sim, min(plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 1T row")
    parser.add_argument(
        "--peer",
        type=Path,
        default=ROOT.parent / "PP-Schedule-Visualization",
        help="a checkout of PP-Schedule-Visualization to time beside the 8 x 32 pipeline",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds per figure (median)")
    parser.add_argument("--only-core", action="store_true", help="section 1 only")
    args = parser.parse_args()

    print("1. abstract 1F1B pipeline, whole run_scenario, against baselines in this process")
    big, small = pipeline_scenario(64, 512), pipeline_scenario(8, 32)
    peer = peer_runner(args.peer)
    for scenario in (big, small):  # the first run of a size builds what later runs reuse
        run_scenario(scenario)
    rounds = []
    for _ in range(args.repeat):
        bare = bare_simpy_rate()
        big_rate = 2 * 64 * 512 / pipeline_seconds(big)
        plain_rate = 2 * 64 * 512 / plain_simpy_pipeline(64, 512)
        small_s = statistics.median(pipeline_seconds(small) for _ in range(21))
        peer_s = statistics.median(peer(8, 32) for _ in range(21)) if peer else math.nan
        rounds.append((bare, big_rate, small_s, peer_s, plain_rate))
    bare, big_rate, small_s, peer_s, plain_rate = (
        statistics.median(r[i] for r in rounds) for i in range(5)
    )
    share = statistics.median(r[1] / r[0] for r in rounds)
    plain_share = statistics.median(r[4] / r[0] for r in rounds)
    print(f"   bare SimPy timeouts:     {bare:>10,.0f} events/s")
    print(f"   64 x 512 pipeline:       {big_rate:>10,.0f} ops/s = {share:.1%} of bare SimPy")
    print(
        f"   the same in plain SimPy: {plain_rate:>10,.0f} ops/s = {plain_share:.1%} of bare "
        "SimPy (a process per stage, an event per message, nothing recorded)"
    )
    print(f"   8 x 32 pipeline:         {small_s * 1e3:>10.2f} ms per run")
    if peer is None:
        print(f"   PP-Schedule-Visualization: no checkout at {args.peer} (--peer DIR)")
    else:
        ratio = statistics.median(r[2] / r[3] for r in rounds)
        print(f"   the peer's 8 x 32:       {peer_s * 1e3:>10.2f} ms per run")
        print(f"   8 x 32, ours / the peer's:  {ratio:.2f}")
    print(f"   cost per op, 64x512 / 8x32: {(2 * 8 * 32 / small_s) / big_rate:.2f}")
    if args.only_core:
        return

    print("2. Narayanan et al. 2021 Table 1, one `run` each (child process)")
    rows = ["18b", "39b", "145b"] + ([] if args.quick else ["1t"])
    for row in rows:
        wall, rss, line = run_file(ROOT / "scenarios" / "megatron_table1" / f"{row}.toml")
        print(f"   {row:>5}: {wall:6.1f} s, peak RSS {rss:.2f} GB | {line.strip()}")

    print("3. GPT-3 175B on 1024 A100s, dp16 x tp8 x pp8, global batch 1536")
    gpt3 = GPTConfig(layers=96, hidden=12288, heads=96, seq_len=2048, vocab=51200,
                     dropout=0.1, dtype="bf16")  # fmt: skip
    strategy = Strategy(
        "gpt3", dp=16, tp=8, pp=8, microbatches=96, partition="uniform", recompute="full"
    )
    training = TrainingConfig(numerics=False, global_batch=1536, steps=1, optimizer="adam")
    start = time.perf_counter()
    result = run_strategy(preset("dgx-a100", nodes=128), gpt3, training, strategy)
    print(
        f"   {time.perf_counter() - start:.2f} s (step {result.metrics['iteration_time_s']:.2f} "
        f"s simulated, MFU {result.metrics['mfu']:.1%}, "
        f"{result.metrics['folded_replicas']} replicas folded)"
    )

    print("4. scenarios/gpt3_175b_layouts.toml")
    wall, rss, _ = run_file(ROOT / "scenarios" / "gpt3_175b_layouts.toml")
    print(f"   {wall:.1f} s, peak RSS {rss:.2f} GB")

    print("5. one numerics step of an 8 x 256 MLP, batch 256, float64")
    sim, plain = numerics_ratio()
    print(f"   simulator {sim * 1e3:.1f} ms, plain numpy {plain * 1e3:.1f} ms: {sim / plain:.2f}x")


if __name__ == "__main__":
    main()

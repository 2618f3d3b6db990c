"""How fast the simulator is the way people run it: start-up, the pipeline core and
every scenario, with its output files and without.

Run: ``python benchmarks/bench_usage.py [--scenarios NAME ...] [--repeat N]`` (not
part of the test suite). Every figure is printed beside a baseline measured in
this process, so that a busy machine shifts both:

1. **Start-up**: ``python -c "import simulator"`` against ``python -c "import
   numpy, simpy"`` (the least any run imports), each the best of ``--repeat``
   fresh interpreters, and ``python -m simulator --help``.
2. **The pipeline core**: the abstract 1F1B pipeline (F = 1 ms, B = 2 ms, no
   communication) at 8 stages x 32 micro-batches and 64 x 512, its plan built
   first and then simulated (``Runtime(plan).run()``: what a planner pays per
   layout beyond lowering), as a rate of ops against the rate at which bare
   SimPy processes ``env.timeout`` events in the same process, the median of
   rounds that measure both (at least three); in CPU time of this process
   (``time.process_time``), which a busy machine disturbs least.
3. **Scenarios as a user types them**: ``python -m simulator run FILE`` with the
   default files and with ``--no-files``, in a child process: wall time, CPU
   time (user + system, the child's and its own children's: files are written
   in forked children) and peak resident memory. On a shared machine CPU time
   is the steadier figure; wall time is what the user waits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import simpy

ROOT = Path(__file__).resolve().parent.parent
TOYS = ["quickstart", "data_parallel", "pipeline_schedules", "tiny_gpt", "tensor_parallel",
        "hybrid_tiny_gpt", "heterogeneous", "faults"]  # fmt: skip
LARGE = ["gpt3_175b_layouts", "megatron_table1/1t"]


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


def core_seconds(p: int, m: int) -> float:
    """Seconds to simulate an abstract 1F1B pipeline of ``p`` stages and ``m``
    micro-batches from its built plan."""

    from simulator import Strategy, TrainingConfig, build_plan, preset
    from simulator.nn.abstract import AbstractConfig
    from simulator.runtime import Runtime

    model = AbstractConfig(stages=p, forward_ms=1.0, backward_ms=2.0, weight_ms=0.0)
    training = TrainingConfig(numerics=False, global_batch=m, steps=1)
    strategy = Strategy("1f1b", pp=p, microbatches=m, schedule="1f1b")
    plan = build_plan(preset("toy", nodes=max(1, p // 4)), model, training, strategy)
    start = time.process_time()
    Runtime(plan).run()  # (the garbage collector paused while it runs)
    return time.process_time() - start


def child_seconds(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, with the child's own children) and
    peak RSS (GB) of one child process running ``argv``."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's usage (with its children's)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(argv)} exited with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e9


def start_up(repeat: int) -> None:
    py = sys.executable

    def best(*argv: str) -> tuple[float, float]:
        runs = [child_seconds([py, *argv]) for _ in range(repeat)]
        return min(r[0] for r in runs), min(r[1] for r in runs)

    for what, argv in [("import numpy, simpy", ("-c", "import numpy, simpy")),
                       ("import simulator", ("-c", "import simulator")),
                       ("python -m simulator --help", ("-m", "simulator", "--help"))]:  # fmt: skip
        wall, cpu = best(*argv)
        print(f"   {what:<28} wall {wall:.3f} s, CPU {cpu:.3f} s")


def core(repeat: int) -> None:
    """The core's rates: the 64 x 512 share of bare SimPy is the median over rounds
    (at least three) of the two measured one after the other, so that a busy moment
    of the machine shifts both sides of a ratio rather than one."""
    rounds = [(bare_simpy_rate(), core_seconds(64, 512)) for _ in range(max(repeat, 3))]
    bare, big = (statistics.median(side) for side in zip(*rounds, strict=True))
    share = statistics.median(2 * 64 * 512 / seconds / rate for rate, seconds in rounds)
    small = min(core_seconds(8, 32) for _ in range(max(repeat, 5)))
    print(f"   bare SimPy: {bare:,.0f} events/s")
    print(f"   8 x 32 1F1B, core: {small * 1e3:.2f} ms ({2 * 8 * 32 / small:,.0f} ops/s)")
    print(
        f"   64 x 512 1F1B, core: {big:.3f} s, {2 * 64 * 512 / big:,.0f} ops/s = "
        f"{share:.1%} of bare SimPy"
    )


def scenarios(names: list[str]) -> None:
    py = sys.executable
    print(f"   {'scenario':<22} {'with files: wall':>17} {'CPU':>7} {'RSS':>7}"
          f"   {'--no-files: wall':>17} {'CPU':>7} {'RSS':>7}")  # fmt: skip
    for name in names:
        path = ROOT / "scenarios" / f"{name}.toml"
        cells = []
        for extra in ([], ["--no-files"]):
            with tempfile.TemporaryDirectory() as out:
                argv = [py, "-m", "simulator", "run", str(path), "--quiet", "--out", out, *extra]
                wall, cpu, rss = child_seconds(argv)
            cells.append(f"{wall:>15.1f} s {cpu:>5.1f} s {rss:>5.2f} GB")
        print(f"   {name:<22} {cells[0]}   {cells[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="*", default=TOYS + LARGE, help="names to run")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many")
    args = parser.parse_args()
    print("1. start-up, best of fresh interpreters")
    start_up(args.repeat)
    print("2. the pipeline core, against bare SimPy in this process")
    core(args.repeat)
    if args.scenarios:
        print("3. python -m simulator run FILE (child processes)")
        scenarios(args.scenarios)


if __name__ == "__main__":
    main()

"""The simulator's collectives against published nccl-tests bus bandwidths.

For every system with a public measurement -- one to four nodes of A100 and
H100, with 8 or 4 network adapters (NICs) per node -- it runs ``all_reduce``
of 1 GB the way ``python -m simulator collective`` does (``auto``: the
algorithm NCCL's tuner would choose, :mod:`simulator.comm.tuner`) and prints
the bus bandwidth nccl-tests reports (``busbw = algbw x 2 (n-1)/n``,
NVIDIA/nccl-tests doc/PERFORMANCE.md) next to the measured one, the algorithm
the measurement ran, and its source. Where NCCL's default ran an algorithm the
simulator does not model (NVLink SHARP on H100), the measurement with
``NCCL_ALGO=RING`` is the one compared, and the row says so.

Run: ``python benchmarks/nccl_tests.py`` (a few seconds; not part of the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator import preset
from simulator.comm import closed_forms
from simulator.experiment.collective import run_collective
from simulator.hardware import GB


@dataclass(frozen=True)
class Measured:
    """A published all-reduce bus bandwidth of ``nodes`` nodes of ``preset`` with
    ``nics`` NICs each (None: one per GPU)."""

    preset: str
    nodes: int
    nics: int | None
    busbw_gbs: float
    ran: str
    source: str


MEASURED = [
    Measured("a100-node", 1, None, 232.5, "ring",
             "NVIDIA/nccl-tests #175: 8 x A100 SXM4, all_reduce_perf -g 8 up to 4 GB"),
    Measured("dgx-a100", 2, None, 192.0, "ring",
             "NVIDIA/nccl #812 (NCCL team): DGX A100, 8 x HDR 200 Gb/s, 192 GB/s"),
    Measured("dgx-a100", 4, None, 192.0, "ring", "as above"),
    Measured("dgx-a100", 2, 4, 91.0, "default",
             "8 x A100, 4 x HDR: 86 GB/s on 2 nodes (NVIDIA/nccl-tests #175, NVIDIA/nccl "
             "#1048) to 96 on 3 (NVIDIA/nccl-tests #119); their mean"),
    Measured("dgx-a100", 3, 4, 91.0, "default", "as above"),
    Measured("h100-node", 1, None, 370.0, "NCCL_ALGO=RING",
             "NVIDIA/nccl-tests #212 (NCCL team): 370 GB/s with the ring; the default, NVLink "
             "SHARP, reaches 480 (not modelled)"),
    Measured("dgx-h100", 4, None, 365.8, "default",
             "NVIDIA/nccl-tests #309: 4 x 8 H100, a 400 Gb/s NIC per GPU"),
    Measured("dgx-h100", 4, 4, 190.0, "NCCL_ALGO=RING",
             "NVIDIA/nccl #1368: 8 x H100, 4 x 400 Gb/s RoCE, 5 nodes: ring 190, tree 150"),
]  # fmt: skip


def simulated(m: Measured, nbytes: int = 10**9) -> tuple[float, str]:
    """The simulated bus bandwidth (GB/s) of ``all_reduce`` of ``nbytes`` and what ran."""
    cluster = preset(m.preset, m.nodes).with_nics(m.nics)
    devices = cluster.num_devices
    timed = run_collective("all_reduce", "auto", cluster, devices, nbytes)
    ran = timed.algorithm + (f" x{timed.channels}" if timed.channels > 1 else "")
    return closed_forms.busbw("all_reduce", devices, nbytes, timed.seconds) / GB, ran


def main() -> None:
    print("all-reduce of 1 GB: the simulator's `auto` against published nccl-tests bus bandwidth")
    print(f"{'system':<34} {'ran':>9} {'busbw':>7} {'measured':>9} {'error':>7}  source")
    worst = 0.0
    for m in MEASURED:
        busbw, ran = simulated(m)
        error = 100 * (busbw - m.busbw_gbs) / m.busbw_gbs
        worst = max(worst, abs(error))
        nics = f"{m.nics} NICs" if m.nics else "8 NICs"
        system = f"{m.nodes} x {m.preset}, {nics}"
        print(f"{system:<34} {ran:>9} {busbw:>7.1f} {m.busbw_gbs:>9.1f} {error:>+6.1f}%  "
              f"({m.ran}) {m.source}")  # fmt: skip
    print(f"largest error: {worst:.1f}%")


if __name__ == "__main__":
    main()

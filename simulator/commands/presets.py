"""``python -m simulator presets``: the hardware presets and their datasheet figures."""

from __future__ import annotations

import argparse

from ..hardware import GB, PRESETS, TFLOPS, US
from ..hardware.units import format_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the hardware presets", description=__doc__)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    for name, c in PRESETS.items():
        d = c.device
        peaks = ", ".join(f"{k} {v / TFLOPS:g}" for k, v in d.peak_flops.items())
        if "fp8" not in d.peak_flops:
            peaks += ", fp8 none (no FP8 tensor cores)"
        eff = ", ".join(f"{k} {v:g}" for k, v in d.efficiency.items())
        print(f"{name}: {c.devices_per_node} x {d.name} per node")
        print(
            f"  peak TFLOP/s: {peaks}; memory {format_bytes(d.memory_bytes)}, "
            f"{d.memory_bandwidth / GB:g} GB/s; launch {d.launch_overhead / US:g} us"
        )
        print(f"  achievable fraction of peak: {eff}")
        for label, link in (("intra-node", c.intra_node), ("inter-node", c.inter_node)):
            print(
                f"  {label}: {link.bandwidth / GB:g} GB/s per direction x {link.efficiency:g}"
                f" achievable, {link.latency / US:g} us latency"
            )
    return 0

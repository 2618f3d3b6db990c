"""How a results key or a scenario key reads on a plot's axis.

A sweep plots any numeric key of the results JSON against any dotted key of
the scenario file. Raw keys (``iteration_time_s``,
``cluster.inter_node.bandwidth_gbs``) are names for programs; an axis says
what the number is, in a unit that reads well: a time in s, ms or us, memory
in binary units, a fraction in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..hardware.units import bytes_unit, time_unit

#: results keys with a name of their own; the others are read from their suffix
RESULT_NAMES = {
    "iteration_time_s": "step time",
    "mfu": "MFU",
    "peak_memory_bytes": "peak memory per device",
    "tokens_per_s": "tokens per second",
    "compute_fraction": "compute share of the step",
    "exposed_comm_fraction": "exposed communication share of the step",
    "bubble_fraction": "bubble share of the step",
    "bubble_fraction_analytic": "closed-form bubble share",
}
#: scenario keys with a name of their own
SCENARIO_NAMES = {
    "cluster.inter_node.bandwidth_gbs": "bandwidth between nodes (GB/s per GPU)",
    "cluster.intra_node.bandwidth_gbs": "bandwidth inside a node (GB/s per GPU)",
    "cluster.nodes": "nodes",
    "training.global_batch": "global batch (samples)",
    "model.layers": "layers",
    "model.seq_len": "sequence length (tokens)",
}


def _words(key: str) -> str:
    return key.rsplit(".", 1)[-1].replace("_", " ")


def result_axis(key: str, values: Sequence[float]) -> tuple[str, float]:
    """The axis label of results key ``key`` and the number to divide its values by:
    ``("step time (ms)", 1e-3)``."""
    name = RESULT_NAMES.get(key)
    largest = max((abs(v) for v in values), default=0.0)
    if key == "mfu" or key.endswith("_fraction"):
        return f"{name or _words(key)} (%)", 0.01
    if key.endswith("_bytes"):
        scale, unit = bytes_unit(largest)
        return f"{name or _words(key.removesuffix('_bytes'))} ({unit})", scale
    if key.endswith("_per_s"):
        return name or _words(key).replace(" per s", " per second"), 1.0
    if key.endswith("_s"):
        scale, unit = time_unit(largest)
        return f"{name or _words(key.removesuffix('_s'))} ({unit})", scale
    return name or _words(key), 1.0


def scenario_axis(key: str) -> str:
    """The axis label of a dotted scenario key: ``"cluster.nodes"`` -> ``"nodes"``;
    a ``strategy.KEY`` or an unnamed key reads as its last part, in words."""
    if key in SCENARIO_NAMES:
        return SCENARIO_NAMES[key]
    words = _words(key)
    for suffix, unit in ((" gbs", " (GB/s)"), (" mb", " (MB)"), (" ms", " (ms)")):
        if words.endswith(suffix):
            return words.removesuffix(suffix) + unit
    return words

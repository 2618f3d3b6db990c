"""The ``[cluster]`` table of a scenario file: a preset, or nodes of several kinds, and overrides.

A cluster is either one preset repeated (``preset``, ``nodes``) or a list of
``[[cluster.node]]`` tables, each naming a ``preset`` and how many
consecutive nodes of it there are (``count``, default 1), in order::

    [[cluster.node]]
    preset = "dgx-a100"
    count = 2
    [[cluster.node]]
    preset = "dgx-h100"
    count = 2

Every node has the same number of devices (the presets' own, or
``[cluster] devices_per_node``) and of NICs (``nics_per_node``):
:mod:`simulator.hardware.cluster` says why. The overrides
``[cluster.device]``, ``[cluster.intra_node]`` and ``[cluster.inter_node]``
apply to every node: ``memory_gib = 40`` gives every device 40 GiB and
leaves each its own peak; a node list that wants different overrides per
node is better written with presets whose figures differ.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import ScenarioError
from ..hardware import DTYPE_BYTES, GB, PRESETS, TFLOPS, US, ClusterSpec, GiB, NodeSpec, preset
from ..hardware import cluster_of as nodes_of
from ..ranges import Range
from .schema import Key, Reader, show

NUMBER = (int, float)
#: Rates (FLOP/s, bytes/s): from a thousandth of a unit to a billion units, so no
#: time computed from them overflows; ``inf`` where "free" means something.
RATE = {"range": Range(lo=1e-6, hi=1e9)}
RATE_OR_INF = {"range": Range(lo=1e-6, hi=1e9, inf=True)}
#: Durations in microseconds: finite, >= 0, at most 1000 s.
DURATION = {"range": Range(lo=0, hi=1e9)}
#: Achievable fractions of a peak.
FRACTION = {"range": Range(lo=1e-6, hi=1)}
NODE_COUNT = Range(lo=1, hi=1e9, integer=True)

CLUSTER = {
    "preset": Key.of(str, "a hardware preset (see `python -m simulator presets`)"),
    "nodes": Key.of(int, "number of nodes", range=NODE_COUNT),
    "devices_per_node": Key.of(
        int, "devices in each node", range=Range(lo=1, hi=1e6, integer=True)
    ),
    "nics_per_node": Key.of(
        int,
        "NICs per node (default one per device); devices share them evenly",
        range=Range(lo=1, hi=1e6, integer=True),
    ),
    "node": Key.of(list, "nodes of several kinds, in order ([[cluster.node]] tables)"),
    "device": Key.of(dict, "overrides of the device's datasheet figures"),
    "intra_node": Key.of(dict, "overrides of the links inside a node"),
    "inter_node": Key.of(dict, "overrides of the links between nodes"),
}
NODE = {
    "preset": Key.of(str, "the preset these nodes are", choices=lambda: tuple(PRESETS)),
    "count": Key.of(int, "how many consecutive nodes of it (default 1)", range=NODE_COUNT),
}
DEVICE = {
    "peak_tflops": Key.of(NUMBER, "dense peak TFLOP/s for every dtype", **RATE),
    **{
        f"peak_tflops_{d}": Key.of(NUMBER, f"dense peak TFLOP/s in {d}", **RATE)
        for d in DTYPE_BYTES
    },
    "memory_gib": Key.of(NUMBER, "memory capacity, GiB", range=Range(lo=1e-9, hi=1e9, inf=True)),
    "memory_bandwidth_gbs": Key.of(NUMBER, "memory bandwidth, GB/s", **RATE_OR_INF),
    "launch_us": Key.of(NUMBER, "overhead added to every kernel, microseconds", **DURATION),
    "gemm_efficiency": Key.of(NUMBER, "achievable fraction of peak for GEMMs", **FRACTION),
    "elementwise_efficiency": Key.of(NUMBER, "achievable fraction for elementwise ops", **FRACTION),
    "normalization_efficiency": Key.of(
        NUMBER, "achievable fraction for softmax/layernorm", **FRACTION
    ),
    "attention_efficiency": Key.of(
        NUMBER, "achievable fraction of the BF16 peak for fused (flash) attention", **FRACTION
    ),
    "sms": Key.of(
        int,
        "streaming multiprocessors a GEMM's tiles run on in waves (0: no tiling)",
        range=Range(lo=0, hi=1e6, integer=True),
    ),
    "host_us": Key.of(NUMBER, "the host's time to launch a kernel, microseconds", **DURATION),
    "jitter": Key.of(
        NUMBER,
        "coefficient of variation of device speed; a step waits for the slowest (0: off)",
        range=Range(lo=0, hi=1),
    ),
    "overlap_slowdown": Key.of(
        NUMBER,
        "how much slower compute runs while its own collective runs alongside it (0: off)",
        range=Range(lo=0, hi=10),
    ),
}
LINK = {
    "bandwidth_gbs": Key.of(NUMBER, "bandwidth per direction, GB/s", **RATE_OR_INF),
    "latency_us": Key.of(NUMBER, "latency per message, microseconds", **DURATION),
    "efficiency": Key.of(NUMBER, "achievable fraction of the bandwidth", **FRACTION),
}


def read_cluster(r: Reader, data: Any) -> ClusterSpec:
    """The cluster a ``[cluster]`` table describes (see the module docstring)."""
    if isinstance(data, dict) and "node" in data and not isinstance(data["node"], list):
        raise r.fail(
            "[cluster] node must be a list of [[cluster.node]] tables (two brackets), "
            f"got {show(data['node'])}"
        )
    r.table(data, "[cluster]", CLUSTER)
    spec = _nodes(r, data) if "node" in data else _preset(r, data)
    dev = r.table(data.get("device", {}), "[cluster.device]", DEVICE)
    links = {
        name: r.table(data.get(name, {}), f"[cluster.{name}]", LINK)
        for name in ("intra_node", "inter_node")
    }
    return spec.with_every_node(lambda node: _override(node, dev, links))


def _preset(r: Reader, data: dict[str, Any]) -> ClusterSpec:
    """``preset`` (default ``toy``) repeated ``nodes`` times, in the shape asked for."""
    shape = {k: data[k] for k in ("devices_per_node", "nics_per_node") if k in data}
    try:
        return replace(preset(data.get("preset", "toy"), data.get("nodes")), **shape)
    except ScenarioError as err:
        raise r.fail(f"[cluster] {err}") from None


def _nodes(r: Reader, data: dict[str, Any]) -> ClusterSpec:
    """The ``[[cluster.node]]`` list: presets in order, with their counts."""
    tables = data["node"]
    if not tables:
        raise r.fail("[cluster] node is empty; add at least one [[cluster.node]] table")
    if "preset" in data:
        raise r.fail(
            "[cluster] preset and [[cluster.node]] both say what the nodes are; drop preset "
            "(each [[cluster.node]] names its own)"
        )
    runs = []
    for i, table in enumerate(tables):
        where = f"[[cluster.node]] #{i + 1}"
        values = r.table(table, where, NODE)
        if "preset" not in values:
            raise r.fail(f"{where} needs preset = one of {', '.join(map(repr, PRESETS))}")
        runs.append((values["preset"], values.get("count", 1)))
    total = sum(count for _, count in runs)
    problem = NODE_COUNT.problem(total)
    if problem:
        raise r.fail(f"the [[cluster.node]] tables count {total} nodes; the total {problem}")
    if "nodes" in data and data["nodes"] != total:
        raise r.fail(
            f"[cluster] nodes = {data['nodes']}, but the [[cluster.node]] tables count {total} "
            f"nodes; drop nodes or make them agree"
        )
    try:
        return nodes_of(runs, data.get("devices_per_node"), data.get("nics_per_node"))
    except ScenarioError as err:
        raise r.fail(f"[[cluster.node]] {err}") from None


def _override(node: NodeSpec, dev: dict[str, Any], links: dict[str, dict[str, Any]]) -> NodeSpec:
    """``node`` with the ``[cluster.device]`` and link overrides applied."""
    device = node.device
    peaks = dict(device.peak_flops)
    if "peak_tflops" in dev:
        peaks = dict.fromkeys(peaks, dev["peak_tflops"] * TFLOPS)
    for d in DTYPE_BYTES:
        if f"peak_tflops_{d}" in dev:
            peaks[d] = dev[f"peak_tflops_{d}"] * TFLOPS
    eff = dict(device.efficiency)
    for cls in eff:
        eff[cls] = dev.get(f"{cls}_efficiency", eff[cls])
    device = replace(
        device,
        peak_flops=peaks,
        memory_bytes=dev.get("memory_gib", device.memory_bytes / GiB) * GiB,
        memory_bandwidth=dev.get("memory_bandwidth_gbs", device.memory_bandwidth / GB) * GB,
        launch_overhead=dev.get("launch_us", device.launch_overhead / US) * US,
        efficiency=eff,
        sms=dev.get("sms", device.sms),
        host_overhead=dev.get("host_us", device.host_overhead / US) * US,
        jitter=dev.get("jitter", device.jitter),
        overlap_slowdown=dev.get("overlap_slowdown", device.overlap_slowdown),
    )
    new = {}
    for name, over in links.items():
        link = getattr(node, name)
        new[name] = replace(
            link,
            bandwidth=over.get("bandwidth_gbs", link.bandwidth / GB) * GB,
            latency=over.get("latency_us", link.latency / US) * US,
            efficiency=over.get("efficiency", link.efficiency),
        )
    return NodeSpec(device, **new)

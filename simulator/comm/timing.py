"""Timing one collective on its own, as nccl-tests does on real hardware.

:func:`time_collective` builds a fresh :class:`~simulator.engine.Engine` on a
cluster, runs the algorithm on shape-only arrays (no data is summed, only
sizes travel), lets the engine book every message on the links, and returns
the simulated time at which the last message arrives. The group is devices
``0 .. devices-1``, which fill the cluster's nodes in order.

Sizes follow nccl-tests: ``nbytes`` is the whole array for (all-)reduce,
broadcast and reduce-scatter, the gathered result for all-gather (each rank
contributes its ``split_bounds`` share), and one rank's buffer for all-to-all
and send/recv. The elements are ``float32`` (nccl-tests' default type) when
``nbytes`` is a multiple of 4, and single bytes (``uint8``) otherwise, so any
size is exact.

:func:`predicted_time` is the alpha-beta closed form for the same run when one
applies (see :mod:`simulator.comm.closed_forms`).
"""

from __future__ import annotations

from ..arrays import ITEMSIZE, ShapeArray, split_bounds
from ..engine import Engine
from ..errors import LayoutError, ScenarioError
from ..hardware import ClusterSpec, LinkSpec
from . import closed_forms, collective, lookup
from .recursive import require_power_of_two


def collective_inputs(op: str, p: int, nbytes: int) -> list[ShapeArray]:
    """Shape-only inputs of ``nbytes`` (see the module docstring), one per rank."""
    dtype = "float32" if nbytes % ITEMSIZE["float32"] == 0 else "uint8"
    count = nbytes // ITEMSIZE[dtype]
    if op in ("all_gather", "gather"):
        return [ShapeArray((hi - lo,), dtype) for lo, hi in split_bounds(count, p)]
    return [ShapeArray((count,), dtype) for _ in range(p)]


def simulate_collective(
    engine: Engine,
    op: str,
    algorithm: str,
    devices: tuple[int, ...],
    nbytes: int,
    root: int = 0,
) -> float:
    """Run ``op`` over ``devices`` of ``engine`` starting now; returns its end time.

    Every message lands in ``engine.trace`` (category ``op``, with its step,
    bytes and link).
    """
    nodes = [engine.cluster.node_of(d) for d in devices]
    xs = collective_inputs(op, len(devices), nbytes)
    _, plan = collective(op, xs, algorithm, root, nodes)
    return engine.collective(plan, devices, op, f"{op} ({algorithm})")


def _check(cluster: ClusterSpec, devices: int, nbytes: int) -> None:
    if devices < 1:
        raise LayoutError(f"a collective needs at least 1 device, got {devices}")
    if devices > cluster.num_devices:
        raise LayoutError(
            f"{devices} devices requested but cluster {cluster.name!r} has "
            f"{cluster.num_devices} ({cluster.nodes} nodes x {cluster.devices_per_node}); "
            f"use fewer devices or more nodes"
        )
    if nbytes < 0:
        raise ScenarioError(f"message size must be at least 0 bytes, got {nbytes}")


def time_collective(
    op: str, algorithm: str, cluster: ClusterSpec, devices: int, nbytes: int, root: int = 0
) -> float:
    """Simulated seconds of one ``op`` of ``nbytes`` over ``devices`` idle devices."""
    _check(cluster, devices, nbytes)
    return simulate_collective(
        Engine(cluster, "steps"), op, algorithm, tuple(range(devices)), nbytes, root
    )


def _alpha_beta(link: LinkSpec) -> tuple[float, float]:
    return link.latency, 1.0 / link.effective_bandwidth


def predicted_time(
    op: str, algorithm: str, cluster: ClusterSpec, devices: int, nbytes: int
) -> float | None:
    """The alpha-beta closed form for :func:`time_collective`, or ``None``.

    A flat formula applies when the whole group sits in one node (one link
    class); the two-level formula applies to hierarchical all-reduce over
    whole nodes. Flat algorithms across nodes mix link classes, and no single
    formula describes them.
    """
    _check(cluster, devices, nbytes)
    lookup(op, algorithm)
    if algorithm in ("recursive", "rabenseifner"):
        require_power_of_two(devices, op, algorithm)
    per_node = cluster.devices_per_node
    if (op, algorithm) == ("all_reduce", "hierarchical") and devices > per_node:
        if devices % per_node:
            return None
        return closed_forms.two_level_all_reduce(
            per_node,
            devices // per_node,
            nbytes,
            *_alpha_beta(cluster.intra_node),
            *_alpha_beta(cluster.inter_node),
        )
    if devices > per_node:
        return None
    return closed_forms.FLAT[(op, algorithm)](devices, nbytes, *_alpha_beta(cluster.intra_node))

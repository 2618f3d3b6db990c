"""Timing one collective on its own, as nccl-tests does on real hardware.

This drives a whole engine, so it sits above both :mod:`simulator.comm` (the
algorithms) and :mod:`simulator.engine` (the links), which know nothing of
each other; the ``collective`` command and the notebooks use it.

:func:`time_collective` runs the algorithm on shape-only arrays (no data is
summed, only sizes travel) over devices ``0 .. devices-1`` of a cluster, which
fill its nodes in order, and books every message on otherwise idle links
(:meth:`simulator.engine.network.Network.idle_duration`). It records no trace,
so its time and memory grow with the plan's rounds, not its messages: a ring
over ``p`` devices costs ``O(p)`` memory and ``O(p)`` vector operations of
length ``p`` per channel. :func:`simulate_collective` runs the same on an
engine and traces every message.

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

from dataclasses import dataclass

from ..comm import AUTO, closed_forms, collective, lookup, resolve
from ..comm.layout import GroupLayout
from ..comm.recursive import require_power_of_two
from ..engine import Engine
from ..engine.network import Network
from ..errors import LayoutError, ScenarioError
from ..hardware import ClusterSpec, LinkSpec
from ..ops.arrays import ITEMSIZE, ShapeArray, split_bounds


def collective_inputs(op: str, p: int, nbytes: int) -> list[ShapeArray]:
    """Shape-only inputs of ``nbytes`` (see the module docstring), one per rank."""
    dtype = "float32" if nbytes % ITEMSIZE["float32"] == 0 else "uint8"
    count = nbytes // ITEMSIZE[dtype]
    if op in ("all_gather", "gather"):
        return [ShapeArray((hi - lo,), dtype) for lo, hi in split_bounds(count, p)]
    return [ShapeArray((count,), dtype)] * p


@dataclass(frozen=True)
class Timed:
    """One collective timed on idle links: seconds, and the algorithm and channels
    that ran (``auto`` resolved)."""

    seconds: float
    algorithm: str
    channels: int


def simulate_collective(
    engine: Engine,
    op: str,
    algorithm: str,
    devices: tuple[int, ...],
    nbytes: int,
    root: int = 0,
    channels: int | None = None,
) -> float:
    """Run ``op`` over ``devices`` of ``engine`` starting now; returns its end time.

    Every message lands in ``engine.trace`` (category ``op``, with its step,
    bytes and link).
    """
    layout = GroupLayout.of(engine.cluster, devices)
    xs = collective_inputs(op, len(devices), nbytes)
    _, plan = collective(op, xs, algorithm, root, layout=layout, channels=channels)
    return engine.collective(plan, devices, op, f"{op} ({plan.algorithm})")


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


def run_collective(
    op: str,
    algorithm: str,
    cluster: ClusterSpec,
    devices: int,
    nbytes: int,
    root: int = 0,
    channels: int | None = None,
) -> Timed:
    """``op`` of ``nbytes`` over ``devices`` idle devices: its time and what ran."""
    _check(cluster, devices, nbytes)
    group = tuple(range(devices))
    xs = collective_inputs(op, devices, nbytes)
    layout = GroupLayout.of(cluster, group)
    _, plan = collective(op, xs, algorithm, root, layout=layout, channels=channels)
    seconds = Network(cluster).idle_duration(plan, group)
    return Timed(seconds, plan.algorithm, plan.channels)


def time_collective(
    op: str, algorithm: str, cluster: ClusterSpec, devices: int, nbytes: int, root: int = 0
) -> float:
    """Simulated seconds of one ``op`` of ``nbytes`` over ``devices`` idle devices."""
    return run_collective(op, algorithm, cluster, devices, nbytes, root).seconds


def _alpha_beta(link: LinkSpec) -> tuple[float, float]:
    return link.latency, 1.0 / link.effective_bandwidth


def predicted_time(
    op: str, algorithm: str, cluster: ClusterSpec, devices: int, nbytes: int
) -> float | None:
    """The alpha-beta closed form for :func:`time_collective`, or ``None``.

    A flat formula applies when the whole group sits in one node (one link
    class; channels change nothing there, see :mod:`.ring`); the two-level
    formula applies to hierarchical all-reduce over whole nodes with a NIC per
    device, all of one kind. Flat algorithms across nodes mix link classes and
    channels, and no single formula describes them (:mod:`.tuner` estimates
    them).
    """
    _check(cluster, devices, nbytes)
    lookup(op, algorithm)
    if algorithm == AUTO:
        xs = collective_inputs(op, devices, nbytes)
        layout = GroupLayout.of(cluster, tuple(range(devices)))
        algorithm, _ = resolve(op, xs, algorithm, layout)
    if algorithm in ("recursive", "rabenseifner"):
        require_power_of_two(devices, op, algorithm)
    per_node = cluster.devices_per_node
    if (op, algorithm) == ("all_reduce", "hierarchical") and devices > per_node:
        if devices % per_node or cluster.nics != per_node or not cluster.homogeneous:
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

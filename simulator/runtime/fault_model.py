"""Faults at run time: what a straggler, a slow link and a failed device do.

The faults are data (:mod:`simulator.hardware.faults`, a scenario's ``[[fault]]``
tables); here they act on the simulation:

* a **straggler** stretches every compute segment of the worker that holds
  it: a tensor-parallel group works in lockstep, so the whole group runs at
  its slowest device's pace, and synchronous data parallelism then waits for
  that replica at every gradient all-reduce. With ``jitter`` each segment
  draws its own factor, ``factor * exp(jitter z - jitter^2 / 2)`` with ``z``
  standard normal from the scenario's seed and the worker (a log-normal whose
  mean is ``factor``);
* a **slow link** multiplies the bandwidth of every message through that
  device's ports, or through that node's network interfaces;
* a **failed device** stops at its time: its worker's process ends there, the
  collectives and messages that need it never come, and once nothing else
  can happen the run stops with :class:`~simulator.errors.DeviceFailedError`
  naming the failure and every worker left waiting.

A run with faults is never folded (:mod:`simulator.runtime.fold`): its
replicas are not identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from ..hardware import ClusterSpec
from ..hardware.faults import Fail, Fault, SlowLink, Straggler
from .workers import SimWorker


class FaultModel:
    """The faults of one run, by what they act on."""

    def __init__(self, faults: Iterable[Fault], cluster: ClusterSpec, seed: int) -> None:
        self.cluster = cluster
        self.seed = seed
        self.faults = tuple(faults)
        self.stragglers = {f.device: f for f in self.faults if isinstance(f, Straggler)}
        links = [f for f in self.faults if isinstance(f, SlowLink)]
        self.slow_devices = {f.device: f.factor for f in links if f.device is not None}
        self.slow_nodes = {f.node: f.factor for f in links if f.node is not None}
        self.failures = sorted(
            (f.at_ms / 1e3, f.device) for f in self.faults if isinstance(f, Fail)
        )

    def __bool__(self) -> bool:
        return bool(self.faults)

    def touches(self, devices: Iterable[int]) -> bool:
        """Whether any fault acts on one of ``devices`` (or on one of their nodes)."""
        node_of = self.cluster.node_of
        return any(
            d in self.stragglers
            or d in self.slow_devices
            or node_of(d) in self.slow_nodes
            or any(d == device for _, device in self.failures)
            for d in devices
        )

    # -- stragglers --------------------------------------------------------------------
    def pace(self, sw: SimWorker) -> Callable[[float], float] | None:
        """How ``sw`` stretches a compute segment, or None when it runs at full speed."""
        slow = [self.stragglers[d] for d in sw.shown if d in self.stragglers]
        if not slow:
            return None
        worst = max(slow, key=lambda f: (f.factor, f.jitter))
        if worst.jitter == 0:
            return lambda seconds: seconds * worst.factor
        rng = np.random.default_rng([self.seed, 7_919, sw.index])
        sigma = worst.jitter

        def stretch(seconds: float) -> float:
            z = float(rng.standard_normal())
            return seconds * worst.factor * math.exp(sigma * z - sigma * sigma / 2)

        return stretch

    # -- slow links --------------------------------------------------------------------
    def link_factor(self, src: int, dst: int, inter_node: bool) -> float:
        """The bandwidth multiplier of a message from ``src`` to ``dst``: the slowest of the
        faults on its ports (and on its nodes' network interfaces when it leaves a node)."""
        factor = min(self.slow_devices.get(src, 1.0), self.slow_devices.get(dst, 1.0))
        if inter_node:
            node_of = self.cluster.node_of
            factor = min(
                factor,
                self.slow_nodes.get(node_of(src), 1.0),
                self.slow_nodes.get(node_of(dst), 1.0),
            )
        return factor

"""Faults: stragglers, slow links and failed devices (the ``[[fault]]`` tables of a scenario).

Training at scale is a reliability problem as much as a speed problem. Meta's
Llama 3 report (Dubey et al. 2024, sec. 3.3.4) counts 419 unexpected
interruptions in 54 days of pre-training on 16,384 GPUs, and synchronous
training runs at the pace of its slowest member. Three kinds of fault
make this visible on the timeline:

* :class:`Straggler` -- one device's kernels take ``factor`` times as long
  (a GPU throttled by heat or power, a noisy neighbour). Synchronous data
  parallelism waits for it at every gradient all-reduce, so the step takes
  the slowest replica's compute plus the synchronisation. ``jitter`` makes the
  slowdown vary from kernel to kernel: each kernel's factor is
  ``factor * exp(jitter * z - jitter**2 / 2)`` with ``z`` standard normal,
  drawn from the scenario's seed (a log-normal with mean ``factor``, so the
  slowdown stays positive and ``factor`` stays its average).
* :class:`SlowLink` -- a device's link port (``device``) or a node's network
  interfaces (``node``) carry ``factor`` times their bandwidth (a degraded
  NVLink, a flapping NIC running at a lower rate). ``factor`` is in
  ``[0.001, 1]``: a link can be slower, not faster, and at most a thousand
  times slower, which is already a link that is as good as down.
* :class:`Fail` -- a device stops at ``at_ms`` of simulated time. The groups
  it belongs to cannot finish their collectives and its pipeline neighbours
  wait for it forever: the run stops with status ``"failed"``, naming every
  worker left waiting, the time, and the work lost since the last checkpoint
  (the ``goodput`` command turns failure rates into expected lost time).

This module defines and validates the faults; the runtime gives them their
effect. Field metadata (``doc``, ``range``) is the schema the scenario parser
derives, as for :class:`~simulator.parallel.strategy.Strategy`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import ConfigError, ScenarioError
from ..keys import check_fields
from ..ranges import Range

_DEVICE = {"doc": "index of the device, from 0", "range": Range(lo=0, integer=True)}
_NODE = {"doc": "index of the node, from 0", "range": Range(lo=0, integer=True)}


@dataclass(frozen=True)
class Straggler:
    """Device ``device`` runs every kernel ``factor`` times slower (see the module docstring)."""

    kind: ClassVar[str] = "straggler"
    device: int = field(metadata=_DEVICE)
    factor: float = field(
        metadata={
            "doc": "its kernels take factor times as long",
            "range": Range(lo=1, hi=1000),
        }
    )
    jitter: float = field(
        default=0.0,
        metadata={
            "doc": "spread of the slowdown from kernel to kernel (log-normal sigma)",
            "range": Range(lo=0, hi=1),
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)  # the rules of a [[fault]] table (raises ConfigError)


@dataclass(frozen=True)
class SlowLink:
    """The port of ``device``, or the network interfaces of ``node``, at ``factor`` x bandwidth.

    Exactly one of ``device`` and ``node`` is given.
    """

    kind: ClassVar[str] = "slow_link"
    factor: float = field(
        metadata={
            "doc": "multiplier of the bandwidth",
            "range": Range(lo=0.001, hi=1),
        }
    )
    device: int | None = field(default=None, metadata=_DEVICE)
    node: int | None = field(default=None, metadata=_NODE)

    def __post_init__(self) -> None:
        check_fields(self)
        if (self.device is None) == (self.node is None):
            raise ConfigError(
                "a slow_link fault names either device = D (its port) or node = N "
                "(its network interfaces), not both and not neither",
                "device",
                "device or node",
            )


@dataclass(frozen=True)
class Fail:
    """Device ``device`` stops working at ``at_ms`` milliseconds of simulated time."""

    kind: ClassVar[str] = "fail"
    device: int = field(metadata=_DEVICE)
    at_ms: float = field(
        metadata={
            "doc": "simulated time of the failure, milliseconds from the start of the run",
            "range": Range(lo=0, hi=1e12),
        }
    )

    def __post_init__(self) -> None:
        check_fields(self)


Fault = Straggler | SlowLink | Fail

#: ``[[fault]] kind`` -> its class.
FAULT_KINDS: dict[str, type] = {cls.kind: cls for cls in (Straggler, SlowLink, Fail)}


def target(fault: Fault) -> tuple[str, int]:
    """What a fault acts on: ``("device", 3)`` or ``("node", 1)``."""
    if isinstance(fault, SlowLink) and fault.node is not None:
        return ("node", fault.node)
    assert fault.device is not None
    return ("device", fault.device)


def check_faults(faults: Iterable[Fault], num_devices: int, nodes: int) -> None:
    """Raise :class:`ScenarioError` for faults outside the cluster or given twice.

    Two faults of one kind on one target would leave their combined effect
    to guesswork (do two stragglers multiply?), so they are refused: write
    the combined one.
    """
    seen: set[tuple[str, str, int]] = set()
    for i, fault in enumerate(faults):
        what, index = target(fault)
        size = num_devices if what == "device" else nodes
        if index >= size:
            raise ScenarioError(
                f"[[fault]] #{i + 1} ({fault.kind}) {what} = {index} is not in the cluster, "
                f"which has {what}s 0 to {size - 1}"
            )
        key = (fault.kind, what, index)
        if key in seen:
            raise ScenarioError(
                f"[[fault]] #{i + 1}: a second {fault.kind} fault on {what} {index}; "
                "give each device or node at most one fault of each kind"
            )
        seen.add(key)

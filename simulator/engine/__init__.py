"""The SimPy core: devices, links and their costs. It knows no model, strategy or
collective algorithm, only time, ports and bytes.

* :mod:`.core` -- :class:`Engine`: the clock, compute streams, memory ledgers
  and the trace of one run; it books what the layers above ask for;
* :mod:`.cost` -- :class:`CostModel`: a kernel's time on a device's roofline
  (``launch + max(flops / (peak x efficiency), bytes / bandwidth)``);
* :mod:`.network` -- the topology: ports of NVLink and NICs, routes, and when
  each port is free (contention);
* :mod:`.booking` -- a transfer plan (:class:`~simulator.transfer.TransferPlan`)
  placed on devices and booked on their ports;
* :mod:`.channel` -- a stream of equal pipeline messages between two groups;
* :mod:`.memory` -- :class:`MemoryLedger`: bytes by category over time, the
  peak, and a clear out-of-memory error;
* :mod:`.events` -- SimPy's timeouts and events written out for the hot paths
  (:func:`fire_at`: trigger an event at a later time).
"""

from .core import Engine, Process
from .cost import CostModel
from .events import fire_at
from .memory import MemoryLedger, MemoryRecord
from .network import Network, Route

__all__ = [
    "CostModel",
    "Engine",
    "MemoryLedger",
    "MemoryRecord",
    "Network",
    "Process",
    "Route",
    "fire_at",
]

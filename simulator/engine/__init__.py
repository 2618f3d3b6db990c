"""The SimPy core: devices (compute stream, memory ledger), links and their costs."""

from .core import Engine, Process
from .cost import CostModel
from .memory import MemoryLedger, format_bytes
from .network import Network, Route

__all__ = ["CostModel", "Engine", "MemoryLedger", "Network", "Process", "Route", "format_bytes"]

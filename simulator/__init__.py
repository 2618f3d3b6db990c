"""An educational simulator of parallel training on virtual devices.

Real numpy training math runs on virtual devices whose compute and links are
simulated with SimPy; every strategy records a timeline, pipeline bubbles,
memory and traffic, and reproduces single-device training exactly.
"""

import os

# Layers multiply small matrices; a multithreaded BLAS spends more time waking
# threads than computing (and thrashes when cores are shared). One thread,
# unless the user chose otherwise, and only if numpy is not loaded yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from .errors import (
    DeadlockError,
    LayoutError,
    OutOfMemoryError,
    ScenarioError,
    ScheduleError,
    SimulatorError,
)
from .hardware import ClusterSpec, DeviceSpec, LinkSpec, preset
from .nn.gpt import GPTConfig
from .nn.models import MLPConfig
from .parallel import Mesh, Strategy, build_plan
from .training import TrainingConfig

__all__ = [
    "ClusterSpec",
    "DeadlockError",
    "DeviceSpec",
    "GPTConfig",
    "LayoutError",
    "LinkSpec",
    "MLPConfig",
    "Mesh",
    "OutOfMemoryError",
    "ScenarioError",
    "ScheduleError",
    "SimulatorError",
    "Strategy",
    "TrainingConfig",
    "build_plan",
    "preset",
]

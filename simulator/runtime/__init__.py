"""Executing a plan: simulated workers walk their programs on the engine.

Read it in this order:

* :mod:`.core` -- :class:`Runtime`: the steps, the worker processes, the
  services their instructions use, and deadlock detection;
* :mod:`.workers` -- :class:`SimWorker`, what one simulated process owns;
* :mod:`.compute` -- ``COMPUTE``: a pipeline action's math, then its time;
* :mod:`.tapes` -- what a recorded tape costs, priced once;
* :mod:`.messages` -- ``SEND``/``RECV``: pipeline messages, one event at most;
* :mod:`.meetings` -- collectives between workers, with handles;
* :mod:`.fold` -- identical data-parallel replicas simulated once;
* :mod:`.record` -- :class:`StepRecord`, what a step leaves for the metrics.

Data-parallel synchronisation plugs in through the small contract of
:class:`~simulator.parallel.data.DataParallel` (``allocate_model_state``,
``on_mark``, ``handlers``, ``wants_marks``).
"""

from .core import Runtime, collector_paused
from .fold import Fold, decide_fold
from .record import StepRecord, WorkerRecord
from .workers import SimWorker

__all__ = [
    "Fold",
    "Runtime",
    "SimWorker",
    "StepRecord",
    "WorkerRecord",
    "collector_paused",
    "decide_fold",
]

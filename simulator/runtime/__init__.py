"""Executing a plan: simulated workers walk their programs on the engine.

Read it in this order:

* :mod:`.core` -- :class:`Runtime`: the steps, the worker processes and the
  instruction handlers they dispatch to, deadlock and failure reports;
* :mod:`.workers` -- :class:`SimWorker`, what one simulated process owns
  (its stash, buffers, memory ledger and counters);
* :mod:`.feed` -- which samples each micro-batch holds;
* :mod:`.compute` -- ``COMPUTE``: a pipeline action's math, then its time;
* :mod:`.tapes` -- what a recorded tape costs, priced once;
* :mod:`.replay` -- a tape's time on a worker: compute, its own group's
  collectives (waited for, or overlapped), data-parallel hooks;
* :mod:`.messages` -- ``SEND``/``RECV``: pipeline messages, one event at most;
* :mod:`.meetings` -- collectives between workers, with handles;
* :mod:`.fold` -- identical data-parallel replicas simulated once;
* :mod:`.faults` -- stragglers, slow links and failed devices at run time;
* :mod:`.record` -- what a step counts (:class:`Tally`) and leaves for the
  metrics (:class:`StepRecord`);
* :mod:`.sync` -- :class:`DataParallelSync`, the small contract through which
  data-parallel variants (DDP, ZeRO, ``nn.DataParallel``) plug in.
"""

from .core import Runtime, collector_paused
from .fold import Fold, decide_fold
from .record import StepRecord, WorkerRecord
from .sync import DataParallelSync
from .workers import SimWorker

__all__ = [
    "DataParallelSync",
    "Fold",
    "Runtime",
    "SimWorker",
    "StepRecord",
    "WorkerRecord",
    "collector_paused",
    "decide_fold",
]

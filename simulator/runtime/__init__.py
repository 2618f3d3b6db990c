"""Executing a plan: simulated workers walk their programs on the engine.

Read it in this order:

* :mod:`.core` -- :class:`Runtime`: builds the parts below, giving each only
  what it uses; the steps, the worker processes and the instruction handlers
  they dispatch to, deadlock and failure reports;
* :mod:`.workers` -- :class:`SimWorker`, what one simulated process owns
  (its stash, buffers, memory ledger, counters and exposed communication);
* :mod:`.feed` -- which samples each micro-batch holds;
* :mod:`.compute` -- ``COMPUTE``: a pipeline action's math, then its time;
* :mod:`.tapes` -- what a recorded tape costs, priced once;
* :mod:`.replay` -- a tape's time on a worker: compute, its own group's
  collectives (waited for, or overlapped), data-parallel hooks;
* :mod:`.messages` -- ``SEND``/``RECV``: pipeline messages, one event at most;
* :mod:`.rendezvous` -- the same, blocking: a send waits for its receiver
  (DeepSpeed's pipeline engine);
* :mod:`.meetings` -- collectives between workers, with handles;
* :mod:`.data` -- the data-parallel variants' execution (DDP and ZeRO,
  ``nn.DataParallel``, tied weights), through a small contract,
  :class:`DataParallelSync`;
* :mod:`.fold` -- identical data-parallel replicas simulated once;
* :mod:`.fault_model` -- stragglers, slow links and failed devices at run time;
* :mod:`.tally` -- what a step counts while it runs;
* :mod:`.intervals` -- the stretches a set of time intervals covers;
* :mod:`.record` -- what a run leaves behind, frozen: :class:`StepRecord` per
  step and the :class:`RunRecord` that metrics and pictures read.
"""

from .core import Runtime, collector_paused
from .data import DataParallelSync
from .fold import Fold, decide_fold
from .record import RunRecord, StepRecord, WorkerRecord
from .workers import SimWorker

__all__ = [
    "DataParallelSync",
    "Fold",
    "RunRecord",
    "Runtime",
    "SimWorker",
    "StepRecord",
    "WorkerRecord",
    "collector_paused",
    "decide_fold",
]

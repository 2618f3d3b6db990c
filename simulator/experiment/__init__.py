"""Running: a strategy or a scenario on the runtime, and what the run measured.

* :mod:`.runner` -- :func:`run_strategy` and :func:`run_scenario`, with
  out-of-memory, divergence and failures reported as a status;
* :mod:`.arguments` -- what they accept: their arguments checked at the boundary
  of the Python API, one :class:`~simulator.errors.ConfigError` for a misuse;
* :mod:`.metrics` -- the results-JSON entry of a run (step time and its split
  into compute, exposed communication and bubble, MFU, memory, traffic);
* :mod:`.progress` -- the events estimate and the progress bar;
* :mod:`.collective` -- one collective timed on an engine, nccl-tests style;
* :mod:`.goodput` -- how often to checkpoint (Young/Daly).
"""

from .runner import ScenarioResult, StrategyResult, run_scenario, run_strategy

__all__ = ["ScenarioResult", "StrategyResult", "run_scenario", "run_strategy"]

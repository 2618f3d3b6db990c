"""Pipeline schedules: the action IR, the registry of schedules, the validator
and the unit-time timeline.

Importing the package registers every schedule family (each module calls
:func:`~.schedules.register`), so ``get_schedule`` knows them all.
"""

from . import interleaved, zero_bubble, zbv, dualpipe, deepspeed  # noqa: F401, I001  (they register themselves, in this order)
from .actions import Action, Pair, Schedule, dependencies, parse_csv
from .schedules import ScheduleInfo, get_schedule, schedule_names
from .timeline import Timeline, run
from .validate import validate

__all__ = [
    "Action",
    "Pair",
    "Schedule",
    "ScheduleInfo",
    "Timeline",
    "dependencies",
    "get_schedule",
    "parse_csv",
    "run",
    "schedule_names",
    "validate",
]

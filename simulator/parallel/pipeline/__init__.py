"""Pipeline schedules: the action IR, the registry of schedules, the validator
and the unit-time timeline.
"""

from .actions import Action, Schedule, dependencies, load_csv, parse_csv
from .schedules import ScheduleInfo, get_schedule, schedule_names
from .timeline import Timeline, run
from .validate import validate

__all__ = [
    "Action",
    "Schedule",
    "ScheduleInfo",
    "Timeline",
    "dependencies",
    "get_schedule",
    "load_csv",
    "parse_csv",
    "run",
    "schedule_names",
    "validate",
]

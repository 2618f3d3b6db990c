"""Pipeline schedules: the action IR, the registry of schedules and the validator."""

from .actions import Action, Schedule, load_csv, parse_csv
from .schedules import ScheduleInfo, get_schedule, schedule_names

__all__ = [
    "Action",
    "Schedule",
    "ScheduleInfo",
    "get_schedule",
    "load_csv",
    "parse_csv",
    "schedule_names",
]

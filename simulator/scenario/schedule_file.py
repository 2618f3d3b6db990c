"""``schedule = "file:PATH.csv"``: a schedule of the user's own, read once.

A strategy may name a CSV file instead of a registered schedule (one row of
actions per pipeline rank; :func:`simulator.parallel.pipeline.parse_csv`).
The file is read and parsed here, when the scenario is loaded, so a bad file
stops the scenario before anything runs and nothing later reads it again:
the plan receives the parsed :class:`~simulator.parallel.pipeline.Schedule`
(:func:`simulator.parallel.build_plan`'s ``schedule``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ScheduleError
from ..parallel.pipeline import Schedule, parse_csv
from ..parallel.strategy import FILE_SCHEDULE, Strategy
from .limits import Limits
from .paths import read_text


def load_csv(path: str | Path, limits: Limits | None = None) -> Schedule:
    """Read a schedule file: UTF-8 text of at most ``limits.max_file_bytes`` bytes."""
    text = read_text(path, "schedule file", limits, ScheduleError)
    return parse_csv(text, name=f"file:{Path(path).name}")


def schedule_path(strategy: Strategy, base_dir: Path | None) -> Path | None:
    """The file ``strategy`` names (relative to ``base_dir``), or None for a registered one."""
    if not strategy.schedule.startswith(FILE_SCHEDULE):
        return None
    path = Path(strategy.schedule[len(FILE_SCHEDULE) :])
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


def read_schedule_file(
    strategy: Strategy, base_dir: Path | None = None, limits: Limits | None = None
) -> Schedule | None:
    """The parsed schedule file ``strategy`` names, or None for a registered schedule."""
    path = schedule_path(strategy, base_dir)
    return None if path is None else load_csv(path, limits)

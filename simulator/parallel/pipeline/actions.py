"""Pipeline schedules as data: actions, per-rank lists, a text grid, CSV.

An :class:`Action` is one unit of pipeline work on one *stage* (a model chunk)
for one micro-batch. Its :class:`Kind` is one of

* ``F``: the forward;
* ``BW``: the full backward, input and weight gradients together (GPipe,
  1F1B, interleaved);
* ``B``: the input-gradient part of a split backward (what the previous stage
  waits for), and ``W``: its weight-gradient part (what nobody waits for) --
  the split of Qi et al. 2024, sec. 2, which PyTorch calls
  ``BACKWARD_INPUT``/``BACKWARD_WEIGHT`` next to ``FULL_BACKWARD``.

It prints and parses in the compact notation ``2F0`` -- stage 2, forward,
micro-batch 0 -- used by PyTorch's pipelining schedules and by this project's
CSV files: ``1BW3``, ``1B3``, ``0W2``. (In files written before the split had
its own name, a schedule without any ``W`` wrote its full backward ``B``; the
parser reads such files as they were meant.)

A :class:`Schedule` is one list of actions per rank (``None`` marks an idle
step in a hand-written schedule). Which rank runs a stage is read off the
schedule itself.

:func:`dependencies` states what every action waits for; the validator, the
unit-time timeline and the schedule generators all reason with it.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from ...errors import ScheduleError
from ...keys import check_instance

#: ``STAGE KIND MICROBATCH``; ASCII digits only (``int`` would read ``١`` as 1 too).
_ACTION = re.compile(r"^\s*([0-9]+)\s*(BW|[FBW])\s*([0-9]+)\s*$", re.ASCII)


class Kind(StrEnum):
    """What an action computes; its value is how it prints."""

    F = "F"
    B = "B"
    W = "W"
    BW = "BW"


#: The kinds, for loops and messages.
KINDS = tuple(Kind)
F, B, W, BW = Kind.F, Kind.B, Kind.W, Kind.BW
#: Kinds that produce the gradient of a stage's input (what the previous stage waits for).
BACKWARDS = (B, BW)


class Action(NamedTuple):
    """``stage`` ``kind`` ``mb``: e.g. ``Action(2, Kind.F, 0)`` prints as ``2F0``."""

    stage: int
    kind: Kind
    mb: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.mb}"

    @classmethod
    def parse(cls, text: str) -> Action:
        match = _ACTION.match(text)
        if not match:
            raise ScheduleError(
                f"cannot read action {text!r}: write STAGE KIND MICROBATCH, e.g. 2F0, 1BW3, "
                "1B3, 0W2"
            )
        return cls(int(match[1]), Kind(match[2]), int(match[3]))


@dataclass(frozen=True)
class Schedule:
    """Per-rank action lists.

    Attributes:
        name: the schedule's name (``gpipe``, ``1f1b``, ``file:x.csv`` ...).
        ranks: one tuple of actions per rank; ``None`` is an idle step.
        num_stages: model stages (chunks), ``ranks * chunks per rank``.
        microbatches: micro-batches per step.
    """

    name: str
    ranks: tuple[tuple[Action | None, ...], ...]
    num_stages: int
    microbatches: int

    @property
    def num_ranks(self) -> int:
        return len(self.ranks)

    @cached_property
    def split_backward(self) -> bool:
        """True when backward is split into B (input) and W (weight) actions."""
        return any(a is not None and a.kind != F and a.kind != BW for r in self.ranks for a in r)

    @property
    def chunks_per_rank(self) -> int:
        return self.num_stages // max(1, self.num_ranks)

    def actions(self, rank: int) -> list[Action]:
        """The actions of ``rank`` in order, without idle steps."""
        return [a for a in self.ranks[rank] if a is not None]

    def peak_in_flight(self) -> list[int]:
        """Per rank, the most (stage, micro-batch) stashes held at once.

        A forward stashes its activations; they are freed by the W of the same
        stage and micro-batch, or by the full backward ``BW``. Ranks
        run their lists one action at a time, so counting along each list is
        exact. With one chunk per rank this is the number of micro-batches in
        flight, the quantity Narayanan et al. (2021, sec. 2.2.1) and Qi et al.
        (2024, Table 2) bound.
        """
        peaks = []
        for r in range(self.num_ranks):
            held = peak = 0
            for a in self.actions(r):
                held += (a.kind == F) - (a.kind == W or a.kind == BW)
                peak = max(peak, held)
            peaks.append(peak)
        return peaks

    def stage_to_rank(self) -> dict[int, int]:
        """The rank that runs each stage (the validator checks it is unique)."""
        placement: dict[int, int] = {}
        for r, row in enumerate(self.ranks):
            for a in row:
                if a is not None:
                    placement.setdefault(a.stage, r)
        return placement

    def grid(self, mark: tuple[int, int] | None = None) -> str:
        """A rank x step text grid; ``mark=(rank, step)`` brackets one cell."""
        # room for the ">...<" marker and a space between cells
        width = max([5, *(len(str(a)) + 3 for row in self.ranks for a in row if a)])
        steps = max((len(row) for row in self.ranks), default=0)
        header = "step    " + "".join(f"{s:>{width}}" for s in range(steps))
        lines = [header]
        for r, row in enumerate(self.ranks):
            cells = []
            for s in range(steps):
                text = str(row[s]) if s < len(row) and row[s] is not None else "."
                if mark == (r, s):
                    text = f">{text}<"
                cells.append(f"{text:>{width}}")
            lines.append(f"rank {r:<3}" + "".join(cells))
        return "\n".join(lines)

    def to_csv(self) -> str:
        """One row per rank, one cell per step, empty cells for idle steps."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in self.ranks:
            writer.writerow(["" if a is None else str(a) for a in row])
        return buf.getvalue()

    def save_csv(self, path: str | Path) -> None:
        Path(path).write_text(self.to_csv())


def dependencies(action: Action, num_stages: int) -> list[Action]:
    """The actions ``action`` needs finished first, on its own rank or another.

    ``F`` of stage ``s`` needs ``F`` of ``s-1`` (its input activation); a
    backward (``B`` or ``BW``) of ``s`` needs its own ``F`` (the stash) and the
    backward of the same kind of ``s+1`` (the output gradient; the last stage
    starts from the loss); ``W`` needs the ``B`` of the same stage and
    micro-batch (Qi et al. 2024, sec. 2: W may run any time after its B).
    """
    s, k, kind = action.stage, action.mb, action.kind
    if kind == F:
        return [Action(s - 1, F, k)] if s > 0 else []
    if kind == W:
        return [Action(s, B, k)]
    upstream = [Action(s + 1, kind, k)] if s < num_stages - 1 else []
    return [Action(s, F, k), *upstream]


def parse_csv(text: str, name: str = "csv") -> Schedule:
    """Read a schedule written one row per rank; stage and micro-batch counts are inferred.

    The text is read as people write it: a UTF-8 byte-order mark (which Excel
    writes) is dropped, lines may end in LF, CRLF or a lone CR, and empty rows
    before the first rank and after the last are ignored. An empty row between
    two ranks is an error (``empty row N``): it would be a rank with nothing to do.
    """
    check_instance("parse_csv", "text", text, str, "the text of the file, not its path")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise ScheduleError(f"{name}: not a CSV file a schedule can be read from: {err}") from None
    filled = [n for n, row in enumerate(rows, 1) if any(cell.strip() for cell in row)]
    if filled:
        blank = next((n for n, m in itertools.pairwise(filled) if m > n + 1), None)
        if blank is not None:
            raise ScheduleError(
                f"{name}: empty row {blank + 1}, between two ranks; write one row of actions per "
                "rank, with no empty row between them"
            )
    ranks: list[tuple[Action | None, ...]] = []
    for row in (rows[n - 1] for n in filled):
        cells: list[Action | None] = []
        for s, cell in enumerate(row):
            if not cell.strip():
                cells.append(None)
                continue
            try:
                cells.append(Action.parse(cell))
            except ScheduleError as err:
                raise ScheduleError(f"{name}: rank {len(ranks)}, step {s}: {err}") from None
        ranks.append(tuple(cells))
    actions = [a for row in ranks for a in row if a is not None]
    if not any(a.kind == W for a in actions):
        # written before the full backward had a name of its own: B meant all of it
        ranks = [tuple(a if a is None or a.kind != B else a._replace(kind=BW) for a in row)
                 for row in ranks]  # fmt: skip
        actions = [a for row in ranks for a in row if a is not None]
    if not actions:
        raise ScheduleError(
            f"{name}: the schedule has no actions; write one row of actions per rank"
        )
    return Schedule(
        name=name,
        ranks=tuple(ranks),
        num_stages=1 + max(a.stage for a in actions),
        microbatches=1 + max(a.mb for a in actions),
    )

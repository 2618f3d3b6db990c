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
CSV files: ``1BW3``, ``1B3``, ``0W2``.

A :class:`Pair` -- kind ``F&B`` -- is a forward and a backward of two
different micro-batches that a rank runs *overlapped*, as one unit
(DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", sec. 3.2.1): one chunk's
communication (the experts' all-to-alls, the pipeline's sends) runs while the
other computes. It prints ``3F5&4BW2``. Its time on the unit-time timeline is
the *sum* of its two halves: one GPU runs one chunk's kernels at a time (DualPipe
gives the communication its own SMs, not the other chunk), so what the pair
saves is the communication it hides, which the unit-time timeline does not
have; the runtime interleaves the two halves' compute and communication on one
compute stream (:mod:`simulator.runtime.pairs`). Both products leave when the
pair ends, as DualPipe sends them. (In files written before the split had
its own name, a schedule without any ``W`` wrote its full backward ``B``; the
parser reads such files as they were meant.)

A :class:`Schedule` is one list of actions per rank (``None`` marks an idle
step in a hand-written schedule). Which rank runs a stage is read off the
schedule itself. A schedule with ``directions = 2`` (DualPipe) runs two
pipelines in opposite directions: stages ``0 .. S/2-1`` take the first half of
the micro-batches, stages ``S/2 .. S-1`` (copies of the same model stages) the
second half.

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
    FB = "F&B"


#: The kinds of a single action, for loops and messages (``F&B`` is a :class:`Pair`'s).
KINDS = (Kind.F, Kind.B, Kind.W, Kind.BW)
F, B, W, BW, FB = Kind.F, Kind.B, Kind.W, Kind.BW, Kind.FB
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


class Pair(NamedTuple):
    """A forward and a backward run overlapped as one unit (module docstring): kind
    ``F&B``, printed ``3F5&4BW2``."""

    forward: Action
    backward: Action

    @property
    def kind(self) -> Kind:
        return FB

    @property
    def parts(self) -> tuple[Action, Action]:
        return (self.forward, self.backward)

    def __str__(self) -> str:
        return f"{self.forward}&{self.backward}"

    @classmethod
    def parse(cls, text: str) -> Pair:
        halves = text.split("&")
        pair = cls(*map(Action.parse, halves)) if len(halves) == 2 else None
        if pair is None or pair.forward.kind != F or pair.backward.kind not in BACKWARDS:
            raise ScheduleError(
                f"cannot read pair {text!r}: write a forward and a backward joined by &, "
                "e.g. 3F5&4BW2"
            )
        return pair


#: What a rank's row holds: an action, or a pair run overlapped.
Item = Action | Pair


def parts(item: Item) -> tuple[Action, ...]:
    """The actions of ``item``: itself, or a pair's forward and backward."""
    return item.parts if isinstance(item, Pair) else (item,)


def parse_item(text: str) -> Item:
    """An action (``2F0``) or a pair (``3F5&4BW2``)."""
    return Pair.parse(text) if "&" in text else Action.parse(text)


@dataclass(frozen=True)
class Schedule:
    """Per-rank action lists.

    Attributes:
        name: the schedule's name (``gpipe``, ``1f1b``, ``file:x.csv`` ...).
        ranks: one tuple of actions (or pairs) per rank; ``None`` is an idle step.
        num_stages: model stages (chunks), ``ranks * chunks per rank``.
        microbatches: micro-batches per step.
        directions: 1, or 2 for two pipelines in opposite directions (module
            docstring).
        blocking: the ranks advance in steps -- the columns of ``ranks``, idle
            cells included -- and their messages are blocking sends and receives
            (DeepSpeed's pipeline engine, :mod:`.deepspeed`); False: a message
            leaves when the compute that made it ends, whatever the receiver does.
    """

    name: str
    ranks: tuple[tuple[Item | None, ...], ...]
    num_stages: int
    microbatches: int
    directions: int = 1
    blocking: bool = False

    @property
    def num_ranks(self) -> int:
        return len(self.ranks)

    @cached_property
    def split_backward(self) -> bool:
        """True when some backward is split into B (input) and W (weight) actions."""
        return any(
            a.kind != F and a.kind != BW for r in range(self.num_ranks) for a in self.actions(r)
        )

    @property
    def chunks_per_rank(self) -> int:
        return self.num_stages // max(1, self.num_ranks)

    def items(self, rank: int) -> list[Item]:
        """The actions and pairs of ``rank`` in order, without idle steps."""
        return [a for a in self.ranks[rank] if a is not None]

    def actions(self, rank: int) -> list[Action]:
        """The actions of ``rank`` in order, a pair's forward before its backward."""
        return [a for item in self.ranks[rank] if item is not None for a in parts(item)]

    def direction(self, stage: int) -> int:
        """Which of the pipelines ``stage`` belongs to (0 but for DualPipe's second)."""
        return stage // (self.num_stages // self.directions)

    def microbatches_of(self, stage: int) -> range:
        """The micro-batches ``stage`` processes: all, or its direction's half."""
        per = self.microbatches // self.directions
        d = self.direction(stage)
        return range(d * per, (d + 1) * per)

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
        return dict(self._placement)

    @cached_property
    def _placement(self) -> dict[int, int]:
        placement: dict[int, int] = {}
        for r in range(self.num_ranks):
            for a in self.actions(r):
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


def dependencies(
    action: Action, num_stages: int, directions: int = 1, upstream_kind: Kind | None = None
) -> list[Action]:
    """The actions ``action`` needs finished first, on its own rank or another.

    ``F`` of stage ``s`` needs ``F`` of ``s-1`` (its input activation); a
    backward (``B`` or ``BW``) of ``s`` needs its own ``F`` (the stash) and the
    backward of ``s+1`` (the output gradient; the last stage starts from the
    loss), of the same kind unless ``upstream_kind`` says which the schedule
    runs; ``W`` needs the ``B`` of the same stage and micro-batch (Qi et al.
    2024, sec. 2: W may run any time after its B). With two ``directions`` the
    first and last stages are those of each half.
    """
    s, k, kind = action.stage, action.mb, action.kind
    per = num_stages // directions
    if kind == F:
        return [Action(s - 1, F, k)] if s % per else []
    if kind == W:
        return [Action(s, B, k)]
    upstream = [Action(s + 1, upstream_kind or kind, k)] if (s + 1) % per else []
    return [Action(s, F, k), *upstream]


def needs(schedule: Schedule, action: Action, kinds: dict[tuple[int, int], Kind]) -> list[Action]:
    """:func:`dependencies` in ``schedule``, whose backward of each (stage, micro-batch)
    is of the kind ``kinds`` records (a schedule may split some backwards and not
    others, as DualPipe does)."""
    upstream = None
    if action.kind in BACKWARDS:
        upstream = kinds.get((action.stage + 1, action.mb), action.kind)
    return dependencies(action, schedule.num_stages, schedule.directions, upstream)


def backward_kinds(schedule: Schedule) -> dict[tuple[int, int], Kind]:
    """The kind of backward (``B`` or ``BW``) of every (stage, micro-batch) of a schedule."""
    return {
        (a.stage, a.mb): a.kind
        for r in range(schedule.num_ranks)
        for a in schedule.actions(r)
        if a.kind in BACKWARDS
    }


def _full(item: Item | None) -> Item | None:
    """``item`` with a backward ``B`` read as the full backward ``BW``."""
    if isinstance(item, Pair):
        return Pair(item.forward, _full(item.backward))  # type: ignore[arg-type]
    if item is None or item.kind != B:
        return item
    return item._replace(kind=BW)


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
    ranks: list[tuple[Item | None, ...]] = []
    for row in (rows[n - 1] for n in filled):
        cells: list[Item | None] = []
        for s, cell in enumerate(row):
            if not cell.strip():
                cells.append(None)
                continue
            try:
                cells.append(parse_item(cell))
            except ScheduleError as err:
                raise ScheduleError(f"{name}: rank {len(ranks)}, step {s}: {err}") from None
        ranks.append(tuple(cells))
    actions = [a for row in ranks for item in row if item is not None for a in parts(item)]
    if not any(a.kind == W for a in actions):
        # written before the full backward had a name of its own: B meant all of it
        ranks = [tuple(_full(a) for a in row) for row in ranks]
        actions = [a for row in ranks for item in row if item is not None for a in parts(item)]
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

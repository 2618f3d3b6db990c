"""The schedule registry: ``get_schedule(name)`` and the classic schedules.

A schedule generator is a pure function ``(p, m, v) -> Schedule`` for ``p``
ranks, ``m`` micro-batches and ``v`` chunks (model stages) per rank. Each
registered schedule documents its rules, its closed-form bubble and its source.

The families live one per module and register themselves when the package is
imported: this module (naive, GPipe, 1F1B), :mod:`.interleaved` (Megatron-LM's
interleaved 1F1B), :mod:`.zero_bubble` (ZB-H1, ZB-H2), :mod:`.zbv` (the
V-shape zero-bubble schedule), :mod:`.dualpipe` (DeepSeek-V3's DualPipe and
DualPipeV) and :mod:`.deepspeed` (DeepSpeed's pipeline engine, in lockstep
steps with blocking messages).

Bubble formulas return the *fraction* of the step that is bubble, in the
simulator's sense (docs/design.md: ``1 - mean(busy) / max(span)``, the "bubble
rate" of Qi et al. 2024, sec. 5.3), for equal stages and free communication;
they return None outside the conditions under which they are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...errors import LayoutError, ScheduleError
from .actions import BW, Action, F, Item, Schedule

#: ``(p, m, v, t_f, t_b, t_w) -> bubble fraction`` or None where no closed form holds.
#: ``t_b`` is the B part only; fused schedules see ``t_b`` = whole backward, ``t_w = 0``.
BubbleFormula = Callable[[int, int, int, float, float, float], float | None]


@dataclass(frozen=True)
class ScheduleInfo:
    """A registered schedule.

    Attributes:
        name: registry key.
        build: ``(p, m, v) -> per-rank action lists`` (None: an idle step).
        summary: one line for listings.
        split_backward: whether backward is split into B and W.
        chunked: whether ``v > 1`` chunks per rank are supported.
        bubble: the closed-form bubble fraction, or None when there is none
            (a formula may also return None where its conditions fail).
        rules: extra checks on ``(p, m, v)`` raising :class:`LayoutError`.
        checked: the generator is proven by the test suite, which validates its
            schedules over a grid of sizes (``tests/parallel/pipeline/test_validate.py``),
            so runs skip validating it; a schedule registered from elsewhere is
            validated before every run that uses it.
        directions: 2 for a schedule that runs two pipelines in opposite directions
            over copies of the stages (DualPipe, :mod:`.dualpipe`).
        blocking: its rows are steps and its messages blocking sends and receives
            (:attr:`.actions.Schedule.blocking`; DeepSpeed's, :mod:`.deepspeed`).
        searched: the planner tries it unless told which schedules to try.
        paired: it runs forwards and backwards of two micro-batches as ``F&B`` pairs,
            whose backwards are whole (``BW``) while its others are split (DualPipe).
    """

    name: str
    build: Callable[[int, int, int], list[list[Item]] | list[list[Item | None]]]
    summary: str
    split_backward: bool = False
    chunked: bool = False
    bubble: BubbleFormula | None = None
    rules: Callable[[int, int, int], None] | None = None
    checked: bool = False
    directions: int = 1
    blocking: bool = False
    searched: bool = True
    paired: bool = False

    def __call__(self, p: int, m: int, v: int = 1) -> Schedule:
        """The schedule for ``p`` ranks, ``m`` micro-batches and ``v`` chunks per rank.
        A schedule is immutable and its generator pure, so the last few built are kept
        and handed out again (a planner asks for the same sizes over and over)."""
        self.check(p, m, v)
        key = (self.name, p, m, v)
        hit = _BUILT.get(key)
        if hit is not None and hit[0] is self:
            return hit[1]
        rows = self.build(p, m, v)
        schedule = Schedule(
            self.name, tuple(tuple(r) for r in rows), p * v, m, self.directions, self.blocking
        )
        _keep(key, self, schedule)
        return schedule

    def check(self, p: int, m: int, v: int = 1) -> None:
        """Raise the first of the schedule's rules that ``p`` ranks, ``m`` micro-batches
        and ``v`` chunks break, without building it."""
        if p < 1 or m < 1 or v < 1:
            raise LayoutError(
                f"schedule {self.name!r} needs at least one rank, micro-batch and chunk "
                f"(got p={p}, m={m}, v={v})"
            )
        if v > 1 and not self.chunked:
            raise LayoutError(
                f"schedule {self.name!r} runs one chunk per rank; set chunks = 1 or use a "
                "schedule with chunks (interleaved, zbv)"
            )
        if self.rules is not None:
            self.rules(p, m, v)


_REGISTRY: dict[str, ScheduleInfo] = {}
#: the schedules built last, by (name, p, m, v), with the generator that built them and
#: their actions; at most ``_KEEP_ACTIONS`` actions in all (with their programs, lowered
#: once per schedule, about 450 bytes an action: 70 MB at most)
_BUILT: dict[tuple[str, int, int, int], tuple[ScheduleInfo, Schedule, int]] = {}
_KEEP_ACTIONS = 150_000


def _keep(key: tuple[str, int, int, int], info: ScheduleInfo, schedule: Schedule) -> None:
    """Keep ``schedule`` for the next call with ``key``, dropping the oldest kept to
    stay within ``_KEEP_ACTIONS`` (one too large is not kept)."""
    size = sum(len(r) for r in schedule.ranks)
    if size > _KEEP_ACTIONS:
        return
    kept = sum(entry[2] for entry in _BUILT.values())
    while _BUILT and kept + size > _KEEP_ACTIONS:
        kept -= _BUILT.pop(next(iter(_BUILT)))[2]
    _BUILT[key] = (info, schedule, size)


def register(info: ScheduleInfo) -> ScheduleInfo:
    """Add ``info`` to the registry under its name (each family module calls this)."""
    _REGISTRY[info.name] = info
    return info


def get_schedule(name: str) -> ScheduleInfo:
    """The registered schedule ``name``; raises with the list of names otherwise."""
    if name not in _REGISTRY:
        raise ScheduleError(
            f"unknown schedule {name!r}; choose one of: {', '.join(_REGISTRY)} "
            "or 'file:PATH.csv' for a schedule of your own"
        )
    return _REGISTRY[name]


def schedule_names() -> list[str]:
    """The registered names, in registration order."""
    return list(_REGISTRY)


def searched_names() -> list[str]:
    """The registered names the planner tries by default (:attr:`ScheduleInfo.searched`)."""
    return [name for name, info in _REGISTRY.items() if info.searched]


def bubble_from_time(m: int, t_f: float, t_b: float, t_w: float, bubble_time: float) -> float:
    """Bubble *fraction* from a bubble *time*: ``bubble / (m (t_f+t_b+t_w) + bubble)``.

    Every rank computes for ``m (t_f + t_b + t_w)``; the longest span is that
    plus the bubble time of the longest rank (Qi et al. 2024, sec. 5.3, whose
    Table 2 gives bubble times).
    """
    total = m * (t_f + t_b + t_w) + bubble_time
    return bubble_time / total if total else 0.0


def flush_bubble(p: int, m: int, v: int, *_: float) -> float:
    """GPipe and 1F1B: ``(p-1)/(m+p-1)`` of the step is bubble (Huang et al. 2019,
    sec. 2.3; Narayanan et al. 2021, sec. 2.2.1, stated there relative to the
    ideal time as ``(p-1)/m``)."""
    return (p - 1) / (m + p - 1)


def naive_bubble(p: int, m: int, v: int, *_: float) -> float:
    """Layer-wise model parallelism: one stage works at a time, ``(p-1)/p`` idle
    (Ultra-Scale Playbook, pipeline section)."""
    return (p - 1) / p


def _naive(p: int, m: int, v: int) -> list[list[Action]]:
    # Micro-batches run one after another: each finishes its backward on stage 0
    # before the next one starts, so only one stage is ever busy.
    return [[a for k in range(m) for a in (Action(r, F, k), Action(r, BW, k))] for r in range(p)]


def _gpipe(p: int, m: int, v: int) -> list[list[Action]]:
    # All forwards, then all backwards (Huang et al. 2019, fig. 2c): every stage
    # stashes the activations of all m micro-batches.
    return [
        [Action(r, F, k) for k in range(m)] + [Action(r, BW, k) for k in range(m)] for r in range(p)
    ]


def _one_f_one_b(p: int, m: int, v: int) -> list[list[Action]]:
    # PipeDream-Flush (Narayanan et al. 2021, sec. 2.2.1, fig. 4 top): rank r runs
    # p - r - 1 warm-up forwards, then alternates one forward and one backward, then
    # drains the remaining backwards. At most p - r micro-batches are in flight.
    rows = []
    for r in range(p):
        warmup = min(p - r - 1, m)
        row = [Action(r, F, k) for k in range(warmup)]
        for k in range(m - warmup):
            row += [Action(r, F, warmup + k), Action(r, BW, k)]
        row += [Action(r, BW, k) for k in range(m - warmup, m)]
        rows.append(row)
    return rows


register(
    ScheduleInfo(
        "naive",
        _naive,
        "layer-wise model parallelism, one stage busy at a time",
        bubble=naive_bubble,
        checked=True,
    )
)
register(
    ScheduleInfo(
        "gpipe",
        _gpipe,
        "all forwards, then all backwards (Huang et al. 2019)",
        bubble=flush_bubble,
        checked=True,
    )
)
register(
    ScheduleInfo(
        "1f1b",
        _one_f_one_b,
        "one forward, one backward (PipeDream-Flush; Narayanan et al. 2021)",
        bubble=flush_bubble,
        checked=True,
    )
)

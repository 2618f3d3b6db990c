"""DualPipe and DualPipeV: DeepSeek-V3's schedules, whose forward and backward overlap.

DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", sec. 3.2.1, and the DualPipe
repository (deepseek-ai/DualPipe, ``dualpipe.py`` and ``dualpipev.py``, whose
``step`` these generators follow action for action). Both keep two chunks per
rank, split some backwards into B and W to fill the ends (zero bubble, Qi et al.
2024), and in the steady state run a forward of one chunk and a full backward of
the other as one overlapped pair, ``F&B``
(:class:`~simulator.parallel.pipeline.actions.Pair`), so that one chunk's
all-to-alls and pipeline sends hide under the other's compute.

* ``dualpipe`` feeds micro-batches from **both ends**. The model is cut into
  ``p`` stages; rank ``r`` holds stage ``r`` of the pipeline that runs down
  the ranks and a *copy* of stage ``p-1-r`` for the one that runs up, so it
  holds twice 1F1B's parameters (the copies' gradients are added before every
  update, :mod:`simulator.parallel.dualcopy`). The first half of the
  micro-batches goes down (stages ``0 .. p-1``), the second half up (stages
  ``p .. 2p-1``, stage ``p+j`` a copy of stage ``j``, on rank ``p-1-j``).
  ``p`` and ``m`` even, ``m >= 2p``.
* ``dualpipev`` is the "cut-in-half" V-shape (Sea AI Lab's; the repository's
  DualPipeV): one direction, ``2p`` chunks, rank ``r`` holding chunks ``r``
  and ``2p-1-r`` as in ZB-V. ``m >= 2p``.

**Closed forms** (the repository's README, "Pipeline Bubbles and Memory Usage
Comparison", with ``PP`` stages, ``F`` a chunk's forward, ``B`` its full
backward, ``W`` its weight-gradient part and ``F&B`` an overlapped pair):
bubble ``(PP/2 - 1)(F&B + B - 3W)``, parameters ``2x`` per device, activations
``PP + 1`` per device -- for DualPipe ``PP = p`` stages on ``p`` devices, for
DualPipeV ``PP = 2p`` chunks on ``p`` devices. On the unit-time timeline a pair
takes ``F&B = F + B`` (:mod:`.actions`), and the bubble formula is exact -- every
rank idles exactly that long -- when a chunk's ``F`` equals its input-gradient
part ``B - W`` and ``W <= F``; the tests check it for ``p <= 8``, along with
the ``PP + 1`` chunk stashes on every rank.
"""

from __future__ import annotations

from math import isclose

from ...errors import LayoutError
from .actions import BW, Action, B, F, Item, Pair, W
from .schedules import ScheduleInfo, bubble_from_time, register

#: One step of DualPipe's program, by phase: ("F", phase), ("B", phase, zero-bubble),
#: ("W",) or ("FB", forward phase, backward phase).
Token = tuple


def program(half: int, h: int, chunks: int, middle: bool) -> list[Token]:
    """The repository's ``step`` on a rank of half-rank ``h`` (of ``half``) with
    ``chunks`` micro-batches per direction; ``middle``: it does not overlap its first
    pair (the last rank of DualPipeV, the two middle ranks of DualPipe)."""
    out: list[Token] = []
    out += [("F", 0)] * (2 * (half - h - 1))  # 1: nF0
    out += [("F", 0), ("F", 1)] * (h + 1)  # 2: nF0F1
    out += [("B", 1, True), ("W",), ("F", 1)] * (half - h - 1)  # 3: nB1W1F1
    for i in range(chunks - 2 * half + h + 1):  # 4: nF0B1F1B0
        if i == 0 and middle:  # "we don't overlap these two chunks to reduce bubble size"
            out += [("F", 0), ("B", 1, False)]
        else:
            out.append(("FB", 0, 1))
        out.append(("FB", 1, 0))
    out += [("B", 1, False), ("FB", 1, 0)] * (half - h - 1)  # 5: nB1F1B0
    split = False
    for i in range(h + 1):  # 6: nB1B0, the second half with zero bubble
        if i == (h + 1) // 2 and h % 2 == 1:
            split = True
        out.append(("B", 1, split))
        if i == (h + 1) // 2 and h % 2 == 0:
            split = True
        out.append(("B", 0, split))
    out += [("W",), ("B", 0, True)] * (half - h - 1)  # 7: nWB0
    out += [("W",)] * (h + 1)  # 8: nW
    return out


def actions(tokens: list[Token], stages: tuple[int, int], first: tuple[int, int]) -> list[Item]:
    """The program's tokens as actions: phase ``i`` runs ``stages[i]`` on micro-batches
    ``first[i]``, ``first[i] + 1``, ...; a W runs the oldest split backward's
    (DualPipe's ``WeightGradStore`` is a queue)."""
    forwards, backwards = list(first), list(first)
    pending: list[Action] = []
    out: list[Item] = []

    def forward(phase: int) -> Action:
        forwards[phase] += 1
        return Action(stages[phase], F, forwards[phase] - 1)

    def backward(phase: int, split: bool) -> Action:
        backwards[phase] += 1
        a = Action(stages[phase], B if split else BW, backwards[phase] - 1)
        if split:
            pending.append(a)
        return a

    for token in tokens:
        if token[0] == "F":
            out.append(forward(token[1]))
        elif token[0] == "B":
            out.append(backward(token[1], token[2]))
        elif token[0] == "W":
            b = pending.pop(0)
            out.append(Action(b.stage, W, b.mb))
        else:
            out.append(Pair(forward(token[1]), backward(token[2], False)))
    return out


def _dualpipev(p: int, m: int, v: int) -> list[list[Item]]:
    return [actions(program(p, r, m, r == p - 1), (r, 2 * p - 1 - r), (0, 0)) for r in range(p)]


def _dualpipe(p: int, m: int, v: int) -> list[list[Item]]:
    half, down = p // 2, m // 2
    rows = []
    for r in range(p):
        h = min(r, p - 1 - r)
        tokens = program(half, h, down, r in (half - 1, half))
        # the second half of the ranks sees the two directions the other way round
        stages, first = ((r, 2 * p - 1 - r), (0, down))
        if r >= half:
            stages, first = stages[::-1], first[::-1]
        rows.append(actions(tokens, stages, first))
    return rows


def _rules(name: str, even: bool):  # type: ignore[no-untyped-def]
    def rules(p: int, m: int, v: int) -> None:
        if v != 2:
            raise LayoutError(
                f"{name} places two chunks on every rank (rank r holds chunks r and 2p-1-r); "
                f"set chunks = 2 (got {v})"
            )
        if even and p % 2:
            raise LayoutError(
                f"{name} pairs rank r with rank p-1-r, feeding micro-batches from both ends: "
                f"it needs an even pp, got {p}"
            )
        if m < 2 * p or (even and m % 2):
            need = "an even number of micro-batches, " if even else ""
            raise LayoutError(
                f"{name} needs {need}at least 2 per rank (microbatches >= 2 pp = {2 * p}), got {m}"
            )

    return rules


def _bubble(halves: bool):  # type: ignore[no-untyped-def]
    def bubble(p: int, m: int, v: int, t_f: float, t_b: float, t_w: float) -> float | None:
        """The README's ``(PP/2 - 1)(F&B + B - 3W)`` with ``F&B = F + B`` (full backward
        ``B = t_b + t_w``), when exact (module docstring); else None."""
        if not (isclose(t_f, t_b, rel_tol=1e-9) and t_w <= t_f * (1 + 1e-9)):
            return None
        pairs = p // 2 - 1 if halves else p - 1
        full = t_b + t_w
        time = pairs * ((t_f + full) + full - 3 * t_w)
        # every rank runs two chunks: of every micro-batch (DualPipeV), of half of them
        return bubble_from_time(m if halves else 2 * m, t_f, t_b, t_w, time)

    return bubble


register(
    ScheduleInfo(
        "dualpipe",
        _dualpipe,
        "bidirectional DualPipe: micro-batches from both ends, F&B pairs overlapped (DeepSeek-V3)",
        split_backward=True,
        chunked=True,
        bubble=_bubble(halves=True),
        rules=_rules("dualpipe", even=True),
        checked=True,
        directions=2,
        paired=True,
    )
)
register(
    ScheduleInfo(
        "dualpipev",
        _dualpipev,
        "DualPipe cut in half: a V of 2p chunks, F&B pairs overlapped (DeepSeek-V3)",
        split_backward=True,
        chunked=True,
        bubble=_bubble(halves=False),
        rules=_rules("dualpipev", even=False),
        checked=True,
        paired=True,
    )
)

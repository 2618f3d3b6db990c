"""The tape: what one piece of layer code did, recorded while it ran.

Layers compute eagerly through :mod:`simulator.ops`; every op appends a
:class:`Kernel` (its GEMM FLOPs and bytes moved) to the active tape, and every
collective a tensor-parallel layer calls appends a :class:`CollectiveCall`
(its transfer plan). The runtime then *replays* the tape in simulated time:
runs of kernels become compute blocks, collectives become transfers over the
worker's links. So numbers come from running the math, and time from what the
math did (docs/design.md, key decision 2).

A worker is a lockstep tensor-parallel group: code that loops over the shards
marks which rank it runs for with :func:`on_rank`, and a compute segment lasts
as long as its slowest rank. Segments line up across ranks by position, not by
the order the loop visits them: between two collectives (or marks), each
rank's kernels are cut where the rank's tag changes, and piece ``k`` of every
rank joins segment ``k``. A loop that runs, rank by rank, a recomputed part
and then the rest therefore gives two segments -- all ranks' recomputation,
then all ranks' rest -- each as long as its slowest rank, not ``2t`` segments
one after another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Kernel:
    """One kernel launch.

    Attributes:
        name: the op (``matmul``, ``gelu`` ...).
        op_class: ``gemm``, ``elementwise`` or ``normalization`` (selects the
            efficiency factor), or ``fixed`` for a kernel of known duration.
        dtype: dtype of the computation (selects the peak FLOP/s).
        flops: GEMM FLOPs (2mnk); zero for non-GEMM ops.
        bytes: bytes read and written.
        seconds: a fixed duration, for ``fixed`` kernels (abstract models).
        model: the FLOPs the model's formula credits this kernel with, when they
            differ from those it executes (None: the same). A fused attention
            kernel skips the masked half of a causal score matrix and recomputes
            the scores in its backward; the formulas (Korthikanti et al. 2022,
            appendix A) count neither, so MFU does not depend on the kernel.
            Work other ranks repeat (replicated key-value heads) is credited
            once over them.
        shape: a GEMM's ``(batch, m, n, k)``: how it tiles the device
            (:mod:`simulator.engine.cost`); None for other kernels.
    """

    name: str
    op_class: str
    dtype: str
    flops: float
    bytes: float
    seconds: float = 0.0
    model: float | None = None
    shape: tuple[int, int, int, int] | None = None

    @property
    def model_flops(self) -> float:
        """The FLOPs this kernel counts towards model FLOPs (MFU)."""
        return self.flops if self.model is None else self.model


@dataclass(eq=False)
class ComputeSegment:
    """Consecutive kernels, grouped by tensor-parallel rank.

    ``tag`` is empty for ordinary work and ``"recompute"`` for a forward that
    activation recomputation runs again (it counts as hardware FLOPs, not model
    FLOPs). ``seconds`` and ``flops`` cache what the segment costs once the runtime
    has priced it.
    """

    kernels: dict[int, list[Kernel]] = field(default_factory=dict)
    tag: str = ""
    seconds: float | None = None
    flops: float = 0.0  # GEMM FLOPs of every rank together, set with ``seconds``


@dataclass(frozen=True)
class CollectiveCall:
    """A collective issued from inside layer code (tensor or sequence parallel).

    ``plan`` is the algorithm's list of transfers between group ranks
    (:class:`simulator.transfer.TransferPlan`); the runtime maps ranks to the
    worker's devices. The worker waits for it to end before its next compute,
    unless it has a ``handle`` (>= 0): then it runs alongside the compute that
    follows, until a :class:`Wait` for that handle.
    """

    op: str
    algorithm: str
    kind: str
    plan: Any
    label: str
    handle: int = -1


@dataclass(frozen=True)
class Wait:
    """Here the code needs the result of the asynchronous collective ``handle``."""

    handle: int


@dataclass(frozen=True)
class Mark:
    """A point in the tape that hooks care about, e.g. ``("grads_ready", block)``."""

    name: str
    value: Any = None


Item = ComputeSegment | CollectiveCall | Wait | Mark


class Tape:
    """An ordered record of compute segments, collectives and marks."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.rank = 0
        self.tag = ""
        # since the last collective or mark: the segments opened, and per rank the
        # position of its current piece and that piece's tag
        self._segments: list[ComputeSegment] = []
        self._piece: dict[int, tuple[int, str]] = {}
        self._handles = -1

    def kernel(self, kernel: Kernel) -> None:
        rank, tag = self.rank, self.tag
        piece = self._piece.get(rank)
        # a rank's pieces are cut where its tag changes
        index = 0 if piece is None else piece[0] if piece[1] == tag else piece[0] + 1
        self._piece[rank] = (index, tag)
        if index == len(self._segments):
            segment = ComputeSegment(tag=tag)
            self._segments.append(segment)
            self.items.append(segment)
        self._segments[index].kernels.setdefault(rank, []).append(kernel)

    def new_handle(self) -> int:
        """A number for an asynchronous collective, unique on this tape."""
        self._handles += 1
        return self._handles

    def append(self, item: Item) -> None:
        """Add ``item`` after everything recorded so far: kernels recorded next start a
        new segment (a whole segment may be appended too, as code that records
        ranks on tapes of their own joins them, :mod:`simulator.parallel.context`)."""
        self.items.append(item)
        self._segments = []
        self._piece = {}

    @property
    def handles(self) -> int:
        """The last handle given out (-1: none yet)."""
        return self._handles

    def open_segments(self) -> list[ComputeSegment]:
        """The segments kernels recorded now may join (none after a collective or mark)."""
        return self._segments

    def pieces(self) -> dict[int, tuple[int, str]]:
        """Per rank, the position among :meth:`open_segments` of its current piece and
        that piece's tag."""
        return dict(self._piece)

    def extend(
        self,
        items: list[Item],
        open_segments: list[ComputeSegment],
        pieces: dict[int, tuple[int, str]],
    ) -> None:
        """Add ``items`` as if they had just been recorded, leaving ``open_segments``
        (some of them) open with ``pieces`` (:mod:`simulator.parallel.reuse`)."""
        self.items.extend(items)
        self._segments = list(open_segments)
        self._piece = dict(pieces)

    def kernels(self, rank: int = 0) -> list[Kernel]:
        """Every kernel one rank ran, in order."""
        return [
            k
            for it in self.items
            if isinstance(it, ComputeSegment)
            for k in it.kernels.get(rank, [])
        ]

    def flops(self, rank: int = 0, tag: str | None = None) -> float:
        """GEMM FLOPs one rank executes; only segments with ``tag`` when it is given."""
        return sum(
            k.flops
            for it in self.items
            if isinstance(it, ComputeSegment) and (tag is None or it.tag == tag)
            for k in it.kernels.get(rank, [])
        )


_active: ContextVar[Tape | None] = ContextVar("active_tape", default=None)


@contextlib.contextmanager
def recording() -> Iterator[Tape]:
    """Record every op and collective run inside the block onto a new tape."""
    tape = Tape()
    token = _active.set(tape)
    try:
        yield tape
    finally:
        _active.reset(token)


@contextlib.contextmanager
def on_rank(rank: int) -> Iterator[None]:
    """Attribute the ops inside the block to tensor-parallel rank ``rank``."""
    tape = _active.get()
    if tape is None:
        yield
        return
    previous, tape.rank = tape.rank, rank
    try:
        yield
    finally:
        tape.rank = previous


@contextlib.contextmanager
def tagged(tag: str) -> Iterator[None]:
    """Tag the compute recorded inside the block (e.g. ``"recompute"``)."""
    tape = _active.get()
    if tape is None:
        yield
        return
    previous, tape.tag = tape.tag, tag
    try:
        yield
    finally:
        tape.tag = previous


def active() -> Tape | None:
    """The tape being recorded now (None outside :func:`recording`)."""
    return _active.get()


def new_handle() -> int:
    """A handle for an asynchronous collective on the active tape (0 outside one)."""
    tape = _active.get()
    return 0 if tape is None else tape.new_handle()


def record(item: Kernel | CollectiveCall | Wait | Mark) -> None:
    """Append to the active tape; outside :func:`recording` this does nothing."""
    tape = _active.get()
    if tape is None:
        return
    if isinstance(item, Kernel):
        tape.kernel(item)
    else:
        tape.append(item)

"""Shape-only runs trace each kind of block once.

A shape-only step runs the layer code for its shapes: the tape it leaves is
what the runtime replays (:mod:`simulator.ops.tape`). GPT-3 175B has 96
transformer layers that differ only in their names and in the seeds of their
dropout masks, so tracing each of them records 96 copies of one tape, and a
pipeline stage of 12 layers costs 12 traces of the same code.

While a :class:`BlockReuse` is active (:func:`reusing`, set by the runtime
around every shape-only trace), :func:`run_unit` runs a chunk's unit of work on
one block -- its forward, its backward (B and W fused), B or W -- for real the
first two times a kind of block meets a kind of input. Afterwards, for a block
of the same kind given inputs of the same shapes, it appends to the tape a copy
of what the second run recorded, with the block's own name in every label, and
returns a copy of its results built over the new inputs. The copies are
exact: the same kernels, collectives and segments in the same order, and
results with the same shapes and the same sharing of arrays, so a stage's
saved activations (:func:`~simulator.ops.arrays.tree_bytes`) count the same.

Two blocks are *of the same kind* when everything they hold is equal once
their names are set aside (:func:`~.block_key.block_key`): classes, parameter
shapes, settings, and which parts they share. A unit is never
reused when its first run recorded anything besides compute and collectives
(marks, expert exchanges), reported to a mixture of experts' tally, left a
collective to be waited for after it, or returned what cannot be copied.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..comm.layout import current_placement
from ..nn.context import current_batch, current_loss_scale, reports_made
from ..ops.arrays import ShapeArray
from ..ops.precision import linear_gemm_dtype
from ..ops.tape import CollectiveCall, ComputeSegment, Kernel, Tape, Wait, active
from .block_key import block_key, input_key

R = TypeVar("R")


class _Unclonable(Exception):
    """What a unit returned holds something :func:`_clone` does not copy."""


@dataclass
class _Unit:
    """What a unit recorded and returned, kept to be copied.

    ``inputs`` and ``result`` are private copies (the result built over those
    inputs) but for ``shared``: the arrays, by id, that two runs of the unit
    returned both (one the layer code caches and hands out again, say), which every
    copy shares too. ``items`` are the tape's new items; ``open`` the positions
    among them of the segments still open at the end and ``piece`` the tape's
    pieces then (:class:`~simulator.ops.tape.Tape`), so that kernels recorded
    next join the same segments; ``handles`` the asynchronous collectives the
    unit started.
    """

    name: str
    inputs: Any
    result: Any
    shared: dict[int, Any]
    items: list[Any]
    open: list[int]
    piece: dict[int, tuple[int, str]]
    handles: list[int]


class BlockReuse:
    """The units traced so far in one shape-only run, by block kind, inputs and context.

    A unit is run for real twice before it is copied: the arrays both runs return
    are shared (cached by the code, not made by the unit), and copies must share
    them too, since :func:`~simulator.ops.arrays.tree_bytes` counts an array once.
    """

    def __init__(self) -> None:
        #: by key, the leaves the first run returned (a list), then the unit (or None:
        #: never copied)
        self._units: dict[Hashable, _Unit | list[Any] | None] = {}
        self._blocks: dict[int, tuple[Any, Hashable]] = {}
        self._renames: dict[tuple[str, str], Callable[[str], str]] = {}
        #: units run for real and units copied (for tests and profiles)
        self.traced = 0
        self.copied = 0

    def kind(self, block: Any) -> Hashable:
        """:func:`block_key` of ``block``, worked out once per block."""
        hit = self._blocks.get(id(block))
        if hit is None:
            hit = self._blocks[id(block)] = (block, block_key(block))
        return hit[1]

    def run(self, unit: str, block: Any, inputs: Any, fn: Callable[[], R], tape: Tape) -> R:
        """``fn()``, or a copy of what an earlier run of the same unit did (module docstring)."""
        shapes = input_key(inputs)
        if shapes is None:
            return fn()
        key = (
            unit,
            self.kind(block),
            shapes,
            tape.tag,
            tape.rank,
            linear_gemm_dtype(),
            current_placement(),
            current_batch().size,
            current_loss_scale(),
        )
        known = self._units.get(key, _NEW)
        if known is None:
            return fn()
        if isinstance(known, _Unit):
            self.copied += 1
            return self._copy(known, block, inputs, tape)
        self.traced += 1
        start, handles, made = len(tape.items), tape.handles, reports_made()
        result = fn()
        items = tape.items[start:]
        if reports_made() != made or not _alone(items, handles):
            self._units[key] = None
        elif known is _NEW:
            self._units[key] = _leaves(result)
        else:
            self._units[key] = self._learn(block, inputs, result, known, tape, items)
        return result

    def _learn(
        self, block: Any, inputs: Any, result: Any, first: list[Any], tape: Tape, items: list[Any]
    ) -> _Unit | None:
        """The unit to copy, from its second run (``first``: the first run's leaves)."""
        second = _leaves(result)
        if second is None or len(first) != len(second):
            return None
        shared = {id(b): b for a, b in zip(first, second, strict=True) if a is b}
        memo = dict(shared)
        try:
            own_inputs = _clone(inputs, memo)
            own_result = _clone(result, memo)
        except _Unclonable:
            return None
        position = {id(item): k for k, item in enumerate(items)}
        open_ = [position[id(s)] for s in tape.open_segments()]
        # the tape's open segments go on growing (a loss after the last block joins
        # them): the unit keeps its segments as they are now
        own_items = [
            ComputeSegment({r: list(ks) for r, ks in item.kernels.items()}, item.tag)
            if isinstance(item, ComputeSegment)
            else item
            for item in items
        ]
        return _Unit(
            block.name,
            own_inputs,
            own_result,
            shared,
            own_items,
            open_,
            tape.pieces(),
            [item.handle for item in items if isinstance(item, CollectiveCall)
             and item.handle >= 0],
        )  # fmt: skip

    def _copy(self, known: _Unit, block: Any, inputs: Any, tape: Tape) -> Any:
        rename = self._rename(known.name, block.name)
        handles = {h: tape.new_handle() for h in known.handles}
        items: list[Any] = []
        for item in known.items:
            if isinstance(item, ComputeSegment):
                kernels = {r: [_renamed(k, rename) for k in ks] for r, ks in item.kernels.items()}
                items.append(ComputeSegment(kernels, item.tag))
            elif isinstance(item, CollectiveCall):
                handle = handles[item.handle] if item.handle >= 0 else -1
                items.append(replace(item, label=rename(item.label), handle=handle))
            else:
                items.append(Wait(handles[item.handle]))
        tape.extend(items, [items[k] for k in known.open], known.piece)
        memo = dict(known.shared)
        _pair(known.inputs, inputs, memo)
        return _clone(known.result, memo)

    def _rename(self, old: str, new: str) -> Callable[[str], str]:
        """``text`` with the whole word ``old`` (a block's name) made ``new``."""
        rename = self._renames.get((old, new))
        if rename is None:
            if old == new:
                rename = str
            else:
                pattern = re.compile(rf"(?<![\w]){re.escape(old)}(?![\w])")
                done: dict[str, str] = {}

                def rename(text: str) -> str:
                    hit = done.get(text)
                    if hit is None:
                        hit = done[text] = pattern.sub(new, text) if old in text else text
                    return hit

            self._renames[(old, new)] = rename
        return rename


_NEW: list[Any] = []  # a key not seen yet


def _alone(items: list[Any], handles: int) -> bool:
    """Whether a unit's ``items`` are compute and collectives only, and every collective
    it started (after handle ``handles``) it waited for."""
    started: set[int] = set()
    waited: set[int] = set()
    for item in items:
        if isinstance(item, CollectiveCall):
            if item.handle >= 0:
                started.add(item.handle)
        elif isinstance(item, Wait):
            waited.add(item.handle)
        elif not isinstance(item, ComputeSegment):
            return False  # a mark or an exchange: what hears it may care which block
    return started == waited and all(h > handles for h in started)


def _leaves(tree: Any) -> list[Any] | None:
    """The arrays in ``tree``, depth first (None: it holds what :func:`_clone` does not
    copy)."""
    out: list[Any] = []

    def walk(obj: Any) -> None:
        cls = type(obj)
        if cls is ShapeArray:
            out.append(obj)
        elif cls is list or cls is tuple:
            for x in obj:
                walk(x)
        elif cls is dict:
            for x in obj.values():
                walk(x)
        elif not (obj is None or isinstance(obj, (bool, int, float, str))):
            raise _Unclonable(cls.__qualname__)

    try:
        walk(tree)
    except _Unclonable:
        return None
    return out


_active: ContextVar[BlockReuse | None] = ContextVar("block_reuse", default=None)


@contextlib.contextmanager
def reusing(reuse: BlockReuse | None) -> Iterator[None]:
    """Inside the block, :func:`run_unit` reuses what ``reuse`` has seen (None: nothing)."""
    token = _active.set(reuse)
    try:
        yield
    finally:
        _active.reset(token)


def run_unit(unit: str, block: Any, inputs: Any, fn: Callable[[], R]) -> R:
    """``fn()``, the unit ``unit`` of ``block`` on ``inputs`` (everything ``fn`` reads
    that may change from block to block), or its copy (module docstring). Only where a
    :class:`BlockReuse` is active, a tape records, and no segment is open."""
    reuse, tape = _active.get(), active()
    if reuse is None or tape is None or tape.open_segments():
        return fn()
    return reuse.run(unit, block, inputs, fn, tape)


def _clone(obj: Any, memo: dict[int, Any]) -> Any:
    """A copy of ``obj`` (arrays, lists, tuples, dicts and plain values) sharing what
    ``obj`` shares, with the objects ``memo`` maps replaced by their images."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    hit = memo.get(id(obj))
    if hit is not None:
        return hit
    cls = type(obj)
    if cls is ShapeArray:
        new: Any = obj.fresh()
    elif cls is list:
        new = []
        memo[id(obj)] = new
        new.extend(_clone(x, memo) for x in obj)
        return new
    elif cls is tuple:
        new = tuple(_clone(x, memo) for x in obj)
    elif cls is dict:
        new = {}
        memo[id(obj)] = new
        new.update((k, _clone(v, memo)) for k, v in obj.items())
        return new
    else:
        raise _Unclonable(cls.__qualname__)
    memo[id(obj)] = new
    return new


def _pair(old: Any, new: Any, memo: dict[int, Any]) -> None:
    """Map every array and container of ``old`` to its place in ``new`` (equal shapes:
    :func:`_shapes`)."""
    if old is None or isinstance(old, (bool, int, float, str)):
        return
    memo[id(old)] = new
    if type(old) is list or type(old) is tuple:
        for a, b in zip(old, new, strict=True):
            _pair(a, b, memo)


def _renamed(kernel: Kernel, rename: Callable[[str], str]) -> Kernel:
    """``kernel`` under its renamed name (itself if the name stays)."""
    name = rename(kernel.name)
    if name == kernel.name:
        return kernel
    new = object.__new__(Kernel)  # dataclasses.replace, without its checks: a hot path
    new.__dict__.update(kernel.__dict__, name=name)
    return new

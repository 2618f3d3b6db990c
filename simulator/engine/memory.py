"""A memory ledger: what a device holds, by category, over time.

Every allocation belongs to one *category*, the unit reports and plots group
by: ``parameters``, ``gradients``, ``optimizer``, ``activations`` and
``buffers``. The ledger keeps the bytes in use per category, their peaks, the
breakdown at the overall peak and every change as a columnar record
``(time, category, delta)``, from which the memory plot draws the stacked
categories over time.

One ledger may stand for several devices that hold exactly the same bytes at
every moment -- the ranks of a tensor-parallel group, which work in lockstep
on equal shards (docs/design.md, key decisions 3 and 8) -- so a group costs one
record per change, not one per device.

The ledger never refuses an allocation: it records the first moment the device
goes over its capacity and keeps counting, so a run that does not fit still
reports its whole memory breakdown ("needs 2.9 TB, has 80 GB"). The runtime
calls :meth:`MemoryLedger.check` at the end and turns the overflow into an
:class:`~simulator.errors.OutOfMemoryError` naming the device, the request and
the breakdown.

Two ways to book: :meth:`MemoryLedger.change` takes a category index and a
signed byte count (the runtime's fast path, which remembers what it holds
itself); :meth:`MemoryLedger.allocate` and :meth:`MemoryLedger.free` take
*tags* such as ``activations/mb3`` -- the part before ``/`` is the category --
and remember what each tag holds (for code written by hand, as in notebook 01).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import OutOfMemoryError
from ..hardware.units import format_bytes

CATEGORIES = ("parameters", "gradients", "optimizer", "activations", "buffers")
PARAMETERS, GRADIENTS, OPTIMIZER, ACTIVATIONS, BUFFERS = range(len(CATEGORIES))


def category(tag: str) -> str:
    return tag.split("/", 1)[0]


class MemoryLedger:
    """Allocations of one device, or of devices in lockstep (see the module docstring)."""

    def __init__(
        self, device: int | tuple[int, ...], capacity: float, clock: Callable[[], float]
    ) -> None:
        self.devices = (device,) if isinstance(device, int) else tuple(device)
        self.capacity = capacity
        self._clock = clock
        self.current = 0
        self.peak = 0
        self.by_category = [0] * len(CATEGORIES)
        self.category_peak = [0] * len(CATEGORIES)
        self.peak_breakdown: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.by_tag: dict[str, int] = {}
        self.overflow: tuple[float, str, int] | None = None
        # the record: at time t, category c changed by delta bytes
        self.times = array("d")
        self.cats = array("b")
        self.deltas = array("q")

    @property
    def device(self) -> int:
        """The (first) device this ledger stands for."""
        return self.devices[0]

    # -- booking -----------------------------------------------------------------------
    def change(self, cat: int, delta: int, what: str = "") -> None:
        """Add ``delta`` bytes (negative to release) to category index ``cat``."""
        if not delta:
            return
        held = self.by_category[cat] + delta
        if held < 0:
            raise ValueError(
                f"device {self.device}: releasing {-delta} B of {CATEGORIES[cat]}, "
                f"holds {self.by_category[cat]} B"
            )
        self.by_category[cat] = held
        if held > self.category_peak[cat]:
            self.category_peak[cat] = held
        current = self.current = self.current + delta
        now = self._clock()
        if current > self.peak:
            self.peak = current
            self.peak_breakdown = dict(zip(CATEGORIES, self.by_category, strict=True))
            if current > self.capacity and self.overflow is None:
                self.overflow = (now, what or CATEGORIES[cat], delta)
        self.times.append(now)
        self.cats.append(cat)
        self.deltas.append(delta)

    def allocate(self, tag: str, nbytes: int) -> None:
        """Add ``nbytes`` under ``tag``; zero-byte requests are ignored."""
        if nbytes < 0:
            raise ValueError(f"negative allocation {nbytes} for {tag}")
        if nbytes == 0:
            return
        cat = self._category_index(tag)
        self.by_tag[tag] = self.by_tag.get(tag, 0) + nbytes
        self.change(cat, nbytes, tag)

    def free(self, tag: str, nbytes: int | None = None) -> None:
        """Release ``nbytes`` of ``tag`` (all of it when ``nbytes`` is None)."""
        held = self.by_tag.get(tag, 0)
        amount = held if nbytes is None else nbytes
        if amount > held:
            raise ValueError(f"device {self.device}: freeing {amount} B of {tag}, holds {held} B")
        if not amount:
            return
        if amount == held:
            del self.by_tag[tag]
        else:
            self.by_tag[tag] = held - amount
        self.change(self._category_index(tag), -amount, tag)

    @staticmethod
    def _category_index(tag: str) -> int:
        cat = category(tag)
        if cat not in CATEGORIES:
            raise ValueError(f"unknown memory category in tag {tag!r}; use one of {CATEGORIES}")
        return CATEGORIES.index(cat)

    # -- reading -----------------------------------------------------------------------
    @property
    def samples(self) -> list[tuple[float, int]]:
        """``(time, bytes in use)`` after every change (the last change at a time wins),
        starting with ``(0, 0)``."""
        return _samples(self.times, self.deltas)

    def breakdown(self) -> dict[str, int]:
        """The report: persistent model state, peak activations, overall peak."""
        return breakdown_of(self.category_peak, self.peak)

    def frozen(self) -> MemoryRecord:
        """What this ledger holds now, as a record that cannot change (a finished run's)."""

        def column(values: array, dtype: type) -> np.ndarray:
            out = np.frombuffer(values, dtype=dtype).copy()
            out.flags.writeable = False
            return out

        return MemoryRecord(
            self.devices,
            self.capacity,
            self.peak,
            tuple(self.category_peak),
            MappingProxyType(dict(self.peak_breakdown)),
            column(self.times, np.float64),
            column(self.cats, np.int8),
            column(self.deltas, np.int64),
        )

    def copy_for(self, device: int) -> MemoryLedger:
        """A ledger for ``device`` alone with this ledger's whole history (a lockstep
        group whose ranks start to hold different bytes gets one ledger each)."""
        twin = MemoryLedger(device, self.capacity, self._clock)
        for name in ("current", "peak", "overflow"):
            setattr(twin, name, getattr(self, name))
        twin.by_category = list(self.by_category)
        twin.category_peak = list(self.category_peak)
        twin.peak_breakdown = dict(self.peak_breakdown)
        twin.by_tag = dict(self.by_tag)
        twin.times, twin.cats, twin.deltas = (
            array("d", self.times),
            array("b", self.cats),
            array("q", self.deltas),
        )
        return twin

    def check(self) -> None:
        """Raise :class:`OutOfMemoryError` if the device ever went over capacity."""
        if self.overflow is None:
            return
        _, tag, nbytes = self.overflow
        parts = ", ".join(f"{cat} {format_bytes(b)}" for cat, b in self.peak_breakdown.items() if b)
        who = f"device {self.device}"
        if len(self.devices) > 1:
            who += f" (and devices {', '.join(map(str, self.devices[1:4]))}"
            who += ", ...)" if len(self.devices) > 4 else ", in lockstep)"
        message = (
            f"{who} is out of memory: needs {format_bytes(self.peak)} at its peak "
            f"({parts}) but has {format_bytes(self.capacity)}; it first overflowed allocating "
            f"{format_bytes(nbytes)} for {tag}. Fix: spread the model over more devices "
            f"(tp, pp, zero), recompute activations, or use fewer or smaller micro-batches"
        )
        raise OutOfMemoryError(
            message,
            self.device,
            (tag, nbytes),
            dict(self.peak_breakdown),
            int(self.capacity) if self.capacity != float("inf") else -1,
        )


@dataclass(frozen=True, eq=False)
class MemoryRecord:
    """A ledger of a finished run, frozen: what the metrics and the pictures read.

    Attributes:
        devices: the devices it stands for (in lockstep, they held the same bytes).
        capacity: bytes each of them has.
        peak: the most bytes held at once.
        category_peak: the most bytes of each category (:data:`CATEGORIES` order).
        peak_breakdown: bytes by category at the overall peak.
        times, cats, deltas: every change, ``(time, category index, bytes)``,
            as read-only arrays.
    """

    devices: tuple[int, ...]
    capacity: float
    peak: int
    category_peak: tuple[int, ...]
    peak_breakdown: Mapping[str, int]
    times: np.ndarray
    cats: np.ndarray
    deltas: np.ndarray

    @property
    def device(self) -> int:
        return self.devices[0]

    @property
    def samples(self) -> list[tuple[float, int]]:
        """:attr:`MemoryLedger.samples`."""
        return _samples(self.times.tolist(), self.deltas.tolist())

    def breakdown(self) -> dict[str, int]:
        """:meth:`MemoryLedger.breakdown`."""
        return breakdown_of(self.category_peak, self.peak)


def _samples(times: Iterable[float], deltas: Iterable[int]) -> list[tuple[float, int]]:
    out = [(0.0, 0)]
    current = 0
    for t, d in zip(times, deltas, strict=True):
        current += d
        if out[-1][0] == t:
            out[-1] = (t, current)
        else:
            out.append((t, current))
    return out


def breakdown_of(category_peak: Sequence[int], peak: int) -> dict[str, int]:
    """The report of :meth:`MemoryLedger.breakdown`: the peak of every category, and the
    overall ``peak``."""
    p = category_peak
    return {
        "parameters": p[PARAMETERS],
        "gradients": p[GRADIENTS],
        "optimizer": p[OPTIMIZER],
        "activations_peak": p[ACTIVATIONS],
        "buffers_peak": p[BUFFERS],
        "peak": peak,
    }

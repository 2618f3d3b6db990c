"""A memory ledger per device: what is allocated, by tag, over time.

Tags name what the bytes are for; the part before ``/`` is the category that
reports and plots group by: ``parameters``, ``gradients``, ``optimizer``,
``activations`` (``activations/mb3`` is micro-batch 3's stash) and ``buffers``.

The ledger never refuses an allocation: it records the first moment the device
goes over its capacity and keeps counting, so a run that does not fit still
reports its whole memory breakdown ("needs 2.9 TB, has 80 GB"). The runtime
calls :meth:`MemoryLedger.check` at the end and turns the overflow into an
:class:`~simulator.errors.OutOfMemoryError` naming the device, the request and
the breakdown.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import OutOfMemoryError

CATEGORIES = ("parameters", "gradients", "optimizer", "activations", "buffers")


def category(tag: str) -> str:
    return tag.split("/", 1)[0]


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.50 KiB``; binary units, as memory capacities are quoted."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class MemoryLedger:
    """Allocations of one device (see the module docstring)."""

    def __init__(self, device: int, capacity: float, clock: Callable[[], float]) -> None:
        self.device = device
        self.capacity = capacity
        self._clock = clock
        self.by_tag: dict[str, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_breakdown: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.category_peak: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self._by_category: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.samples: list[tuple[float, int]] = [(0.0, 0)]
        self.overflow: tuple[float, str, int] | None = None

    def allocate(self, tag: str, nbytes: int) -> None:
        """Add ``nbytes`` under ``tag``; zero-byte requests are ignored."""
        if nbytes < 0:
            raise ValueError(f"negative allocation {nbytes} for {tag}")
        if nbytes == 0:
            return
        self._change(tag, nbytes)
        if self.current > self.capacity and self.overflow is None:
            self.overflow = (self._clock(), tag, nbytes)

    def free(self, tag: str, nbytes: int | None = None) -> None:
        """Release ``nbytes`` of ``tag`` (all of it when ``nbytes`` is None)."""
        held = self.by_tag.get(tag, 0)
        amount = held if nbytes is None else nbytes
        if amount > held:
            raise ValueError(f"device {self.device}: freeing {amount} B of {tag}, holds {held} B")
        if amount:
            self._change(tag, -amount)

    def _change(self, tag: str, delta: int) -> None:
        cat = category(tag)
        if cat not in self._by_category:
            raise ValueError(f"unknown memory category in tag {tag!r}; use one of {CATEGORIES}")
        new = self.by_tag.get(tag, 0) + delta
        if new:
            self.by_tag[tag] = new
        else:
            self.by_tag.pop(tag, None)
        self.current += delta
        self._by_category[cat] += delta
        if self._by_category[cat] > self.category_peak[cat]:
            self.category_peak[cat] = self._by_category[cat]
        if self.current > self.peak:
            self.peak = self.current
            self.peak_breakdown = dict(self._by_category)
        now = self._clock()
        if self.samples[-1][0] == now:
            self.samples[-1] = (now, self.current)
        else:
            self.samples.append((now, self.current))

    def breakdown(self) -> dict[str, int]:
        """The report: persistent model state, peak activations, overall peak."""
        return {
            "parameters": self.category_peak["parameters"],
            "gradients": self.category_peak["gradients"],
            "optimizer": self.category_peak["optimizer"],
            "activations_peak": self.category_peak["activations"],
            "buffers_peak": self.category_peak["buffers"],
            "peak": self.peak,
        }

    def check(self) -> None:
        """Raise :class:`OutOfMemoryError` if the device ever went over capacity."""
        if self.overflow is None:
            return
        _, tag, nbytes = self.overflow
        parts = ", ".join(f"{cat} {format_bytes(b)}" for cat, b in self.peak_breakdown.items() if b)
        message = (
            f"device {self.device} is out of memory: needs {format_bytes(self.peak)} at its peak "
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

"""The timeline: every compute block, transfer and memory change, timestamped.

The engine appends :class:`Event` objects while the simulation runs; metrics,
Gantt charts and the Chrome trace are all computed from this one record
(DESIGN.md, key decision 6). Chrome trace-event JSON
(https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU)
opens in Perfetto (ui.perfetto.dev) and chrome://tracing: one process per
device, one thread per stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

#: Lanes (streams) of a device.
COMPUTE, COMM = "compute", "comm"


class Event(NamedTuple):
    """Something a device did from ``start`` to ``end`` (seconds) on one lane.

    ``cat`` is the kind: ``F``/``B``/``W``/``BW``/``opt``/``recompute`` for
    compute, ``dp``/``tp``/``pp``/... for communication. ``args`` holds details
    such as the micro-batch, the chunk, bytes, the peer and the link. (A named
    tuple: large runs record hundreds of thousands of these.)
    """

    device: int
    lane: str
    start: float
    end: float
    name: str
    cat: str
    args: dict[str, Any]

    @property
    def duration(self) -> float:
        return self.end - self.start


class Trace:
    """An append-only list of events plus per-device memory samples."""

    def __init__(self, num_devices: int) -> None:
        self.num_devices = num_devices
        self.events: list[Event] = []
        self.memory: dict[int, list[tuple[float, int]]] = {}

    def add(
        self, device: int, lane: str, start: float, end: float, name: str, cat: str, **args: Any
    ) -> None:
        self.events.append(Event(device, lane, start, end, name, cat, args))

    def window(self, start: float, end: float) -> Trace:
        """The events that overlap ``[start, end]`` (memory samples are kept whole)."""
        sub = Trace(self.num_devices)
        sub.events = [
            e for e in self.events if (e.end > start and e.start < end) or e.start == e.end == start
        ]
        sub.memory = self.memory
        return sub

    def to_chrome(self) -> dict[str, Any]:
        """Chrome trace-event JSON (a dict ready for ``json.dump``)."""
        out: list[dict[str, Any]] = []
        for d in range(self.num_devices):
            out.append(
                {
                    "ph": "M",
                    "name": "process_name",
                    "pid": d,
                    "tid": 0,
                    "args": {"name": f"device {d}"},
                }
            )
            out.append(
                {
                    "ph": "M",
                    "name": "process_sort_index",
                    "pid": d,
                    "tid": 0,
                    "args": {"sort_index": d},
                }
            )
        threads: dict[tuple[int, str], list[float]] = {}
        tids: dict[tuple[int, str, int], int] = {}
        for e in sorted(
            self.events, key=lambda e: (e.device, e.lane != COMPUTE, e.start, e.end, e.name)
        ):
            # Chrome needs the events of one thread nested; overlapping messages
            # (full duplex, two ports) go to extra threads of the same lane.
            ends = threads.setdefault((e.device, e.lane), [])
            slot = next((i for i, t in enumerate(ends) if t <= e.start), None)
            if slot is None:
                ends.append(e.end)
                slot = len(ends) - 1
            else:
                ends[slot] = e.end
            key = (e.device, e.lane, slot)
            if key not in tids:
                tids[key] = len([k for k in tids if k[0] == e.device]) + 1
                label = e.lane if slot == 0 else f"{e.lane} {slot + 1}"
                out.append(
                    {
                        "ph": "M",
                        "name": "thread_name",
                        "pid": e.device,
                        "tid": tids[key],
                        "args": {"name": label},
                    }
                )
            out.append(
                {
                    "ph": "X",
                    "name": e.name,
                    "cat": e.cat,
                    "pid": e.device,
                    "tid": tids[key],
                    "ts": e.start * 1e6,
                    "dur": e.duration * 1e6,
                    "args": e.args,
                }
            )
        for d, samples in sorted(self.memory.items()):
            for t, b in samples:
                out.append(
                    {
                        "ph": "C",
                        "name": "memory",
                        "pid": d,
                        "tid": 0,
                        "ts": t * 1e6,
                        "args": {"MiB": b / 2**20},
                    }
                )
        return {"traceEvents": out, "displayTimeUnit": "ms"}

    def write_chrome(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_chrome(), separators=(",", ":")))

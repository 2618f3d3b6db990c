"""The timeline: every compute block and transfer, timestamped, in columns.

The engine records what devices did while the simulation runs; Gantt charts,
the Chrome trace and the per-device views are all computed from this one
record (docs/design.md, key decision 6). The record is *columnar* and *grouped*
(key decision 8): one row per thing that happened, naming the **group** of
devices that did it in lockstep (a tensor-parallel group, or every replica of
a folded data-parallel run), a **label** (lane, name, kind and details,
interned: a million rows share a few thousand labels), its start and end, and
the **micro-batch** it worked on (or -1), which a label's name shows where it
writes ``{mb}``: the forward of stage 2 is one label, ``2F{mb}``, for every
micro-batch. A message between two groups names the receiving group as its
**peer**: rank ``i`` of one sends to rank ``i`` of the other. A row stores its
*track* -- the interned (group, peer, label) -- its start, end and
micro-batch: four numbers.

:attr:`Trace.events` expands the rows into one :class:`Event` per device, the
view pictures and exports want; it is built on demand and cached.

When the run is over, :meth:`Trace.seal` makes the trace read-only: a finished
run's record cannot be written to by mistake.

:meth:`Trace.write_chrome` writes the Chrome trace that Perfetto opens
(:mod:`simulator.engine.chrome`).
"""

from __future__ import annotations

import io
import json
from array import array
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn

import numpy as np

#: Lanes (streams) of a device.
COMPUTE, COMM = "compute", "comm"
NO_PEER = -1


class Event(NamedTuple):
    """Something a device did from ``start`` to ``end`` (seconds) on one lane.

    ``cat`` is the kind: ``F``/``B``/``W``/``BW``/``opt``/``recompute`` for
    compute, ``dp``/``tp``/``pp``/... for communication. ``args`` holds details
    such as the micro-batch, the chunk, bytes, the peer and the link.
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


class Label(NamedTuple):
    """What a row of the trace is: its lane, name, kind and details."""

    lane: str
    name: str
    cat: str
    args: tuple[tuple[str, Any], ...]


class Columns(NamedTuple):
    """The trace's rows as numpy columns (one entry per row)."""

    group: np.ndarray
    peer: np.ndarray
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray


def _rows_appender(
    track: array, start: array, end: array, mb: array
) -> Callable[[int, float, float, int], None]:
    """A trace's ``record`` for these columns: a row per compute and per message of a
    run, so their ``append`` methods are looked up once, here."""
    track_append, start_append, end_append, mb_append = (
        track.append, start.append, end.append, mb.append
    )  # fmt: skip

    def record(track: int, start: float, end: float, mb: int = -1) -> None:
        track_append(track)
        start_append(start)
        end_append(end)
        mb_append(mb)

    return record


class Trace:
    """Columnar rows of (group, peer, label, start, end); see the module docstring."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, ...]] = []
        self._group_ids: dict[tuple[int, ...], int] = {}
        self.labels: list[Label] = []
        self._label_ids: dict[Label, int] = {}
        self.tracks: list[tuple[int, int, int]] = []  # (group, peer, label)
        self._track_ids: dict[tuple[int, int, int], int] = {}
        self.track = array("q")
        self.start = array("d")
        self.end = array("d")
        self.mb = array("q")
        #: ``record(track, start, end, mb=-1)``: append one row (the engine's hot path:
        #: ``track`` comes from :meth:`track_id`), with the columns' appends bound once
        self.record = _rows_appender(self.track, self.start, self.end, self.mb)
        #: device -> its MemoryLedger (a MemoryRecord once sealed), for memory counters
        self.ledgers: Mapping[int, Any] = {}
        self._events: tuple[int, list[Event]] = (0, [])
        self.sealed = False

    # -- recording ---------------------------------------------------------------------
    def group_id(self, devices: tuple[int, ...]) -> int:
        """The id of a group of devices (created on first use)."""
        gid = self._group_ids.get(devices)
        if gid is None:
            gid = self._group_ids[devices] = len(self.groups)
            self.groups.append(devices)
        return gid

    def label_id(self, lane: str, name: str, cat: str, **args: Any) -> int:
        """The id of a label (created on first use); ``args`` values must be hashable."""
        key = Label(lane, name, cat, tuple(args.items()))
        lid = self._label_ids.get(key)
        if lid is None:
            lid = self._label_ids[key] = len(self.labels)
            self.labels.append(key)
        return lid

    def track_id(self, group: int, label: int, peer: int = NO_PEER) -> int:
        """The id of a track: what a group did (``label``), to ``peer`` for a message."""
        key = (group, peer, label)
        tid = self._track_ids.get(key)
        if tid is None:
            tid = self._track_ids[key] = len(self.tracks)
            self.tracks.append(key)
        return tid

    def add(
        self, device: int, lane: str, start: float, end: float, name: str, cat: str, **args: Any
    ) -> None:
        """Append one row for a single device."""
        label = self.label_id(lane, name, cat, **args)
        self.record(self.track_id(self.group_id((device,)), label), start, end)

    def __len__(self) -> int:
        return len(self.start)

    def seal(self, ledgers: Mapping[int, Any]) -> None:
        """The run is over: from now on every method that records raises, and the memory
        counters come from ``ledgers`` (the frozen records of the run's ledgers).

        The recording methods are replaced on this object, not checked on every call:
        the hot path (``record``) stays as lean as it was.
        """
        self.ledgers = MappingProxyType(dict(ledgers))
        self.sealed = True
        for name in ("record", "add", "group_id", "label_id", "track_id"):
            setattr(self, name, _sealed)

    # -- reading -----------------------------------------------------------------------
    @property
    def devices(self) -> list[int]:
        """Every device that appears in the trace, sorted."""
        return sorted({d for g in self.groups for d in g})

    @property
    def events(self) -> list[Event]:
        """One :class:`Event` per device per row, in recording order."""
        if self._events[0] != len(self):
            self._events = (len(self), list(self.expand(range(len(self)))))
        return self._events[1]

    def columns(self) -> Columns:
        """Every row's group, peer group (:data:`NO_PEER` but for messages), label id,
        start and end, as numpy arrays (views, no copies of the times)."""
        track = np.frombuffer(self.track, dtype=np.int64)
        tracks = np.array(self.tracks, dtype=np.int64).reshape(-1, 3)[track]
        return Columns(
            tracks[:, 0],
            tracks[:, 1],
            tracks[:, 2],
            np.frombuffer(self.start, dtype=float),
            np.frombuffer(self.end, dtype=float),
        )

    def select(
        self, devices: Iterable[int] | None = None, lo: float = -np.inf, hi: float = np.inf
    ) -> list[Event]:
        """The events of ``devices`` (all when None) that overlap ``[lo, hi]``."""
        cols = self.columns()
        start, end = cols.start, cols.end
        keep = ((end > lo) & (start < hi)) | ((start == end) & (start == lo))
        wanted = None if devices is None else set(devices)
        if wanted is not None:
            # only rows of groups (or, for messages, peer groups) that hold a wanted device
            touch = np.array([bool(wanted.intersection(g)) for g in self.groups] + [False])
            keep &= touch[cols.group] | touch[cols.peer]
        rows = np.flatnonzero(keep)
        return list(self.expand(rows.tolist(), wanted))

    def expand(self, rows: Iterable[int], wanted: set[int] | None = None) -> Iterable[Event]:
        """The events of ``rows`` (indices), in order: of every device of each row's group
        (and, for a message, its peer group), or only of the ``wanted`` devices."""
        groups, labels, tracks = self.groups, self.labels, self.tracks
        for i in rows:
            group, peer, label = tracks[self.track[i]]
            lane, name, cat, items = labels[label]
            args = dict(items)
            mb = self.mb[i]
            if mb >= 0:
                name = name.format(mb=mb)
                args["mb"] = mb
            start, end = self.start[i], self.end[i]
            devices = groups[group]
            per_rank = args.get("bytes")
            uniform = not isinstance(per_rank, tuple)
            if lane == COMPUTE:
                for d in devices:
                    if wanted is None or d in wanted:
                        yield Event(d, lane, start, end, name, cat, args)
            elif peer == NO_PEER:
                for r, d in enumerate(devices):
                    if wanted is None or d in wanted:
                        one = args if uniform else {**args, "bytes": per_rank[r]}
                        yield Event(
                            d, lane, start, end, name, cat, {**one, "direction": "collective"}
                        )
            else:
                for a, b in zip(devices, groups[peer], strict=True):
                    send = {**args, "peer": b, "direction": "send"}
                    if wanted is None or a in wanted:
                        yield Event(a, lane, start, end, name, cat, send)
                    if wanted is None or b in wanted:
                        recv = {**send, "peer": a, "direction": "recv"}
                        yield Event(b, lane, start, end, name, cat, recv)

    def event(self, row: int, device: int) -> Event:
        """Device ``device``'s event of row ``row`` (one device of :meth:`expand`)."""
        group, peer, label = self.tracks[self.track[row]]
        lane, name, cat, items = self.labels[label]
        args = dict(items)
        mb = self.mb[row]
        if mb >= 0:
            name = name.format(mb=mb)
            args["mb"] = mb
        devices = self.groups[group]
        if lane != COMPUTE:
            if peer == NO_PEER:
                per_rank = args.get("bytes")
                if isinstance(per_rank, tuple):
                    args["bytes"] = per_rank[devices.index(device)]
                args["direction"] = "collective"
            elif device in devices:
                args["peer"] = self.groups[peer][devices.index(device)]
                args["direction"] = "send"
            else:
                args["peer"] = devices[self.groups[peer].index(device)]
                args["direction"] = "recv"
        return Event(device, lane, self.start[row], self.end[row], name, cat, args)

    def window(self, start: float, end: float) -> list[Event]:
        """The events that overlap ``[start, end]``."""
        return self.select(None, start, end)

    # -- Chrome trace ------------------------------------------------------------------
    def to_chrome(self, every_device: bool = False) -> dict[str, Any]:
        """The Chrome trace as a dict (:mod:`simulator.engine.chrome`): one process per
        group of devices simulated as one, or, with ``every_device``, per device."""
        from . import chrome

        text = io.StringIO()
        chrome.write(self, text, every_device)
        return json.loads(text.getvalue())

    def write_chrome(self, path: str | Path, every_device: bool = False) -> int:
        """Write the Chrome trace to ``path`` (gzip-compressed when it ends in ``.gz``),
        as :meth:`to_chrome` forms it; returns the number of events written."""
        from . import chrome

        return chrome.write_file(self, path, every_device)


def _sealed(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise RuntimeError("the trace of a finished run is read-only")


def span(devices: tuple[int, ...]) -> str:
    """``(0, 1, 2, 3, 8)`` -> ``"0-3, 8"``."""
    parts, start = [], None
    for i, d in enumerate(devices):
        if start is None:
            start = d
        if i + 1 == len(devices) or devices[i + 1] != d + 1:
            parts.append(str(start) if start == d else f"{start}-{d}")
            start = None
    return ", ".join(parts)

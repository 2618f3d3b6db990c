"""What the pictures read from a run: which devices to show, what each did in the last
step, and what its idle time was.

Everything here reads the finished run's record (``result.run``, a
:class:`~simulator.runtime.record.RunRecord`), never a live simulation. The
metrics split every device's step into compute, exposed communication and
bubble (docs/design.md, "Definitions"). A Gantt chart has to show *where* in
the step each part lies: compute is in the trace, and exposed communication
is the stretches the runtime recorded as they happened
(:meth:`~simulator.runtime.workers.SimWorker.expose`) -- the very stretches
the metrics' ``exposed_comm_s`` adds up, so the picture is as exact as the
numbers. What is left of the idle time is bubble.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..engine.trace import COMPUTE, NO_PEER, Event

#: The most rows a chart shows; larger runs show a subset and say which.
MAX_ROWS = 16
#: Tensor-parallel ranks compute in lockstep: above this many devices, rank 0 stands for them.
LOCKSTEP_ROWS = 8

Lanes = tuple[list[Event], list[Event]]  # a device's compute and communication events


# -- which devices -----------------------------------------------------------------------
def _spread(n: int, k: int) -> list[int]:
    """``k`` of ``0 .. n-1`` evenly spread, the first and the last included."""
    if n <= k:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _plural(n: int, word: str) -> str:
    return f"{word}{'s' if n > 1 else ''}"


def shown_devices(result: Any, limit: int = MAX_ROWS) -> tuple[list[int], str]:
    """The devices a picture of ``result`` shows, and a note saying which (empty when all).

    A small run shows every device. A large one shows tensor-parallel rank 0
    only (its group computes in lockstep, so the other ranks' rows repeat it),
    pipeline ranks spread from the first to the last, and data-parallel
    replicas spread likewise -- one replica when they are identical and were
    simulated once (folded). Failed devices and stragglers are always shown.
    """
    plan = result.plan
    s, mesh = plan.strategy, plan.mesh
    devices = sorted(d for w in plan.workers for d in w.devices)
    folded = result.metrics.get("folded_replicas", 1) > 1
    lockstep = s.tp * s.cp
    if len(devices) <= LOCKSTEP_ROWS or (len(devices) <= limit and lockstep == 1 and not folded):
        return devices, ""
    stages = _spread(s.pp, limit)
    replicas = [0] if folded else _spread(s.dp, max(1, limit // len(stages)))
    parts = []
    if s.tp > 1 and s.cp > 1:
        parts.append("tensor- and context-parallel rank 0 (the worker's ranks work in lockstep)")
    elif s.cp > 1:
        parts.append("context-parallel rank 0 (its group works in lockstep)")
    elif s.tp > 1:
        parts.append("tensor-parallel rank 0 (its group works in lockstep)")
    if s.pp > 1:
        parts.append(
            "every pipeline rank"
            if len(stages) == s.pp
            else f"{len(stages)} of {s.pp} pipeline ranks"
        )
    if folded:
        parts.append(f"data-parallel replica 0 (the {s.dp} replicas are identical)")
    elif s.dp > 1:
        parts.append(
            "every replica"
            if len(replicas) == s.dp
            else f"data-parallel {_plural(len(replicas), 'replica')} "
            f"{', '.join(map(str, replicas))} of {s.dp}"
        )
    chosen = {mesh.device(dp=r, tp=0, pp=p) for r in replicas for p in stages}
    used = set(devices)
    chosen |= {d for d in [*failures(result), *stragglers(result)] if d in used}
    shown = sorted(chosen)
    return shown, f"{len(shown)} of {len(devices)} devices: " + ", ".join(parts)


def coordinates(plan: Any, d: int) -> str:
    """Device ``d``'s place in the mesh, ``d1 t0 p2`` (``d1 c3 t0 p2`` when the strategy
    splits the sequence)."""
    c = plan.mesh.coords(d)
    axes = ("dp", "cp", "tp", "pp") if plan.strategy.cp > 1 else ("dp", "tp", "pp")
    return " ".join(f"{a[0]}{c[a]}" for a in axes)


def layout_name(m: dict[str, Any]) -> str:
    """A results entry's sizes, ``dp2 x tp8 x pp4`` (with ``cp`` when it splits the
    sequence)."""
    axes = ("dp", "cp", "tp", "pp") if m.get("cp", 1) > 1 else ("dp", "tp", "pp")
    return " x ".join(f"{a}{m.get(a, 1)}" for a in axes)


def failures(result: Any) -> dict[int, float]:
    """Device -> the simulated time it failed."""
    return dict(result.run.failed)


def stragglers(result: Any) -> dict[int, Any]:
    """Device -> its straggler fault (``factor``, ``jitter``), if the run had any."""
    return dict(result.run.stragglers)


def chunk_of(plan: Any) -> dict[int, int]:
    """Model stage -> its chunk on its rank (0, 1, ...): interleaved rank ``r`` holds
    stages ``r, r+p, ...``, ZB-V rank ``r`` stages ``r`` and ``2p-1-r``."""
    held: dict[int, int] = {}
    out = {}
    for stage, rank in sorted(plan.stage_rank.items()):
        out[stage] = held[rank] = held.get(rank, -1) + 1
    return out


# -- what each device did ----------------------------------------------------------------
def step_events(result: Any, devices: Sequence[int]) -> dict[int, Lanes]:
    """Each device's compute and communication events of the last step, in time order.

    A failed device did nothing after it failed; its last block was booked
    whole when it started, so it is cut at the failure here."""
    trace = result.trace
    return {
        d: ([b.event(trace, d) for b in compute], [b.event(trace, d) for b in comm])
        for d, (compute, comm) in step_blocks(result, devices, -math.inf).items()
    }


class Block(NamedTuple):
    """What a chart draws of a device's step: trace row ``row`` (the first of the
    pieces it merges) from ``start`` to ``end``, named ``name`` (empty when merged
    pieces differ), of kind ``cat``; ``more`` is a compute block's tensor-parallel
    layer, or a communication block's direction."""

    row: int
    start: float
    end: float
    name: str
    cat: str
    more: str

    def event(self, trace: Any, device: int) -> Event:
        """The block as device ``device``'s event (its first piece's, stretched)."""
        return trace.event(self.row, device)._replace(
            start=self.start, end=self.end, name=self.name
        )


Blocks = tuple[list[Block], list[Block]]  # compute, communication


def step_blocks(result: Any, devices: Sequence[int], gap: float) -> dict[int, Blocks]:
    """:func:`step_events` as blocks (:class:`Block`), the pieces closer than ``gap``
    merged as a chart draws them (it cannot show what is narrower than a pixel), and
    each compute block's tensor-parallel layer (:func:`layers_of`; empty where its
    pieces' layers differ).

    Compute pieces merge with the next piece of the same action and kind.
    Communication closer than ``gap`` is one block: a ring's steps, a run of small
    collectives; pipeline messages merge only with pieces of the same message
    (each has its micro-batch's colour), collectives of different names into an
    unnamed block of their kind. The trace's rows are merged before they become
    events (and a chart makes events only of the blocks wide enough to label), so a
    chart of a million rows costs what its few thousand blocks cost.
    """
    lo, hi = result.step_window
    failed = failures(result)
    trace = result.trace
    cols = trace.columns()
    start, end = cols.start, cols.end
    rows = np.flatnonzero(((end > lo) & (start < hi)) | ((start == end) & (start == lo)))
    rows = rows[np.argsort(start[rows], kind="stable")]
    groups, labels = trace.groups, trace.labels
    # what a row is, by its track: the same for every row of it
    kind = [
        (group, peer, label, *labels[label][:3]) for group, peer, label in trace.tracks
    ]  # (group, peer, label, lane, name, kind)
    held: dict[int, list[int]] = {d: [] for d in devices}  # device -> the groups it is in
    for g, members in enumerate(groups):
        for d in held.keys() & members:
            held[d].append(g)
    row_group, row_peer = cols.group[rows], cols.peer[rows]
    row_track = np.frombuffer(trace.track, dtype=np.int64)[rows]
    row_start, row_end = start[rows], end[rows]
    row_mb = np.frombuffer(trace.mb, dtype=np.int64)[rows]
    names: dict[tuple[int, int], str] = {}
    layers: dict[str, str] = {}
    out: dict[int, Blocks] = {}
    for d in devices:
        inside = np.zeros(len(groups) + 1, dtype=bool)  # the last: no peer
        inside[held[d]] = True
        mine = inside[row_group] | inside[row_peer]
        stop = failed.get(d, hi)
        compute: list[list[Any]] = []  # [row, start, end, name, kind]
        comm: list[list[Any]] = []  # [row, start, end, name, kind, direction]
        starts: dict[float, str] = {}  # when a collective of a layer starts
        last: list[Any] | None = None  # the last communication block
        for i, s, e, t, mb in zip(
            rows[mine].tolist(), row_start[mine].tolist(), row_end[mine].tolist(),
            row_track[mine].tolist(), row_mb[mine].tolist(), strict=True,
        ):  # fmt: skip
            group, peer, label, lane, name, cat = kind[t]
            if s > stop or cat == "failed":
                continue
            if mb >= 0:
                name = names.get((label, mb)) or names.setdefault((label, mb), name.format(mb=mb))
            if stop < e:
                e = stop
            if lane == COMPUTE:
                compute.append([i, s, e, name, cat])
                continue
            if cat == "tp":
                layer = layers.get(name)
                if layer is None:
                    layer = layers[name] = layer_of(name)
                if layer:
                    starts.setdefault(s, layer)
            way = "collective" if peer == NO_PEER else "send" if inside[group] else "recv"
            if (
                last is not None
                and last[4] == cat
                and (cat != "pp" or (last[3], last[5]) == (name, way))
                and s - last[2] <= gap
            ):
                if e > last[2]:
                    last[2] = e
                if last[3] != name:
                    last[3] = ""
            else:
                last = [i, s, e, name, cat, way]
                comm.append(last)
        merged: list[list[Any]] = []  # [row, start, end, name, kind, layer]
        block: list[Any] | None = None
        for i, s, e, name, cat in compute:
            layer = starts.get(e) or starts.get(s, "")
            if block is not None and block[3] == name and block[4] == cat and s - block[2] <= gap:
                if e > block[2]:
                    block[2] = e
                if block[5] != layer:
                    block[5] = ""
            else:
                block = [i, s, e, name, cat, layer]
                merged.append(block)
        out[d] = ([Block(*b) for b in merged], [Block(*b) for b in comm])
    return out


# -- what its idle time was --------------------------------------------------------------
def exposed_by_device(result: Any, devices: Sequence[int]) -> dict[int, list[tuple[float, float]]]:
    """Each device's exposed-communication stretches in the last step: the idle time in
    which it waited for a collective of its own group while that collective ran, as
    the runtime recorded it (module docstring)."""
    return {d: list(map(tuple, a.tolist())) for d, a in exposed_arrays(result, devices).items()}


def exposed_arrays(result: Any, devices: Sequence[int]) -> dict[int, np.ndarray]:
    """:func:`exposed_by_device` as arrays, ``(start, end)`` per row."""
    out: dict[int, np.ndarray] = {d: np.empty((0, 2)) for d in devices}
    for worker in result.run.steps[-1].workers:
        for d in worker.devices:
            if d in out:
                out[d] = np.asarray(worker.exposed, dtype=float).reshape(-1, 2)
    return out


# -- names ------------------------------------------------------------------------------
SHORT_OPS = {
    "all-reduce": "AR",
    "reduce-scatter": "RS",
    "all-gather": "AG",
    "all-to-all": "A2A",
    "broadcast": "BC",
    "scatter": "SC",
    "gather": "GA",
    "reduce": "R",
}


def layer_of(name: str) -> str:
    """``"f: all-reduce dx (layer0 attention)"`` -> ``"layer0 attention"``."""
    found = re.search(r"\(([^)]*)\)\s*$", name)
    return found.group(1) if found else ""


def collective_labels(name: str) -> tuple[str, str]:
    """A collective's long and short label: ``"g: reduce-scatter y (layer0 mlp)"`` ->
    ``("g: reduce-scatter y", "g RS")``; Megatron-LM's ``f`` and ``g`` come first."""
    long = re.sub(r"\s*\([^)]*\)\s*$", "", name).replace("_", "-")
    op = next((short for word, short in SHORT_OPS.items() if word in long), "")
    head = long.split(":", 1)[0] if ":" in long else ""
    return long, " ".join(x for x in (head, op) if x) or long[:4]


def layers_of(compute: Sequence[Event], comm: Sequence[Event]) -> list[str]:
    """For each compute piece, the tensor-parallel layer it belongs to: the layer of
    the collective that starts as it ends (the work that collective waits for), else
    of the one that starts as it starts (work that overlaps an asynchronous
    collective, such as the weight gradients computed while ``f``'s all-reduce runs);
    empty where neither does."""
    starts: dict[float, str] = {}
    for e in comm:
        layer = layer_of(e.name)
        if e.cat in ("tp", "cp") and layer:
            starts.setdefault(e.start, layer)
    return [starts.get(e.end) or starts.get(e.start, "") for e in compute]

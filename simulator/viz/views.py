"""What the pictures read from a run: which devices to show, what each did in the last
step, and what its idle time was.

The metrics split every device's step into compute, exposed communication and
bubble (docs/design.md, "Definitions"); the runtime adds those up
while it runs. A Gantt chart has to show *where* in the step each part lies,
so it reads them back from the trace: :func:`exposed_by_device` finds the idle
stretches in which a device waited for a collective of its own group. The
tests check that these stretches add up to the metrics' ``exposed_comm_s``.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..engine.trace import COMM, COMPUTE, Event
from ..runtime.intervals import union

#: Collectives of a device's own group: waiting for them is exposed communication.
OWN_GROUP = frozenset({"dp", "tp", "embedding"})
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
    if len(devices) <= LOCKSTEP_ROWS or (len(devices) <= limit and s.tp == 1 and not folded):
        return devices, ""
    stages = _spread(s.pp, limit)
    replicas = [0] if folded else _spread(s.dp, max(1, limit // len(stages)))
    parts = []
    if s.tp > 1:
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


def failures(result: Any) -> dict[int, float]:
    """Device -> the simulated time it failed, from the trace's ``failed`` rows."""
    trace = result.trace
    ids = [i for i, label in enumerate(trace.labels) if label.cat == "failed"]
    if not ids:
        return {}
    cols = trace.columns()
    rows = np.flatnonzero(np.isin(cols.label, ids))
    return {trace.groups[cols.group[i]][0]: trace.start[i] for i in rows.tolist()}


def stragglers(result: Any) -> dict[int, Any]:
    """Device -> its straggler fault (``factor``, ``jitter``), if the run had any."""
    faults = getattr(result.runtime, "faults", None)
    return dict(getattr(faults, "stragglers", {}))


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
    lo, hi = result.step_window
    failed = failures(result)
    out: dict[int, Lanes] = {d: ([], []) for d in devices}
    for e in result.trace.select(devices, lo, hi):
        stop = failed.get(e.device, hi)
        if e.start > stop or e.cat == "failed":
            continue
        out[e.device][e.lane != COMPUTE].append(e if e.end <= stop else e._replace(end=stop))
    for compute, comm in out.values():
        compute.sort(key=lambda e: e.start)
        comm.sort(key=lambda e: e.start)
    return out


def collective_spans(
    trace: Any, devices: Iterable[int], lo: float, hi: float
) -> dict[int, list[tuple[float, float]]]:
    """For each of ``devices``, the ``(start, end)`` of every collective of its own
    group it took part in during ``[lo, hi]``: from the collective's first transfer to
    its last one on *any* device, since a device waits for the whole collective, not
    only for its own part of it.

    A collective timed step by step leaves one row per transfer. Its rows share a
    name and chain in time through the devices they share (a ring's step ``k+1``
    starts where step ``k`` arrived, a tree's child forwards what it received), so
    rows of one name that touch in time and share a group of devices are one
    collective. A fused collective is one row already.
    """
    names = {
        i: label.name
        for i, label in enumerate(trace.labels)
        if label.lane == COMM and label.cat in OWN_GROUP
    }
    wanted = set(devices)
    out: dict[int, list[tuple[float, float]]] = {d: [] for d in wanted}
    if not names:
        return out
    cols = trace.columns()
    start, end, label = cols.start, cols.end, cols.label
    rows = np.flatnonzero((end > lo) & (start < hi) & np.isin(label, list(names)))
    rows = rows[np.argsort(start[rows], kind="stable")]
    tol = 1e-9 * (hi - lo)
    done: list[tuple[float, float, set[int]]] = []
    live: dict[str, list[tuple[float, float, set[int]]]] = {}
    for i in rows.tolist():
        name, s, e = names[int(label[i])], trace.start[i], trace.end[i]
        group, peer = int(cols.group[i]), int(cols.peer[i])
        groups = {group} if peer < 0 else {group, peer}
        keep = []
        for other in live.get(name, []):
            if other[1] < s - tol:
                done.append(other)  # over before this row started
            elif other[2] & groups:
                s, e, groups = min(s, other[0]), max(e, other[1]), groups | other[2]
            else:
                keep.append(other)
        live[name] = [*keep, (s, e, groups)]
    members: dict[int, list[int]] = {}
    for s, e, groups in itertools.chain(done, *live.values()):
        for g in groups:
            if g not in members:
                members[g] = [d for d in trace.groups[g] if d in wanted]
            for d in members[g]:
                out[d].append((s, e))
    return out


# -- what its idle time was --------------------------------------------------------------
def exposed_intervals(
    busy: Iterable[tuple[float, float]],
    collectives: Iterable[tuple[float, float]],
    arrivals: Iterable[float],
    lo: float,
    hi: float,
) -> list[tuple[float, float]]:
    """The idle stretches of one device in ``[lo, hi]`` that are exposed communication.

    ``busy`` are its compute intervals, ``collectives`` its own group's
    collectives (:func:`collective_spans`), ``arrivals`` the times pipeline
    messages reached it. A device that blocks on a collective resumes the
    moment the collective ends. So an idle gap of the compute lane that ends
    with a pipeline message's arrival is bubble; in any other gap the device
    waited for collectives while they ran -- the last one counted up to the end
    of the gap, unless the gap ends the step, which also waits for the other
    devices. What is left of a gap (a peer still computing before a collective
    can start, the end of the step) is bubble. The runtime, which knows what
    every worker waits for, also counts the time a collective queues behind the
    device's own transfers: the metrics are exact, this picture nearly so.
    """
    tol = 1e-9 * (hi - lo)
    landed = sorted(arrivals)
    coll = union(list(collectives))  # sorted and disjoint: each gap finds its own
    ends = [c1 for _, c1 in coll]
    out: list[tuple[float, float]] = []
    edges = [(lo, lo), *union(list(busy)), (hi, hi)]
    for (_, g0), (g1, _) in itertools.pairwise(edges):
        k = bisect.bisect_left(landed, g1 - tol)
        if g1 - g0 <= tol or (k < len(landed) and landed[k] <= g1 + tol):
            continue  # no gap, or one that a pipeline message ends: bubble
        inside = []
        for c0, c1 in coll[bisect.bisect_right(ends, g0 + tol) :]:
            if c0 >= g1 - tol:
                break
            inside.append((max(c0, g0), min(c1, g1)))
        if inside and hi - g1 > tol:
            inside[-1] = (inside[-1][0], g1)
        out += inside
    return out


def exposed_by_device(
    result: Any, devices: Sequence[int], events: dict[int, Lanes] | None = None
) -> dict[int, list[tuple[float, float]]]:
    """Each device's exposed-communication stretches in the last step
    (:func:`exposed_intervals`); ``events`` are :func:`step_events`, when at hand."""
    lo, hi = result.step_window
    events = step_events(result, devices) if events is None else events
    spans = collective_spans(result.trace, devices, lo, hi)
    out = {}
    for d in devices:
        compute, comm = events[d]
        busy = [(e.start, e.end) for e in compute if e.end > e.start]
        landed = [e.end for e in comm if e.cat == "pp" and e.args.get("direction") == "recv"]
        out[d] = exposed_intervals(busy, spans[d], landed, lo, hi)
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
        if e.cat == "tp" and layer:
            starts.setdefault(e.start, layer)
    return [starts.get(e.end) or starts.get(e.start, "") for e in compute]

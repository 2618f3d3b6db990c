"""The Chrome trace of a run, written as a stream of trace-event JSON.

The format (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU)
opens in Perfetto (ui.perfetto.dev) and chrome://tracing: *processes* hold
*threads* of complete events (``"ph": "X"``, a start ``ts`` and a duration
``dur`` in microseconds) and *counters* (``"ph": "C"``). Here a process is a
device, or a group of devices; its threads are its lanes (``compute``,
``comm``; messages that overlap, full duplex, go to ``comm 2``, ``comm 3``, as
a thread's events must nest); its counter is the memory in use. Two forms:

* **groups** (the default): one process per group of devices that the run
  simulated as one -- a tensor-parallel group in lockstep (docs/design.md, key
  decision 3), with the data-parallel replicas folded into it (key decision 8)
  -- named after the devices it stands for (``devices 0-7``; the list is in
  the name's ``args``). A row of the trace is written once, as it was
  recorded, instead of once per device: 1,024 GPUs of GPT-3 in tp 8 groups are
  128 processes. What differs between the devices of a group stays in the
  file: a collective's bytes per rank (a list, rank by rank), work that only
  some of them did (its ``devices``), memory that differs (one counter per
  distinct ledger, named after its devices), and a message names the devices
  at its other end (``to devices``, ``from devices``; rank ``i`` of one group
  pairs with rank ``i`` of the other). Rows of smaller groups that land in one
  process at the same moment (every tensor rank's data-parallel all-reduce)
  are one event naming all their devices.
* **every device** (``every_device=True``; ``run --trace all``): one process
  per device, every row repeated for each device of its group.

Both forms carry the same times, ``ts`` = start x 10^6 and ``dur`` = (end -
start) x 10^6, and the same memory samples. The file is written process by
process as it is formatted, never held whole in memory; a path ending in
``.gz`` is gzip-compressed (Perfetto opens it as it is), in a thread beside the
formatting, with no time or file name in its header, so the same run gives
the same bytes.
"""

from __future__ import annotations

import gzip
import json
import queue
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from .trace import COMPUTE, NO_PEER, Trace, span

_json = partial(json.dumps, separators=(",", ":"), allow_nan=False)
#: zlib level of ``.gz`` traces: level 1 writes five times faster than 9 and the
#: file is about a fifth larger
GZIP_LEVEL = 1
#: lanes in the order a process lists them
_LANES = {COMPUTE: 0}
#: where a row's micro-batch goes in its text, and how JSON writes it
_MB = "\ue000"
_MB_JSON = json.dumps(_MB)[1:-1]


class _Writer(Protocol):
    def write(self, text: str, /) -> Any: ...


class _Place(NamedTuple):
    """Where one row of a track goes: process ``proc``, lane ``lane`` (0 compute, 1
    communication), with these ``args`` (before the micro-batch is known). A row of
    a group smaller than the process is *partial*: ``devices`` are those of the
    process it stands for, and for a message, ``pairs`` its (sender, receiver)."""

    proc: int
    lane: int
    args: dict[str, Any]
    devices: tuple[int, ...] | None = None
    pairs: tuple[tuple[int, int], ...] | None = None


def processes(trace: Trace, every_device: bool) -> list[tuple[int, ...]]:
    """The devices of each process, in order of their first device.

    Every device alone, or the groups that did compute (the workers the run
    simulated), largest first, each device in the first that holds it; a device
    in none of them (only in a collective, or only in a memory ledger) alone."""
    devices = sorted(set(trace.devices) | set(trace.ledgers))
    if every_device:
        return [(d,) for d in devices]
    labels = trace.labels
    computing = {g for g, _, label in trace.tracks if labels[label].lane == COMPUTE}
    taken: dict[int, tuple[int, ...]] = {}
    for g in sorted(computing, key=lambda g: (-len(trace.groups[g]), trace.groups[g])):
        group = trace.groups[g]
        if not any(d in taken for d in group):
            for d in group:
                taken[d] = group
    out = {taken.get(d, (d,)) for d in devices}
    return sorted(out)


def write(
    trace: Trace,
    out: _Writer,
    every_device: bool = False,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Write the trace's JSON to ``out`` (see the module docstring); returns the number
    of events written. ``progress`` is told the fraction done, process by process."""
    procs = processes(trace, every_device)
    proc_of = {d: i for i, devices in enumerate(procs) for d in devices}
    places = [_places(trace, t, procs, proc_of, every_device) for t in range(len(trace.tracks))]
    # the rows of each track, in recording order, and the tracks of each process
    track = np.frombuffer(trace.track, dtype=np.int64)
    order = np.argsort(track, kind="stable")
    bounds = np.searchsorted(track[order], np.arange(len(trace.tracks) + 1))
    tracks_of: list[list[int]] = [[] for _ in procs]
    for t, where in enumerate(places):
        for p in sorted({place.proc for place in where}):
            tracks_of[p].append(t)
    start = np.frombuffer(trace.start, dtype=float)
    end = np.frombuffer(trace.end, dtype=float)
    mb = np.frombuffer(trace.mb, dtype=np.int64)
    #: (track, place) -> index in texts of its text without and with a micro-batch
    templates: dict[tuple[int, int], tuple[int, int]] = {}
    texts: list[tuple[list[str], list[str]]] = []  # a row's text around pid..dur, split at mb
    cache: dict[tuple[int, int, int], tuple[str, str, str, str]] = {}
    durations: dict[float, str] = {}  # the JSON of every duration written
    written = 0
    out.write('{"traceEvents":[')
    first = True
    for p, devices in enumerate(procs):
        pid = devices[0]
        lines = _process_metadata(pid, devices)
        rows: list[np.ndarray] = []  # row indices, with the template and lane of each
        keys: list[np.ndarray] = []
        lanes: list[np.ndarray] = []
        merged: dict[tuple, tuple[str, str, str, set]] = {}
        for t in tracks_of[p]:
            picked = order[bounds[t] : bounds[t + 1]]
            for k, place in enumerate(places[t]):
                if place.proc != p:
                    continue
                if place.devices is None:  # a row as it was recorded: all of them at once
                    pair = templates.get((t, k))
                    if pair is None:
                        pair = templates[(t, k)] = (len(texts), len(texts) + 1)
                        texts += [
                            _template(trace, t, place, False),
                            _template(trace, t, place, True),
                        ]
                    rows.append(picked)
                    keys.append(np.where(mb[picked] >= 0, pair[1], pair[0]))
                    lanes.append(np.full(len(picked), place.lane))
                    continue
                for i in picked.tolist():  # rows of smaller groups: one event for all that coincide
                    m = int(mb[i])
                    text = cache.get((t, k, m))
                    if text is None:
                        text = cache[(t, k, m)] = _texts(trace, t, place, m)
                    mkey = (place.lane, start[i], end[i], text[2])
                    held = merged.get(mkey)
                    if held is None:
                        held = merged[mkey] = (i, text[1], text[3], set())
                    held[3].update(place.pairs or place.devices)
        for (lane, _, _, _), (i, head, args, who) in merged.items():
            pre, post = head.replace("\0", _merged_args(args, who, devices)).split("\1")
            rows.append(np.array([i]))
            keys.append(np.array([len(texts)]))
            lanes.append(np.array([lane]))
            texts.append(([pre], [post]))
        if rows:
            lines += _events(pid, np.concatenate(rows), np.concatenate(keys),
                             np.concatenate(lanes), start, end, mb, texts, durations)  # fmt: skip
            written += sum(map(len, rows))
        lines += _counters(trace, pid, devices)
        if lines:
            out.write(("" if first else ",") + ",".join(lines))
            first = False
        if progress is not None:
            progress((p + 1) / len(procs))
    out.write('],"displayTimeUnit":"ms"}')
    return written


def write_file(
    trace: Trace,
    path: str | Path,
    every_device: bool = False,
    progress: Callable[[float], None] | None = None,
) -> int:
    """:func:`write` into ``path``; gzip-compressed when it ends in ``.gz``."""
    p = Path(path)
    if p.suffix == ".gz":
        with (
            open(p, "wb") as raw,
            gzip.GzipFile("", "wb", GZIP_LEVEL, raw, mtime=0) as z,
            _Compressing(z) as text,
        ):
            return write(trace, text, every_device, progress)
    with open(p, "w", encoding="utf-8") as f:
        return write(trace, f, every_device, progress)


def count(trace: Trace, every_device: bool = False) -> int:
    """At most how many events :func:`write` writes (exactly, but for coinciding rows of
    smaller groups, which it merges): decides whether a file is compressed."""
    procs = processes(trace, every_device)
    proc_of = {d: i for i, devices in enumerate(procs) for d in devices}
    fan = np.array(
        [len(_places(trace, t, procs, proc_of, every_device)) for t in range(len(trace.tracks))]
        + [0],
        dtype=np.int64,
    )
    return int(fan[np.frombuffer(trace.track, dtype=np.int64)].sum())


class _Compressing:
    """A text writer over a gzip file that compresses in a thread of its own, beside the
    formatting (zlib lets go of the interpreter while it compresses): the file is the
    same, written sooner on a machine of two cores. At most a few pieces wait."""

    def __init__(self, z: gzip.GzipFile) -> None:
        self.z = z
        self.pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._compress, name="gzip", daemon=True)

    def _compress(self) -> None:
        while (piece := self.pieces.get()) is not None:
            if self.error is None:
                try:
                    self.z.write(piece)
                except BaseException as error:  # raised in the writer, on close
                    self.error = error

    def write(self, text: str) -> None:
        if self.error is not None:
            raise self.error
        self.pieces.put(text.encode())

    def __enter__(self) -> _Compressing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pieces.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


# -- where a track's rows go --------------------------------------------------------------
def _places(
    trace: Trace,
    t: int,
    procs: list[tuple[int, ...]],
    proc_of: dict[int, int],
    every_device: bool,
) -> list[_Place]:
    """The events one row of track ``t`` becomes (see the module docstring)."""
    g, peer, label = trace.tracks[t]
    lane, _, _, items = trace.labels[label]
    args = dict(items)
    group = trace.groups[g]
    lane_index = _LANES.get(lane, 1)
    if every_device:
        if lane == COMPUTE:
            return [_Place(proc_of[d], lane_index, args, None) for d in group]
        if peer == NO_PEER:
            return [
                _Place(
                    proc_of[d],
                    lane_index,
                    {**_rank_bytes(args, r), "direction": "collective"},
                    None,
                )
                for r, d in enumerate(group)
            ]
        out = []
        for a, b in zip(group, trace.groups[peer], strict=True):
            send = {**args, "peer": b, "direction": "send"}
            recv = {**send, "peer": a, "direction": "recv"}
            out += [
                _Place(proc_of[a], lane_index, send, None),
                _Place(proc_of[b], lane_index, recv, None),
            ]
        return out
    out = []
    message = peer != NO_PEER and lane != COMPUTE
    peers = trace.groups[peer] if message else ()
    for p, ranks in _by_process(group, proc_of).items():
        mine = tuple(group[r] for r in ranks)
        partial = mine != procs[p]
        if lane == COMPUTE:
            out.append(_Place(p, lane_index, args, mine if partial else None))
        elif not message:
            one = {**_rank_bytes(args, ranks), "direction": "collective"}
            out.append(_Place(p, lane_index, one, mine if partial else None))
        elif partial:  # its receivers are listed with it, even in another process
            pairs = tuple((group[r], peers[r]) for r in ranks)
            out.append(_Place(p, lane_index, {**args, "direction": "send"}, mine, pairs))
        else:
            to = span(tuple(peers[r] for r in ranks))
            out.append(_Place(p, lane_index, {**args, "to devices": to, "direction": "send"}))
    if message:
        for p, ranks in _by_process(peers, proc_of).items():
            mine = tuple(peers[r] for r in ranks)
            if mine != procs[p]:
                pairs = tuple((group[r], peers[r]) for r in ranks)
                if all(proc_of[a] != p for a, _ in pairs):
                    out.append(_Place(p, lane_index, {**args, "direction": "recv"}, mine, pairs))
                continue
            came = span(tuple(group[r] for r in ranks))
            out.append(_Place(p, lane_index, {**args, "from devices": came, "direction": "recv"}))
    return out


def _rank_bytes(args: dict[str, Any], ranks: int | list[int]) -> dict[str, Any]:
    """``args`` with a collective's bytes per rank (a tuple) cut to rank ``ranks``'s
    number, or to the list of ``ranks``' numbers."""
    per_rank = args.get("bytes")
    if not isinstance(per_rank, tuple):
        return args
    mine = per_rank[ranks] if isinstance(ranks, int) else [per_rank[r] for r in ranks]
    return {**args, "bytes": mine}


def _by_process(devices: tuple[int, ...], proc_of: dict[int, int]) -> dict[int, list[int]]:
    """The ranks of ``devices`` in each process."""
    out: dict[int, list[int]] = {}
    for r, d in enumerate(devices):
        out.setdefault(proc_of[d], []).append(r)
    return out


# -- text -------------------------------------------------------------------------------
def _texts(trace: Trace, t: int, place: _Place, mb: int) -> tuple[str, str, str, str]:
    """A row of track ``t`` at micro-batch ``mb`` going to ``place``: its name (JSON),
    its event's text but for pid, tid and times (``\1``) -- and for a partial row
    its args, ``\0`` --, what partial rows merge on (name and args), and the args."""
    _, _, label = trace.tracks[t]
    _, name, cat, _ = trace.labels[label]
    args = dict(place.args)
    if mb >= 0:
        name = name.format(mb=mb)
        args = _with_mb(args, mb, len(trace.labels[label].args))
    name_json, args_json = _json(name), _json(args)
    partial = place.devices is not None
    body = "\0" if partial else args_json
    head = f'{{"ph":"X","name":{name_json},"cat":{_json(cat)},\1,"args":{body}}}'
    return name_json, head, name_json + args_json if partial else "", args_json


def _template(trace: Trace, t: int, place: _Place, with_mb: bool) -> tuple[list[str], list[str]]:
    """The text of a row of track ``t`` going to ``place`` (a whole process's row), of a
    micro-batch or of none, before and after its pid, tid and times, each split where
    its micro-batch goes."""
    _, _, label = trace.tracks[t]
    _, name, cat, own = trace.labels[label]
    args = dict(place.args)
    if with_mb:
        args = _with_mb(args, _MB, len(own))  # type: ignore[arg-type]
        name = name.format(mb=_MB)
    head = f'{{"ph":"X","name":{_json(name)},"cat":{_json(cat)},\1,"args":{_json(args)}}}'

    pre, post = head.replace(f'"{_MB_JSON}"', _MB_JSON).split("\1")
    return pre.split(_MB_JSON), post.split(_MB_JSON)


def _merged_args(args: str, who: set, devices: tuple[int, ...]) -> str:
    """A merged event's args (JSON): first the devices its rows stood for (none when
    they are the whole process's), or the (sender, receiver) pairs of its messages."""
    if who and isinstance(next(iter(who)), tuple):
        first = f'"pairs":{_json(sorted(who))}'
    elif who == set(devices):
        return args
    else:
        first = f'"devices":{_json(span(tuple(sorted(who))))}'
    return "{" + first + ("}" if args == "{}" else "," + args[1:])


def _with_mb(args: dict[str, Any], mb: int, own: int) -> dict[str, Any]:
    """``args`` with ``"mb"`` after the label's own ``own`` entries."""
    items = list(args.items())
    return dict([*items[:own], ("mb", mb), *items[own:]])


def _process_metadata(pid: int, devices: tuple[int, ...]) -> list[str]:
    name = f"device {pid}" if len(devices) == 1 else f"devices {span(devices)}"
    meta = {"name": name} if len(devices) == 1 else {"name": name, "devices": list(devices)}
    return [
        f'{{"ph":"M","name":"process_name","pid":{pid},"tid":0,"args":{_json(meta)}}}',
        f'{{"ph":"M","name":"process_sort_index","pid":{pid},"tid":0,'
        f'"args":{{"sort_index":{pid}}}}}',
    ]


def _events(
    pid: int,
    rows: np.ndarray,
    keys: np.ndarray,
    lanes: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    mb: np.ndarray,
    texts: list[tuple[list[str], list[str]]],
    cache: dict[float, str],
) -> list[str]:
    """The X events of one process: ``rows`` of the trace, each with its text (``keys``
    into ``texts``) and lane, sorted by lane, start and end, each on a thread where it
    nests. ``cache`` holds the JSON of durations written before."""
    s, e, m = start[rows], end[rows], mb[rows]
    order = np.lexsort((m, keys, e, s, lanes))
    s, e, m, keys, lanes = s[order], e[order], m[order], keys[order], lanes[order]
    # threads: each lane's slots in order, the compute lane's first (rows are by lane)
    slots = _slots(s, e, lanes)
    computing = lanes == 0
    tid = slots + 1 + np.where(computing, 0, slots[computing].max(initial=-1) + 1)
    # an event's text before its time is one of few: its name, kind and thread (and the
    # micro-batch); after it, its args. Each is written out once.
    width, threads = int(m.max(initial=-1)) + 2, int(tid.max(initial=0)) + 1
    kinds, which = np.unique((keys * width + m + 1) * threads + tid, return_inverse=True)
    before, after = [], []
    for code in kinds.tolist():
        rest, thread = divmod(code, threads)
        key, micro = divmod(rest, width)
        pre, post = texts[key]
        text = str(micro - 1)
        before.append(f'{text.join(pre)}"pid":{pid},"tid":{thread},"ts":')
        after.append(text.join(post))
    # the same numbers as ``start * 1e6`` and ``(end - start) * 1e6`` in Python, as JSON;
    # a run has few distinct durations, so each is written out once
    ts = map(repr, (s * 1e6).tolist())
    dur = map(_repr_of(cache), ((e - s) * 1e6).tolist())
    which = which.tolist()
    lines = [
        f'{a}{t},"dur":{d}{b}'
        for a, t, d, b in zip(
            [before[i] for i in which], ts, dur, [after[i] for i in which], strict=True
        )
    ]
    # each thread's name, before its first event
    _, first = np.unique(tid, return_index=True)
    for at in sorted(first.tolist(), reverse=True):
        lane, slot = int(lanes[at]), int(slots[at])
        name = "compute" if lane == 0 else "comm"
        label = name if slot == 0 else f"{name} {slot + 1}"
        lines.insert(
            at,
            f'{{"ph":"M","name":"thread_name","pid":{pid},"tid":{int(tid[at])},'
            f'"args":{{"name":"{label}"}}}}',
        )
    return lines


def _repr_of(cache: dict[float, str]) -> Callable[[float], str]:
    """``repr``, remembering what it wrote in ``cache`` (0.0 and -0.0 are one key there:
    a duration is never negative)."""

    def text(x: float) -> str:
        out = cache.get(x)
        if out is None:
            out = cache[x] = repr(x)
        return out

    return text


def _slots(starts: np.ndarray, ends: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """For rows sorted by lane and start, the thread of its lane each goes to: the first
    whose last event has ended (Chrome needs a thread's events nested; messages of a
    full-duplex port, or of two ports, overlap). A lane whose rows never overlap (a
    device's compute) is one thread."""
    out = np.zeros(len(starts), dtype=np.int64)
    for lane in (0, 1):
        (idx,) = np.nonzero(lanes == lane)
        if len(idx) < 2:
            continue
        s, e = starts[idx], ends[idx]
        if np.all(np.maximum.accumulate(e[:-1]) <= s[1:]):
            continue  # one after another: all on the first thread
        free: list[float] = []
        for i, a, b in zip(idx.tolist(), s.tolist(), e.tolist(), strict=True):
            for k, at in enumerate(free):
                if at <= a:
                    free[k] = b
                    out[i] = k
                    break
            else:
                free.append(b)
                out[i] = len(free) - 1
    return out


def _counters(trace: Trace, pid: int, devices: tuple[int, ...]) -> list[str]:
    """Memory in use: one counter per distinct ledger of the process's devices."""
    records: dict[int, tuple[Any, list[int]]] = {}
    for d in devices:
        record = trace.ledgers.get(d)
        if record is not None:
            records.setdefault(id(record), (record, []))[1].append(d)
    lines = []
    for record, who in records.values():
        name = "memory" if len(records) == 1 else f"memory (devices {span(tuple(who))})"
        head = f'{{"ph":"C","name":{_json(name)},"pid":{pid},"tid":0,"ts":'
        lines += [f'{head}{t * 1e6!r},"args":{{"MiB":{b / 2**20!r}}}}}' for t, b in record.samples]
    return lines

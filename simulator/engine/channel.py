"""A channel: the same message between the same devices, sent again and again.

A pipeline sends one activation per micro-batch from each stage's devices to
the next stage's, always the same size over the same routes. A
:class:`Channel` works out once what every such message needs -- the routes,
their alpha-beta times, the trace label and groups, the traffic to count --
so that sending one is a few additions: book the ports, record one trace row,
count one more message (docs/design.md, key decision 8). The bytes are added to
the engine's counters when they are read (:meth:`Engine.count_channels`).

``srcs[i]`` sends to ``dsts[i]``: the ranks of a tensor-parallel group send
side by side to the same ranks of the next group. ``shown`` (optional) are
the device groups the trace records and the counters charge, the timed
pattern repeated for folded replicas (:mod:`simulator.runtime.fold`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .streams import LaneSet, shared, stream_of
from .trace import COMM

if TYPE_CHECKING:
    from .core import Engine


class Channel:
    """Messages of ``nbytes`` (one size, or one per rank) from ``srcs`` to ``dsts``."""

    def __init__(
        self,
        engine: Engine,
        srcs: tuple[int, ...],
        dsts: tuple[int, ...],
        nbytes: int | tuple[int, ...],
        kind: str,
        name: str,
        seconds: float | None = None,
        shown: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    ) -> None:
        self.engine = engine
        self._env = engine.env
        network, trace = engine.network, engine.trace
        self._free = network.free_at  # every lane's next free moment (never replaced)
        self._record = trace.record  # (the run's trace: sealed only when it is over)
        per_rank = (nbytes,) * len(srcs) if isinstance(nbytes, int) else nbytes
        stream = stream_of(kind)
        #: per timed pair: (out lane, in lane, seconds, label, its lanes and the other
        #: streams' on its ports), or None for a device itself
        self.pairs: list[tuple[int, int, float, int, LaneSet] | None] = []
        for src, dst, size in zip(srcs, dsts, per_rank, strict=True):
            if src == dst:
                self.pairs.append(None)
                continue
            route = network.route(src, dst)
            duration = route.seconds(size) if seconds is None else seconds
            label = trace.label_id(COMM, name, kind, bytes=size, link=route.kind)
            lanes = network.lane_sets((route.out_port, route.in_port), stream)
            self.pairs.append((*lanes.mine, duration, label, lanes))
        src_shown, dst_shown = shown or (srcs, dsts)
        k = len(srcs)
        #: per shown pair, its (src group, dst group), for pieces that move apart
        self.rows = [
            (trace.group_id((a,)), trace.group_id((b,)))
            for a, b in zip(src_shown, dst_shown, strict=True)
            if a != b
        ]
        moved = [(a, b) for a, b in zip(src_shown, dst_shown, strict=True) if a != b]
        group = trace.group_id(tuple(a for a, _ in moved)) if moved else -1
        peer = trace.group_id(tuple(b for _, b in moved)) if moved else -1
        #: the trace track of a message that moves as one (its first pair's label)
        self.track = next(
            (trace.track_id(group, p[3], peer) for p in self.pairs if p is not None), -1
        )
        #: bytes every shown sender sends, and their sum
        self.sent = [
            (a, per_rank[i % k]) for i, (a, b) in enumerate(zip(src_shown, dst_shown, strict=True))
            if a != b
        ]  # fmt: skip
        self.total = sum(b for _, b in self.sent)
        self.kind = kind
        #: whether the sender scatters the message over its ranks, and the pieces of a
        #: shape-only message (set by the runtime)
        self.scatter = False
        self.pieces: list | None = None
        #: messages sent since the engine last counted their bytes
        self.count = 0
        engine.channels.append(self)
        #: the one timed pair, when that is all there is (and it is what is shown)
        self.single = self.pairs[0] if len(self.pairs) == 1 and len(self.sent) == 1 else None
        #: one device to another in no time (an abstract model's free messages)
        self.free = self.single is not None and self.single[2] == 0.0
        #: folded replicas mirror this traffic: note when it leaves each port
        self.own = engine.own_free if len(src_shown) > k and engine.network.mirror else None
        # pieces side by side (a tensor-parallel group's ranks sending theirs), each on
        # lanes of its own and taking the same time, are timed together when they find
        # their ports alike: one reading of every lane instead of one per piece
        live = [p for p in self.pairs if p is not None]
        lanes = [q for p in live for q in p[:2]]
        self.together = None
        if len(live) > 1 and len(set(lanes)) == len(lanes) and len({p[2] for p in live}) == 1:
            everyone = LaneSet(lanes, [q for p in live for q in p[4].others])
            self.together = (live[0][2], everyone, [p[4] for p in live])

    def flush(self) -> None:
        """Add the bytes of the messages sent since the last flush to the counters."""
        count, self.count = self.count, 0
        if count:
            bytes_sent = self.engine._bytes_sent
            for device, b in self.sent:
                bytes_sent[device] += b * count
            self.engine._comm_bytes[self.kind] += self.total * count

    def send(self, mb: int = -1) -> float:
        """Send one message now; returns when the last piece arrives."""
        engine = self.engine
        now = self._env._now
        free = self._free
        if self.single is not None:  # one device to another: the common case, kept lean
            out, into, duration, _, others = self.single
            a, b = free[out], free[into]
            start = now if now >= a and now >= b else max(now, a, b)
            # beside the other streams on its ports (those never booked: none to read)
            busy = others.busy(free) - start
            # shared(start, duration, busy), written out: it runs once per message
            if busy <= 0.0:
                end = start + duration
            else:
                end = start + duration + (busy if busy < duration else duration)
            free[out] = free[into] = end
            self._record(self.track, start, end, mb)
            self.count += 1
            return end
        if self.together is not None:
            end = self._together(now, mb)
            if end is not None:
                return end
        record = engine.trace.record
        self.count += 1
        times = []
        for pair in self.pairs:
            if pair is None:
                continue
            out, into, duration, _, others = pair
            a, b = free[out], free[into]
            start = now if now >= a and now >= b else max(now, a, b)
            end = free[out] = free[into] = shared(start, duration, others.busy(free))
            if self.own is not None:
                self.own[out] = self.own[into] = end
            times.append((start, end))
        if not times:
            return now
        if len(times) == 1 or len(set(times)) == 1:
            start, end = times[0]
            record(self.track, start, end, mb)
            return end
        return self._apart(times, mb)

    def send_free(self, mb: int = -1) -> float:
        """Send one :attr:`free` message now, in a run whose pipeline messages all take
        no time: it arrives as it leaves, and it books no lane, since it holds none for
        any time. (Unlike :meth:`send` it reads no lane either: its sender may run
        ahead of the engine's clock, :meth:`simulator.runtime.core.Runtime._process`,
        and lanes hold the engine's times.)"""
        now = self._env._now
        self._record(self.track, now, now, mb)
        self.count += 1
        return now

    def _together(self, now: float, mb: int) -> float | None:
        """Send the pieces at once when each would start now, or each when its lanes
        are next free, all at one time, beside the same other traffic: then they end
        at one time too, as sending them one by one finds. None when they would not."""
        duration, everyone, each = self.together
        free = self._free
        held = everyone.read(free)
        last = max(held)
        if last > now and min(held) != last:
            return None
        busy = everyone.busy(free)
        if busy > 0.0 and len({others.busy(free) for others in each}) != 1:
            return None
        start = now if last <= now else last
        end = shared(start, duration, busy)
        lanes = everyone.mine
        for q in lanes:
            free[q] = end
        if self.own is not None:
            own = self.own
            for q in lanes:
                own[q] = end
        self.count += 1
        self._record(self.track, start, end, mb)
        return end

    def _apart(self, times: list[tuple[float, float]], mb: int) -> float:
        """Record pieces that moved at different times: one row per device pair."""
        record = self.engine.trace.record
        live = [
            (p, t) for p, t in zip((p for p in self.pairs if p is not None), times, strict=True)
        ]
        k = len(live)
        track = self.engine.trace.track_id
        for i, (src, dst) in enumerate(self.rows):
            (_, _, _, label, _), (start, end) = live[i % k]
            record(track(src, label, dst), start, end, mb)
        return max(end for _, end in times)

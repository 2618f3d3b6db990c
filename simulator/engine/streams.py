"""Streams: which traffic queues behind which, and how streams share a port.

Every message belongs to a *stream*, named after the kind of traffic it is
(:data:`STREAMS`). Messages of one stream through one port direction take
turns; messages of different streams run side by side and split the port's
bandwidth (:mod:`simulator.engine.network` tells the whole contention model).
This module holds the few numbers and formulas that model needs: the lane ids
of the reservation state and :func:`shared`, the end of a message that runs
beside another stream.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter

#: The streams traffic runs on, by the kind of traffic (any other kind: the last).
STREAMS = ("tp", "pp", "dp", "other")
_STREAM_OF = {kind: i for i, kind in enumerate(STREAMS)}


def stream_of(kind: str) -> int:
    """The stream of traffic of ``kind`` (``tp``, ``pp``, ``dp``; anything else shares one)."""
    return _STREAM_OF.get(kind, len(STREAMS) - 1)


def lane(port_id: int, stream: int) -> int:
    """The id of ``stream``'s lane on the port direction ``port_id``."""
    return port_id * len(STREAMS) + stream


def lanes_of(port_id: int) -> range:
    """Every stream's lane on the port direction ``port_id``."""
    return range(port_id * len(STREAMS), (port_id + 1) * len(STREAMS))


class LaneSet:
    """One stream's lanes on a set of ports (``mine``) and the other streams' lanes there
    (``others``), which the stream shares the ports with.

    A lane no message has used yet is free at 0.0 and can delay nothing, so
    :meth:`busy` reads only the other lanes the reservation state holds: on a
    port only one stream ever uses (a tensor-parallel group's NVLink, say) that
    is none at all. The lanes used only ever grow, so the list of those read is
    worked out again only when the state holds more lanes than when it was last.
    ``read(free)`` gives the values of ``mine`` (a tuple, read in one call).
    """

    __slots__ = ("_seen", "_used", "mine", "others", "read")

    def __init__(self, mine: list[int], others: list[int]) -> None:
        self.mine = mine
        self.others = others
        self.read = _reader(mine)
        self._used: Callable[[dict[int, float]], tuple[float, ...]] | None = None
        self._seen = -1

    def busy(self, free: dict[int, float]) -> float:
        """When the other streams are last free on these ports (0.0: never used)."""
        if self._seen != len(free):
            used = [q for q in self.others if q in free]
            self._used = _reader(used) if used else None
            self._seen = len(free)
        used = self._used
        return 0.0 if used is None else max(used(free))


def _reader(lanes: list[int]) -> Callable[[dict[int, float]], tuple[float, ...]]:
    """``free -> (free[q] for q in lanes)`` as a tuple, in one C call."""
    if not lanes:
        return lambda _: ()
    return itemgetter(*lanes, lanes[0]) if len(lanes) == 1 else itemgetter(*lanes)


def shared(start: float, seconds: float, busy_until: float) -> float:
    """The end of a message of ``seconds`` that starts at ``start`` beside another
    stream holding its port until ``busy_until``: half the bandwidth while both run
    (processor sharing, :mod:`simulator.engine.network`), so
    ``start + seconds + min(seconds, busy_until - start)``."""
    overlap = busy_until - start
    if overlap <= 0.0:
        return start + seconds
    return start + seconds + (overlap if overlap < seconds else seconds)

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


def shared(start: float, seconds: float, busy_until: float) -> float:
    """The end of a message of ``seconds`` that starts at ``start`` beside another
    stream holding its port until ``busy_until``: half the bandwidth while both run
    (processor sharing, :mod:`simulator.engine.network`), so
    ``start + seconds + min(seconds, busy_until - start)``."""
    overlap = busy_until - start
    if overlap <= 0.0:
        return start + seconds
    return start + seconds + (overlap if overlap < seconds else seconds)

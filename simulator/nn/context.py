"""Which samples the code is working on right now.

Layers see only arrays, but a few need to know *which* samples the rows are:
dropout draws its masks from ``(seed, step, layer, global sample index)`` so
that any split of the batch over devices and micro-batches draws the same
masks as single-device training. The runtime sets the context around every
forward and backward it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchInfo:
    """The micro-batch being processed: training step and its first global sample."""

    seed: int
    step: int
    first_sample: int
    size: int


_current: ContextVar[BatchInfo | None] = ContextVar("batch", default=None)


@contextlib.contextmanager
def batch(info: BatchInfo) -> Iterator[BatchInfo]:
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)


def current_batch() -> BatchInfo:
    info = _current.get()
    if info is None:
        return BatchInfo(seed=0, step=0, first_sample=0, size=0)
    return info

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
from dataclasses import dataclass, field


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


# -- the loss's scale and the auxiliary losses ------------------------------------------------
#
# A mixture-of-experts layer adds a load-balancing loss to the objective (Fedus et al.
# 2021, eq. 4). Its gradient starts inside the layer, not at the model's loss, so the
# layer must scale it as the loss's gradient is scaled (by ``1 / microbatches``: the
# step's loss is the mean over micro-batches), and its value must reach the step's
# reported loss, which is computed on the last pipeline stage. Megatron-LM does the
# same with ``MoEAuxLossAutoScaler.set_loss_scale`` and its aux-loss tracker.

_scale: ContextVar[float] = ContextVar("loss_scale", default=1.0)


@dataclass
class Reports:
    """What a micro-batch's MoE layers report while it runs forward: their
    load-balancing losses and how many tokens each expert got, by layer."""

    aux: list[float] = field(default_factory=list)
    tokens: dict[str, list[int]] = field(default_factory=dict)


_reports: ContextVar[Reports | None] = ContextVar("moe_reports", default=None)


@contextlib.contextmanager
def loss_scale(scale: float) -> Iterator[None]:
    """Inside the block, a backward's gradients are those of ``scale`` times the loss."""
    token = _scale.set(scale)
    try:
        yield
    finally:
        _scale.reset(token)


def current_loss_scale() -> float:
    """The factor the backward under way applies to the loss (1 outside any)."""
    return _scale.get()


@contextlib.contextmanager
def collecting_reports(sink: Reports | None) -> Iterator[Reports | None]:
    """Reports made inside the block go to ``sink`` (None: nowhere, as for the
    copies of a layer that other tensor-parallel ranks run alike)."""
    token = _reports.set(sink)
    try:
        yield sink
    finally:
        _reports.reset(token)


#: reports made so far in this process, heard or not (:func:`reports_made`)
_made = [0]


def reports_made() -> int:
    """How many reports layers have made so far (whether a sink heard them or not):
    code that reuses what a layer did knows from it whether the layer reports."""
    return _made[0]


def add_aux_loss(value: float) -> None:
    """Report an auxiliary loss of the micro-batch under way."""
    _made[0] += 1
    sink = _reports.get()
    if sink is not None:
        sink.aux.append(value)


def report_routing(layer: str, tokens: list[int]) -> None:
    """Report how many tokens each expert of ``layer`` got in the micro-batch under way."""
    _made[0] += 1
    sink = _reports.get()
    if sink is not None:
        before = sink.tokens.get(layer)
        sink.tokens[layer] = (
            list(tokens) if before is None else [a + b for a, b in zip(before, tokens, strict=True)]
        )

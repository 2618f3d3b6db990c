"""A timing-only model: stage times and stash sizes given directly.

Papers about pipeline schedules reason with a model that has no layers at
all: stage ``i`` takes ``T_F`` for a forward, ``T_B`` for the input-gradient
backward and ``T_W`` for the weight-gradient backward, a message between
stages takes ``T_comm``, and a micro-batch leaves ``M_B`` bytes of
activations on every stage until its backward is done (Qi et al. 2024,
"Zero Bubble Pipeline Parallelism", sec. 2 and Table 2; Narayanan et al.
2021, sec. 2.2). :class:`AbstractConfig` is that model, so their tables can
be replayed exactly: with equal stage times and ``comm_ms = 0`` the
simulated bubble of GPipe and 1F1B is ``(p-1)/(m+p-1)``, that of interleaved
1F1B ``(p-1)/(v m + p-1)``, and ZB-H1 and ZB-H2 reach Table 2.

Each stage is one block whose forward, B and W record a single
:func:`~simulator.ops.fixed` kernel of the given duration. Schedules that do
not split the backward run B and W back to back and send the gradient
upstream after both. The stash is a ``ShapeArray((activation_bytes,),
"uint8")``, held from the forward until the W (or the fused backward). The
model has no parameters, so there is nothing to synchronise and the
optimizer step takes no time. Messages between stages take ``comm_ms``
through the runtime's ``transfer_seconds`` hook: they occupy the links, not
the compute stream. It runs in shape-only mode only (``numerics = false``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .. import ops
from ..arrays import Array, ShapeArray
from ..errors import ScenarioError
from .layers import Layer
from .models import Model

PerStage = float | tuple[float, ...] | list[float]

_TIMES = ("forward_ms", "backward_ms", "weight_ms", "comm_ms")


class AbstractStage(Layer):
    """One stage of the abstract model: fixed-duration F, B and W, and a stash."""

    def __init__(
        self, index: int, forward_s: float, backward_s: float, weight_s: float, stash: int
    ) -> None:
        self.name = f"stage{index}"
        self.seconds = {"F": forward_s, "B": backward_s, "W": weight_s}
        self.stash = stash

    def forward(self, x: Array) -> tuple[Array, Any]:
        ops.fixed(f"{self.name}.F", self.seconds["F"])
        return x, ShapeArray((self.stash,), "uint8")

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        ops.fixed(f"{self.name}.B", self.seconds["B"])
        return dy, ctx  # the stash stays alive until W

    def backward_weight(self, wctx: Any) -> None:
        ops.fixed(f"{self.name}.W", self.seconds["W"])


class AbstractLoss:
    """A loss that costs nothing: its time is part of the last stage's."""

    name = "abstract"

    def forward(self, pred: Array, target: Array) -> tuple[Array, Any]:
        return ShapeArray((), "float32"), pred.shape

    def backward(self, ctx: Any, scale: float) -> Array:
        return ShapeArray(ctx, "uint8")


@dataclass(frozen=True)
class AbstractConfig:
    """Stage times and stash sizes, each one number or one value per stage.

    Attributes:
        stages: model stages, one block each: ``p`` for plain schedules,
            ``p * v`` for interleaved and V-shape ones (with more blocks than
            pipeline stages the planner groups them).
        forward_ms: forward time of a micro-batch on each stage.
        backward_ms: the B part of the backward (input gradient).
        weight_ms: the W part (weight gradient).
        comm_ms: time of each message a stage sends (its activation to the
            next stage, its input gradient to the previous one); entry ``i``
            is stage ``i``'s. A hand-off between chunks on one rank is free.
        activation_bytes: stashed per micro-batch per stage.
        dtype: only names the peak FLOP/s used for MFU (which is 0 here).
    """

    kind: ClassVar[str] = "abstract"
    stages: int = 4
    forward_ms: PerStage = 1.0
    backward_ms: PerStage = 1.0
    weight_ms: PerStage = 1.0
    comm_ms: PerStage = 0.0
    activation_bytes: int | tuple[int, ...] | list[int] = 1 << 20
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.stages < 1:
            raise ScenarioError(f"abstract model: stages must be at least 1, got {self.stages}")
        for f in fields(self):
            if f.name in (*_TIMES, "activation_bytes"):
                values = self.per_stage(f.name)
                if any(x < 0 for x in values):
                    raise ScenarioError(f"abstract model: {f.name} must not be negative")
                # lists become tuples so the frozen config stays hashable
                object.__setattr__(self, f.name, tuple(values))

    def per_stage(self, key: str) -> list[float]:
        """The value of ``key`` for every stage (a scalar repeats)."""
        value = getattr(self, key)
        if isinstance(value, (int, float)):
            return [value] * self.stages
        values = list(value)
        if len(values) != self.stages:
            raise ScenarioError(
                f"abstract model: {key} has {len(values)} values but stages = {self.stages}; "
                "give one number or one value per stage"
            )
        return values

    @property
    def num_blocks(self) -> int:
        return self.stages

    def build(self, seed: int, shape_only: bool) -> Model:
        self._timing_only(shape_only)
        seconds = {key: [t / 1e3 for t in self.per_stage(key)] for key in _TIMES}
        stash = self.per_stage("activation_bytes")
        blocks: list[Layer] = [
            AbstractStage(
                i,
                seconds["forward_ms"][i],
                seconds["backward_ms"][i],
                seconds["weight_ms"][i],
                int(stash[i]),
            )
            for i in range(self.stages)
        ]
        return Model("abstract", blocks, AbstractLoss(), self.dtype)

    def batch(
        self, seed: int, step: int, global_batch: int, shape_only: bool
    ) -> tuple[Array, Array]:
        """One byte per sample: the data only has to flow, its size is irrelevant."""
        self._timing_only(shape_only)
        return ShapeArray((global_batch,), "uint8"), ShapeArray((global_batch,), "uint8")

    def tokens(self, samples: int) -> int:
        return samples

    def block_costs(self) -> list[float]:
        """Seconds of F + B + W per stage, so the planner needs no cost estimate."""
        return [
            (f + b + w) / 1e3
            for f, b, w in zip(
                self.per_stage("forward_ms"),
                self.per_stage("backward_ms"),
                self.per_stage("weight_ms"),
                strict=True,
            )
        ]

    def transfer_seconds(self, chunk: int, what: str) -> float:
        """Time of a message stage ``chunk`` sends (``what`` is activation or gradient)."""
        return self.per_stage("comm_ms")[chunk] / 1e3

    @staticmethod
    def _timing_only(shape_only: bool) -> None:
        if not shape_only:
            raise ScenarioError(
                "model kind 'abstract' only has timings, no numbers to train: set "
                "numerics = false in [training] (TrainingConfig(numerics=False))"
            )

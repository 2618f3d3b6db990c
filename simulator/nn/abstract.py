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

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .. import ops
from ..errors import ConfigError, ScenarioError
from ..keys import check_fields
from ..ops.arrays import Array, ShapeArray
from ..ranges import Range
from .config import ModelConfig
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


#: Model stages (pipeline blocks).
STAGES = Range(lo=1, hi=1e9, integer=True)
#: Stage times in milliseconds: finite, >= 0, at most a million seconds.
TIME_MS = Range(lo=0, hi=1e9)
#: Stash bytes per micro-batch and stage: an integer, at most a petabyte.
STASH_BYTES = Range(lo=0, hi=1e15, integer=True)


def _meta(doc: str, allowed: Range) -> dict[str, Any]:
    return {"doc": doc, "range": allowed}


@dataclass(frozen=True)
class AbstractConfig(ModelConfig):
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

    A per-stage field given as one number and given as a list obey one rule,
    checked element by element (:data:`TIME_MS`, :data:`STASH_BYTES`): a
    ``nan`` or ``inf`` anywhere is an error, never a silent 0.
    """

    kind: ClassVar[str] = "abstract"
    stages: int = field(default=4, metadata={"doc": "model stages", "range": STAGES})
    forward_ms: PerStage = field(default=1.0, metadata=_meta("forward time", TIME_MS))
    backward_ms: PerStage = field(default=1.0, metadata=_meta("input-gradient (B) time", TIME_MS))
    weight_ms: PerStage = field(default=1.0, metadata=_meta("weight-gradient (W) time", TIME_MS))
    comm_ms: PerStage = field(default=0.0, metadata=_meta("time of each message", TIME_MS))
    activation_bytes: int | tuple[int, ...] | list[int] = field(
        default=1 << 20, metadata=_meta("bytes stashed per micro-batch", STASH_BYTES)
    )
    dtype: str = field(default="float32", metadata={"doc": "names the peak FLOP/s"})

    def __post_init__(self) -> None:
        check_fields(self)  # every value, and every element of a list (raises ConfigError)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and len(value) != self.stages:
                raise ConfigError(
                    f"AbstractConfig: {f.name} has {len(value)} values but stages = "
                    f"{self.stages}; give one number or one value per stage",
                    f.name,
                    f"one number or {self.stages} values",
                )

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

    def build(self, seed: int, numerics: bool) -> Model:
        self._timing_only(numerics)
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

    def batch(self, seed: int, step: int, global_batch: int, numerics: bool) -> tuple[Array, Array]:
        """One byte per sample: the data only has to flow, its size is irrelevant."""
        self._timing_only(numerics)
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
    def _timing_only(numerics: bool) -> None:
        if numerics:
            raise ScenarioError(
                "model kind 'abstract' only has timings, no numbers to train: set "
                "numerics = false in [training] (TrainingConfig(numerics=False))"
            )

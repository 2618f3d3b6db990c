"""Training settings shared by every strategy of a scenario (the ``[training]`` table).

Each field's metadata is the rule of its key (:mod:`simulator.keys`): the
scenario reader derives the ``[training]`` schema from it, and building a
:class:`TrainingConfig` in Python checks the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..keys import check_fields
from ..nn.optim import OPTIMIZERS
from ..nn.param import GRAD_PRECISIONS
from ..ranges import Range

COLLECTIVE_DETAILS = ("auto", "steps", "fused")


def _optimizers() -> tuple[str, ...]:
    return tuple(OPTIMIZERS)


@dataclass(frozen=True)
class TrainingConfig:
    """What to train and how.

    Attributes:
        numerics: run the real math (True) or shapes only (False).
        global_batch: samples (sequences) per step over all replicas.
        steps: training steps to simulate.
        optimizer: ``sgd`` or ``adam``.
        grad_precision: ``model`` keeps each gradient in its parameter's dtype;
            ``fp32`` accumulates and reduces 16-bit parameters' gradients in FP32,
            as Megatron-LM does for BF16 models (:mod:`simulator.nn.param`).
        lr: learning rate.
        seed: seeds the model's initial weights, the data and dropout.
        collective_detail: ``steps`` times every message of every collective;
            ``fused`` times a collective once on idle links and books it as one
            block (much faster for large shape-only runs); ``auto`` picks
            ``steps`` with numerics and ``fused`` without.
        fold_replicas: simulate identical data-parallel replicas once
            (:mod:`simulator.runtime.fold`); the results are the same either way,
            folding only makes large runs fast. Set false to compare.
        step_barrier: every worker finishes the step before any starts the next,
            as a global gradient-norm clip requires; ``False`` lets each worker
            start its next step as soon as it has finished its own (Qi et al.
            2024, sec. 4, optimizer post-validation), so later steps show the
            pipeline's steady state (docs/design.md, "Definitions").
    """

    numerics: bool = field(
        default=True, metadata={"doc": "run the real math (true) or shapes only (false)"}
    )
    global_batch: int = field(
        default=64,
        metadata={
            "doc": "samples (sequences) per step over all replicas",
            "range": Range(lo=1, hi=2**40, integer=True),
        },
    )
    steps: int = field(
        default=3,
        metadata={"doc": "training steps to simulate", "range": Range(lo=1, integer=True)},
    )
    optimizer: str = field(default="sgd", metadata={"doc": "optimizer", "choices": _optimizers})
    grad_precision: str = field(
        default="model",
        metadata={
            "doc": "16-bit parameters' gradients in their own dtype (model) or accumulated "
            "and reduced in FP32 (fp32, as Megatron-LM does for BF16)",
            "choices": tuple(GRAD_PRECISIONS),
        },
    )
    lr: float = field(
        default=0.01, metadata={"doc": "learning rate", "range": Range(lo=0, lo_open=True)}
    )
    seed: int = field(
        default=0,
        metadata={
            "doc": "seeds weights, data and dropout",
            "range": Range(lo=0, hi=2**63 - 1, integer=True),
        },
    )
    collective_detail: str = field(
        default="auto",
        metadata={
            "doc": "time collectives message by message or as one block",
            "choices": COLLECTIVE_DETAILS,
        },
    )
    fold_replicas: bool = field(
        default=True,
        metadata={"doc": "simulate identical data-parallel replicas once (exact)"},
    )
    step_barrier: bool = field(
        default=True,
        metadata={
            "doc": "every worker finishes the step before any starts the next (false: each "
            "starts its next step when it is done, and later steps show the steady state)"
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)  # the rules of the [training] table (raises ConfigError)

    @property
    def detail(self) -> str:
        if self.collective_detail != "auto":
            return self.collective_detail
        return "steps" if self.numerics else "fused"

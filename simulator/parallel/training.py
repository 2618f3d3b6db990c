"""Training settings shared by every strategy of a scenario (the ``[training]`` table)."""

from __future__ import annotations

from dataclasses import dataclass

COLLECTIVE_DETAILS = ("auto", "steps", "fused")


@dataclass(frozen=True)
class TrainingConfig:
    """What to train and how.

    Attributes:
        numerics: run the real math (True) or shapes only (False).
        global_batch: samples (sequences) per step over all replicas.
        steps: training steps to simulate.
        optimizer: ``sgd`` or ``adam``.
        lr: learning rate.
        seed: seeds the model's initial weights, the data and dropout.
        collective_detail: ``steps`` times every message of every collective;
            ``fused`` times a collective once on idle links and books it as one
            block (much faster for large shape-only runs); ``auto`` picks
            ``steps`` with numerics and ``fused`` without.
        fold_replicas: simulate identical data-parallel replicas once
            (:mod:`simulator.runtime.fold`); the results are the same either way,
            folding only makes large runs fast. Set false to compare.
    """

    numerics: bool = True
    global_batch: int = 64
    steps: int = 3
    optimizer: str = "sgd"
    lr: float = 0.01
    seed: int = 0
    collective_detail: str = "auto"
    fold_replicas: bool = True

    @property
    def detail(self) -> str:
        if self.collective_detail != "auto":
            return self.collective_detail
        return "steps" if self.numerics else "fused"

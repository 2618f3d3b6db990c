"""A parallel strategy: how one training step is spread over devices.

The fields are the keys of a ``[[strategy]]`` table in a scenario file (see
the README's scenario reference for what each one means and allows).
"""

from __future__ import annotations

from dataclasses import dataclass

from .mesh import DEFAULT_ORDER


@dataclass(frozen=True)
class Strategy:
    """One way to run the step; ``dp * tp * pp`` devices."""

    name: str = "single"
    dp: int = 1
    tp: int = 1
    pp: int = 1
    microbatches: int = 1
    schedule: str = "1f1b"
    chunks: int = 1
    partition: str = "balanced"
    data_parallel: str = "ddp"
    allreduce_algorithm: str = "auto"
    bucket_mb: float = 0.0
    zero: int = 0
    grad_reduction: str = "mean"
    recompute: str = "none"
    sequence_parallel: bool = False
    order: str = DEFAULT_ORDER
    pp_scatter_gather: bool = False

    @property
    def num_devices(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def num_stages(self) -> int:
        """Model stages (chunks) of the pipeline."""
        return self.pp * self.chunks

"""Data parallelism: replicas of the model that agree on every update.

Every replica trains on its share of the batch; the variants differ in how
the replicas keep their parameters in agreement. Each is a registry entry
(:data:`VARIANTS`), as pipeline schedules are, holding what a strategy that
names it needs before it runs:

* ``check`` -- the layouts it cannot run, as one-line errors (:func:`check_layout
  <simulator.parallel.build.check_layout>` calls it);
* ``lower`` -- each worker's program, from the pipeline schedule's
  (:func:`~simulator.parallel.build.build_plan`);
* ``fold_refusal`` -- why its replicas may not be simulated once, if they may
  not (:mod:`simulator.runtime.fold`).

This package is pure lowering, like the rest of :mod:`simulator.parallel`:
it runs nothing. Each variant's execution is the runtime's, registered there
under the same name (:mod:`simulator.runtime.data`).

The variants: ``ddp`` (:mod:`.ddp`: PyTorch DDP's all-reduce, with buckets,
:mod:`.buckets`, and ZeRO stages 1 to 3) and ``replicated``
(:mod:`.replicated`: PyTorch's ``nn.DataParallel``, one primary device driving
every step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import LayoutError
from . import ddp, replicated

if TYPE_CHECKING:
    from ..strategy import Strategy
    from ..worker import Worker


def _pipeline_program(_worker: Worker, pipeline: list[tuple]) -> list[tuple]:
    return pipeline


@dataclass(frozen=True)
class Variant:
    """A data-parallel variant (see the module docstring)."""

    name: str
    doc: str
    check: Callable[[Strategy], None]
    lower: Callable[[Worker, list[tuple]], list[tuple]]
    #: why its replicas are never folded into one simulated replica (None: they may be)
    fold_refusal: str | None = None
    #: every device holds and computes its replica's share and nothing more: the
    #: planner's memory formulas and step bound apply (nn.DataParallel's primary
    #: gathers every replica's outputs and updates for all)
    symmetric: bool = True


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "ddp",
            "PyTorch DDP: all-reduce the gradients (buckets: during backward); ZeRO 1-3",
            ddp.check,
            _pipeline_program,
        ),
        Variant(
            "replicated",
            "PyTorch nn.DataParallel: a primary device scatters, gathers and updates",
            replicated.check,
            replicated.lower,
            "nn.DataParallel's primary does what the other replicas do not",
            symmetric=False,
        ),
    )
}


def variant_names() -> tuple[str, ...]:
    """The registered variants (the values of a strategy's ``data_parallel``)."""
    return tuple(VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``, or a one-line error listing the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise LayoutError(
            f"unknown data_parallel {name!r}; choose one of {', '.join(map(repr, VARIANTS))}"
        ) from None


__all__ = ["VARIANTS", "Variant", "get_variant", "variant_names"]

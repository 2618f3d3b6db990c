"""What DDP and ZeRO ask of a strategy, checked before anything runs.

PyTorch DDP (Li et al. 2020, VLDB, sec. 3.2) all-reduces the gradients; ZeRO
(Rajbhandari et al. 2020, sec. 5) reduce-scatters them and all-gathers the
updated parameters. Both run over the data-parallel group of every
tensor-parallel rank, so the chosen algorithm must have those collectives for
that group size. Their execution -- buckets launched during backward, the
optimizer step, ZeRO's gathers -- is the runtime's
(:mod:`simulator.runtime.data.ddp`); their programs are the pipeline
schedule's, with a ``SYNC`` and a ``STEP`` at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import comm
from ...errors import LayoutError

if TYPE_CHECKING:
    from ..strategy import Strategy


def check(s: Strategy) -> None:
    """What DDP and ZeRO cannot run, as clear errors: the gradient collectives must
    exist for the chosen algorithm and group size."""
    algorithm = s.allreduce_algorithm
    ops = ["all_reduce"] if s.zero == 0 else ["reduce_scatter", "all_gather"]
    for op in ops:
        if algorithm != comm.AUTO and algorithm not in comm.ALGORITHMS[op]:
            raise LayoutError(
                f"strategy {s.name!r}: {'ZeRO needs ' + op if s.zero else op} but "
                f"allreduce_algorithm {algorithm!r} has none; choose one of "
                f"{', '.join([comm.AUTO, *comm.ALGORITHMS[op]])}"
            )
    if algorithm in ("recursive", "rabenseifner") and s.dp & (s.dp - 1):
        raise LayoutError(
            f"strategy {s.name!r}: allreduce_algorithm {algorithm!r} needs a power-of-two "
            f"data-parallel group, got dp = {s.dp}; use ring or a power-of-two dp"
        )
    if s.overlap_param_gather and s.zero not in (1, 2):
        raise LayoutError(
            f"strategy {s.name!r}: overlap_param_gather overlaps the all-gather of the "
            f"parameters a ZeRO-1 or 2 step updated, and zero = {s.zero} has none after "
            "the step (ZeRO-3 gathers each block before it runs: prefetch_params); set "
            "zero = 1 or 2, or overlap_param_gather = false"
        )
    if s.zero == 3 and s.ep > 1:
        raise LayoutError(
            f"strategy {s.name!r}: zero = 3 with ep > 1 is not modelled (the experts' "
            "parameters would be gathered over their own smaller group block by block); "
            "use zero <= 2 with expert parallelism"
        )
    if s.zero == 3 and s.pp > 1:
        raise LayoutError(
            f"strategy {s.name!r}: zero = 3 with pp > 1 is not supported (its per-block "
            "parameter gathers would have to cross pipeline stages, which DeepSpeed does not do "
            "either); use zero <= 2 with pipelines"
        )

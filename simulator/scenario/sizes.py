"""The sizes a run asks for, checked against the limits before anything is built.

A scenario file and a call of :func:`simulator.run_strategy` go through the
same checks: training steps, the model's blocks and layer widths, every
strategy's devices, micro-batches, stages and chunks, a lower bound on its
events, and the memory its arrays need (:func:`model_bytes`). Each is cheap
arithmetic, or a pass of the model over shape-only arrays, so a size that
would take an hour or all the memory of the machine is refused at once,
with a :class:`~simulator.errors.LimitError` naming the limit and how to
raise it (:class:`~simulator.scenario.limits.Limits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..errors import ScenarioError
from ..ops.arrays import ITEMSIZE, tree_bytes
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from .limits import Limits

#: Memory ledgers count bytes in 64-bit integers: no device may hold 2^63 bytes or more.
LEDGER_BYTES = 2**62


def model_bytes(model: Any, training: TrainingConfig) -> tuple[int, int]:
    """``(parameters, stash)``: bytes of one copy of the parameters with their gradients
    and, for Adam, two moments (Kingma & Ba 2015, Algorithm 1); and what one forward
    pass of the global batch stashes for the backward, measured by running the
    model's blocks on shape-only arrays."""
    built = model.build(training.seed, numerics=False)
    moments = 2 if training.optimizer == "adam" else 0
    parameters = built.num_parameters * ITEMSIZE[built.dtype] * (2 + moments)
    x, _ = model.batch(training.seed, 0, training.global_batch, numerics=False)
    seen: set[int] = set()
    stash = 0
    for block in built.blocks:
        x, ctx = block.forward(x)
        stash += tree_bytes(ctx, seen)
    return parameters, stash


def numerics_bytes(model: Any, training: TrainingConfig, strategies: list[Strategy]) -> int:
    """Host memory the real arrays of a numerics run need, at least (an estimate).

    Every strategy's plan holds ``dp`` copies of the parameters (tensor and
    pipeline parallelism split a copy, they do not add one), with their
    gradients and optimizer state (:func:`model_bytes`); all plans are built
    before the first one runs. On top comes the stash of one forward pass of
    the global batch.
    """
    parameters, stash = model_bytes(model, training)
    return parameters * sum(s.dp for s in strategies) + stash


def check_sizes(
    limits: Limits,
    model: Any,
    training: TrainingConfig,
    strategies: Iterable[Strategy],
    source: str,
    python: bool = False,
) -> None:
    """Raise :class:`~simulator.errors.LimitError` for the first size over its limit
    (see the module docstring); ``source`` starts every message (a file name, or the
    function called: ``python`` says how a Python caller raises a limit)."""
    strategies = list(strategies)

    def check(name: str, value: int, key: str) -> None:
        limits.check(name, value, key, python=python)

    check("max_strategies", len(strategies), f"{source}: the [[strategy]] tables")
    check("max_steps", training.steps, f"{source}: [training] steps")
    check("max_blocks", model.num_blocks, f"{source}: the model's pipeline blocks")
    for f in dataclasses.fields(model) if dataclasses.is_dataclass(model) else ():
        if f.metadata.get("limit"):
            check(f.metadata["limit"], getattr(model, f.name), f"{source}: [model] {f.name}")
    for s in strategies:
        where = f"{source}: [[strategy]] {s.name!r}"
        check("max_microbatches", s.microbatches, f"{where} microbatches")
        check("max_devices", s.num_devices, f"{where} {'*'.join(s.axes)}")
        check("max_stages", s.num_stages, f"{where} pp*chunks")
        check("max_chunks_per_rank", s.chunks, f"{where} chunks")
        # every step runs at least a forward and a backward of every micro-batch on
        # every stage, each at least one event: a lower bound of the run's events
        check(
            "max_events",
            2 * training.steps * s.num_stages * s.microbatches,
            f"{where} 2*steps*pp*chunks*microbatches (fewest events the run needs)",
        )
    parameters, stash = model_bytes(model, training)
    if parameters + stash >= LEDGER_BYTES:
        raise ScenarioError(
            f"{source}: one copy of the model and the activations of the global batch would "
            f"take {parameters + stash:,} bytes, more than the simulator's memory ledgers "
            "count (2^62); make the model or the global batch smaller"
        )
    if training.numerics:
        check(
            "max_numerics_bytes",
            parameters * sum(s.dp for s in strategies) + stash,
            f"{source}: the estimated host memory of the numerics arrays (bytes)",
        )

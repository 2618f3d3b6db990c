"""The precision of the linear layers' GEMMs: BF16, or FP8 as Transformer Engine runs them.

Mixed-precision training keeps 16-bit weights and activations and an FP32
master copy of the weights (Micikevicius et al. 2018, sec. 3). FP8 training
(Micikevicius et al. 2022, "FP8 Formats for Deep Learning", sec. 4) goes one
step further for the GEMMs of the transformer's linear layers only: NVIDIA's
Transformer Engine (``te.Linear`` inside ``fp8_autocast``) casts a GEMM's
inputs to FP8 -- the activation and the weight forward, the output gradient
backward -- and runs the GEMM on FP8 tensor cores, at twice the BF16 peak on
Hopper and Blackwell. Everything else stays as it was: attention, norms,
softmax and the logits run in BF16, the master weights and the optimizer
state in FP32, and the activation a linear layer stashes for its weight
gradient is its FP8 copy.

A pipeline chunk runs its blocks under :func:`gemm_precision` with the
strategy's ``precision``; :class:`simulator.nn.layers.Linear` asks
:func:`linear_gemm_dtype` which precision its GEMMs run in. The numbers never
change: numerics mode stays float64, FP8 changes time and memory only
(:func:`simulator.ops.basic.cast`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

#: ``bf16``: the GEMMs run in the model's dtype; ``fp8``: the linear layers' in FP8.
PRECISIONS = ("bf16", "fp8")

_linear: ContextVar[str | None] = ContextVar("linear_gemm_dtype", default=None)


@contextlib.contextmanager
def gemm_precision(precision: str) -> Iterator[None]:
    """Run the linear layers inside the block at ``precision`` (one of :data:`PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    token = _linear.set("fp8" if precision == "fp8" else None)
    try:
        yield
    finally:
        _linear.reset(token)


def linear_gemm_dtype() -> str | None:
    """The dtype a linear layer's GEMMs run in now (None: its inputs')."""
    return _linear.get()

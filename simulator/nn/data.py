"""Synthetic training data, a pure function of (seed, step).

Every strategy draws the same global batch for a step and slices it the same
way (data-parallel replicas take contiguous rows, micro-batches contiguous rows
of those), which is what makes single-device training an oracle for all of
them.
"""

from __future__ import annotations

import functools

import numpy as np

from ..ops.arrays import Array, ShapeArray


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for a named stream, e.g. ``rng_for(seed, step)``."""
    return np.random.default_rng([seed, *stream])


@functools.lru_cache(maxsize=8)
def _teacher(seed: int, width: int) -> np.ndarray:
    """The regression task's fixed teacher (drawn once per seed and width, read-only)."""
    teacher = rng_for(seed, 1_000_003).normal(0.0, 1.0 / np.sqrt(width), (width, width))
    teacher.flags.writeable = False
    return teacher


def regression_batch(
    seed: int, step: int, batch: int, width: int, dtype: str, numerics: bool
) -> tuple[Array, Array]:
    """Inputs ``x ~ N(0, 1)`` and targets ``tanh(x @ T)`` for a fixed random teacher ``T``.

    The teacher depends on ``seed`` only, so the task is the same every step and
    the loss falls as the model learns it.
    """
    if not numerics:
        return ShapeArray((batch, width), dtype), ShapeArray((batch, width), dtype)
    teacher = _teacher(seed, width)
    x = rng_for(seed, 2, step).normal(0.0, 1.0, (batch, width))
    y = np.tanh(x @ teacher)
    return x.astype(dtype), y.astype(dtype)

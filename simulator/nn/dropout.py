"""Dropout whose masks depend on *which* sample is dropped, never on how the batch is split.

Parallel training must reproduce single-device training exactly (docs/design.md:
single-device training is the oracle), dropout included. So a mask is not
drawn from a generator that advances as micro-batches go by; every sample's
mask is drawn afresh from

    numpy.random.default_rng([seed, step, layer, site, global sample index])

where ``seed``, ``step`` and the index of the micro-batch's first sample come
from :func:`simulator.nn.context.current_batch` (the runtime sets it around
every forward and backward). Any split of the batch over data-parallel
replicas and micro-batches therefore drops the same units, and recomputation
-- which runs a forward again under the same batch context -- regenerates the
identical masks.

Slices of a mask (tensor and sequence parallelism)
-------------------------------------------------
A tensor-parallel rank holds some attention heads, a sequence-parallel rank
some positions, of every sample. Such a rank builds its dropout with
``window`` (one slice per axis of the *per-sample* mask, i.e. every axis after
the batch axis) and ``full_shape`` (the per-sample shape of the whole mask):
it draws each sample's full mask and applies only its window, so the ranks
together apply exactly the single-device mask. For example, rank ``r`` of
``t`` on the attention-probability dropout of ``a`` heads uses
``window=(slice(r * a // t, (r + 1) * a // t),)`` and ``full_shape=(a, s, s)``;
with sequence parallelism over a ``(b, s, h)`` activation,
``window=(slice(s0, s1),)`` and ``full_shape=(s, h)``. ``full_shape`` may stop
after the windowed axes -- ``(a,)`` or ``(s,)`` above -- and the remaining
axes are then the input's, so a tensor-parallel layer can cut its heads before
it knows the sequence length. :meth:`Dropout.sliced` makes such a copy of a
layer.

A window may also list positions one by one (an integer array): a
context-parallel rank holds two chunks of every sequence, ``c`` and ``2 cp - 1
- c``, so its window on the sequence axis is those positions
(:mod:`simulator.parallel.context`). Windows compose: slicing a layer that
already has a window cuts the part it applies, so a sequence-parallel rank
inside a context-parallel rank takes its share of the context-parallel rank's
positions, and an attention block its queries' and keys' share of a
tensor-parallel rank's heads.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..ops import functional as ops_nn
from ..ops.arrays import Array, ShapeArray, is_shape_only
from .context import current_batch
from .layers import Layer

#: The places of a GPT that drop units; with the layer index they name a mask.
SITES = {"embedding": 0, "attention_probs": 1, "attention_out": 2, "mlp_out": 3}
#: The part of one axis a window keeps: a range, or positions one by one.
Cut = slice | np.ndarray


def _length(cut: Cut, size: int) -> int:
    return len(range(*cut.indices(size))) if isinstance(cut, slice) else len(cut)


def _within(outer: Cut, inner: Cut, size: int) -> Cut:
    """The cut ``inner`` of the part ``outer`` keeps of an axis of ``size`` elements,
    as a cut of the whole axis."""
    if isinstance(outer, slice) and isinstance(inner, slice):
        kept = range(size)[outer][inner]
        if kept.step > 0:
            return slice(kept.start, kept.stop, kept.step)
    return np.arange(size)[outer][inner]


def _cut(mask: np.ndarray, window: tuple[Cut, ...]) -> np.ndarray:
    """``mask`` restricted to ``window``, axis by axis (positions listed one by one
    on two axes select their rows and columns, not pairs of them)."""
    if all(isinstance(c, slice) for c in window):
        return mask[window]
    for axis, cut in enumerate(window):
        mask = mask[(slice(None),) * axis + (cut,)]
    return mask


class Dropout(Layer):
    """Drop units with probability ``p``; the saved context is the one-byte mask.

    Attributes:
        p: drop probability; ``0`` makes the layer the identity (nothing saved).
        layer: index of the transformer layer the site belongs to.
        site: a key of :data:`SITES`.
        window: per-sample cuts this layer applies (a slice or the positions, per
            axis), or None for the whole mask.
        full_shape: per-sample shape of the whole mask (required with ``window``),
            or only its leading axes, at least those the window cuts.
    """

    name = "dropout"
    #: what seeds the masks alone: layers that differ only in it trace alike without
    #: values (:func:`simulator.parallel.block_key.block_key`)
    value_only = ("layer",)

    def __init__(
        self,
        p: float,
        layer: int,
        site: str,
        window: tuple[Cut, ...] | None = None,
        full_shape: tuple[int, ...] | None = None,
    ) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if site not in SITES:
            raise ValueError(f"unknown dropout site {site!r}; choose one of {sorted(SITES)}")
        if (window is None) != (full_shape is None):
            raise ValueError("a dropout window needs the full per-sample mask shape, and back")
        if window is not None and full_shape is not None and len(window) > len(full_shape):
            raise ValueError(f"dropout window {window} cuts more axes than {full_shape} has")
        self.p = p
        self.layer = layer
        self.site = site
        self.window = window
        self.full_shape = full_shape

    def sliced(self, window: tuple[Cut, ...], full_shape: tuple[int, ...]) -> Dropout:
        """This dropout restricted to ``window`` of a per-sample mask of ``full_shape``:
        the shape of the mask this layer applies, which for a layer that has a
        window already is its part, cut again (the module docstring)."""
        if self.window is None or self.full_shape is None:
            return Dropout(self.p, self.layer, self.site, window, full_shape)
        old, whole = self.window, self.full_shape
        axes = max(len(old), len(window))
        full = tuple(whole[a] if a < len(whole) else full_shape[a] for a in range(axes))
        cuts = []
        for a in range(axes):
            if a >= len(window):
                cuts.append(old[a])
            elif a >= len(old):
                cuts.append(window[a])
            else:
                cuts.append(_within(old[a], window[a], full[a]))
        return Dropout(self.p, self.layer, self.site, tuple(cuts), full)

    def _full_shape(self, x: Array) -> tuple[int, ...]:
        """Per-sample shape of the whole mask: ``full_shape``, completed from ``x``."""
        given = self.full_shape or ()
        return (*given, *x.shape[1 + len(given) :])

    def _sample_shape(self, x: Array) -> tuple[int, ...]:
        """Per-sample shape of the mask this layer applies; checks it against ``x``."""
        if self.full_shape is None or self.window is None:
            return tuple(x.shape[1:])
        dims = list(self._full_shape(x))
        for axis, window in enumerate(self.window):
            dims[axis] = _length(window, dims[axis])
        if tuple(dims) != tuple(x.shape[1:]):
            raise ValueError(
                f"dropout window {self.window} of a {self._full_shape(x)} mask is "
                f"{tuple(dims)} per sample, but the input has {tuple(x.shape[1:])}"
            )
        return tuple(dims)

    def mask(self, x: Array) -> Array:
        """The keep-mask (``uint8``, 1 keeps) for the samples in the rows of ``x``."""
        shape = (x.shape[0], *self._sample_shape(x))
        if is_shape_only(x):
            return ShapeArray(shape, "uint8")
        info = current_batch()
        full = self._full_shape(x)
        window = self.window or ()
        rows = []
        for i in range(x.shape[0]):
            key = (info.seed, info.step, self.layer, SITES[self.site], info.first_sample + i)
            rows.append(_cut(_sample_mask(key, full, self.p), window))
        return np.stack(rows).astype(np.uint8)

    def forward(self, x: Array) -> tuple[Array, Any]:
        if self.p == 0.0:
            return x, None
        mask = self.mask(x)
        return ops_nn.dropout(x, mask, self.p), mask

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        if ctx is None:
            return dy, None
        return ops_nn.dropout_backward(dy, ctx, self.p), None


#: the masks drawn last, by their key, shape and probability: every strategy of a
#: scenario (and a recomputed forward) draws the same ones, and drawing costs more than
#: the math of a small layer (a generator seeded anew per sample); at most this many bytes
MASK_CACHE_BYTES = 32 * 2**20
_masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cached = [0]  # bytes held


def _sample_mask(key: tuple[int, ...], full: tuple[int, ...], p: float) -> np.ndarray:
    """One sample's whole keep-mask (booleans), drawn from ``default_rng(key)``; the same
    array (read-only) each time it is asked for while it stays in the cache."""
    entry = (key, full, p)
    mask = _masks.get(entry)
    if mask is None:
        mask = np.random.default_rng(list(key)).random(full) >= p
        mask.flags.writeable = False
        _masks[entry] = mask
        _cached[0] += mask.nbytes
        while _cached[0] > MASK_CACHE_BYTES:
            _cached[0] -= _masks.popitem(last=False)[1].nbytes
    return mask

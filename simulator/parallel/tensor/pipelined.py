"""Megatron-Core's tensor-parallel communication overlap: collectives cut into chunks under GEMMs.

With sequence parallelism every column-parallel GEMM waits for an all-gather of
its input and every row-parallel GEMM is followed by a reduce-scatter of its
output (:mod:`.collectives`); Megatron-LM's asynchronous collectives
(``async_tp``) hide only the ones a GEMM does not need. Wang et al. (2022,
"Overlap communication with dependent computation via decomposition in large
deep learning models", ASPLOS 2023, sec. 3) hide the others too: the GEMM that
consumes an all-gather, or produces what a reduce-scatter sums, is
*decomposed* along the gathered (scattered) axis into ``t`` partial GEMMs, and
the collective into ``t - 1`` point-to-point transfers, each running under a
partial GEMM that does not need it. Transformer Engine implements it with
"userbuffers" (``CommOverlapP2PBase::split_overlap_ag`` and
``split_overlap_rs``, its *ring exchange*); Megatron-Core turns it on with
``--tp-comm-overlap``, which requires ``--sequence-parallel``. Here, for the
four GEMMs of every transformer layer, with ``t`` chunks of ``s/t`` tokens:

* **all-gather, then GEMM** (:func:`gathered`; the forward of ``qkv`` and
  ``fc1``, the input gradients of ``proj`` and ``fc2``): at step
  ``i = 0 .. t-1`` rank ``r`` multiplies chunk ``r - i`` (mod ``t``), which it
  holds, while it passes that chunk on to rank ``r + 1`` and receives chunk
  ``r - i - 1``; the last step sends nothing. Transfer ``i`` runs under GEMM
  chunk ``i``, and GEMM chunk ``i + 1`` waits for it.
* **GEMM, then reduce-scatter** (:func:`scattered`; the forward of ``proj``
  and ``fc2``, and the input gradients of ``qkv`` and ``fc1`` when a
  zero-bubble schedule splits them from their weight gradients): at step ``i``
  rank ``r`` computes the partial sum of chunk ``r + i + 1``, the last
  (``i = t - 1``) being its own, ``r``; the partial of step ``i`` goes straight
  to its owner while step ``i + 1`` computes. Then one memory-bound kernel
  adds the ``t`` partial sums of the rank's chunk (``t`` chunks read, one
  written).

Either way there are ``t - 1`` transfers of one chunk (``c`` seconds each), each
under a GEMM chunk (``g``), and nothing else to wait for: the first all-gather
chunk is the rank's own, and so is the last reduce-scatter chunk. The exposed
time is ``sum_i max(0, c_i - g_i)`` -- none when ``c <= g``
(``tests/parallel/tensor/test_pipelined.py`` checks it on the toy cluster).
The input gradients of ``qkv`` and ``fc1`` with their weight gradients use
Transformer Engine's *bulk* overlap instead, which is what ``async_tp`` does
(:meth:`.linear.ColumnParallel.backward`); the option turns it on whatever
``async_tp`` says. (Transformer Engine's default for the forward
reduce-scatters is its *pipeline* method, whole reduce-scatters of 4 chunks on
multiprocessors of their own; not modelled.)

**What the chunks cost.** A chunk is ``1/t`` of every kernel of the whole GEMM
-- FLOPs and bytes -- at the whole GEMM's tiling efficiency (Transformer
Engine runs the chunks on several compute streams, so together they fill the
device as the whole does), plus a launch each (:mod:`simulator.engine.cost`):
``t - 1`` more launches per GEMM, and the kernel that adds the partial sums.
The transfers do not slow the compute beside them: the ring exchange copies
with the copy engines and takes no multiprocessor (Transformer Engine's
``ring_exchange`` runs with ``use_ce`` and no SM margin; Megatron Bridge's
``RingExchangeOverlapCfg`` defaults to ``num_sm = 1``, ``set_sm_margin =
False``), and for the memory bandwidth the two share we know of no public
measurement to charge.

**The numbers do not change.** The math runs whole -- the collective and the
GEMM exactly as without the option -- and the tape of the collective is
dropped; the tape the runtime times gets the chunked schedule instead. So
losses and weights are those of the run without the option, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from ...comm import ring
from ...ops.arrays import Array, dtype_of
from ...ops.basic import emit
from ...ops.tape import (
    CollectiveCall,
    ComputeSegment,
    Item,
    active,
    new_handle,
    record,
    recording,
)
from .collectives import (
    Region,
    all_gather_sequence,
    per_rank,
    reduce_scatter_sequence,
    wait,
)

R = TypeVar("R")


# -- f and g with the GEMM beside them --------------------------------------------------------
def enter_into(
    region: Region, xs: list[Array], where: str, compute: Callable[[list[Array]], R]
) -> R:
    """f forward, then ``compute`` on its result: the column-parallel GEMM's all-gather,
    by ring exchange when the region is pipelined."""
    if region.pipelined:
        return gathered(xs, f"f: all-gather x ({where})", compute)
    return compute(region.enter(xs, where))


def leave_backward_into(
    region: Region, dys: list[Array], where: str, compute: Callable[[list[Array]], R]
) -> R:
    """g backward, then ``compute``: the row-parallel input gradient's all-gather of the
    output gradient, by ring exchange when the region is pipelined."""
    if region.pipelined:
        return gathered(dys, f"g: all-gather dy ({where})", compute)
    return compute(region.leave_backward(dys, where))


def leave_from(
    region: Region,
    xs: list[Array],
    where: str,
    compute: Callable[[list[Array]], R],
    partials: Callable[[R], list[Array]],
) -> tuple[list[Array], R]:
    """``compute``, then g forward on its ``partials``: the row-parallel GEMM's
    reduce-scatter (all-reduce without sequence parallelism), pipelined with the GEMM's
    chunks when the region is."""
    if region.pipelined:
        return scattered(xs, f"g: reduce-scatter y ({where})", compute, partials)
    result = compute(xs)
    return region.leave(partials(result), where), result


def enter_backward_from(
    region: Region,
    dys: list[Array],
    where: str,
    compute: Callable[[list[Array]], R],
    partials: Callable[[R], list[Array]],
) -> tuple[list[Array], R]:
    """``compute``, then f backward on its ``partials``: the column-parallel input
    gradient's reduce-scatter (all-reduce), pipelined with the GEMM's chunks when the
    region is."""
    if region.pipelined:
        return scattered(dys, f"f: reduce-scatter dx ({where})", compute, partials)
    result = compute(dys)
    return region.enter_backward(partials(result), where), result


# -- the two decompositions -------------------------------------------------------------------
def gathered(xs: list[Array], label: str, compute: Callable[[list[Array]], R]) -> R:
    """``compute(all-gather of the sequence shards xs)``, the all-gather pipelined with
    ``compute``'s chunks by ring exchange (module docstring)."""
    t = len(xs)
    with recording():  # the numbers, whole; this tape is dropped
        whole = all_gather_sequence(xs, label)
    work, result = _recorded(lambda: compute(whole))
    chunk = [_part(item, t) for item in work]
    step = ring.shift(t, 1, xs[0].nbytes)  # every rank passes one shard on
    for i in range(t):
        handle = -1
        if i < t - 1:
            handle = new_handle()
            name = f"{label} [ring {i + 1}/{t - 1}]"
            record(CollectiveCall(step.op, step.algorithm, "tp", step, name, handle))
        for item in chunk:
            record(item)
        if handle >= 0:
            wait(handle)
    return result


def scattered(
    inputs: list[Array],
    label: str,
    compute: Callable[[list[Array]], R],
    partials: Callable[[R], list[Array]],
) -> tuple[list[Array], R]:
    """``compute(inputs)``, then the reduce-scatter along the sequence of the per-rank
    partial sums ``partials(result)``, pipelined with ``compute``'s chunks by ring
    exchange (module docstring); returns the scattered sums and ``compute``'s result."""
    t = len(inputs)
    work, result = _recorded(lambda: compute(inputs))
    with recording():  # the numbers, whole; this tape is dropped
        summed = reduce_scatter_sequence(partials(result), label)
    chunk = [_part(item, t) for item in work]
    nbytes = summed[0].nbytes  # one chunk of the output: a rank's share
    handles = []
    for i in range(t):
        for item in chunk:
            record(item)
        if i < t - 1:  # chunk i goes to its owner, rank r + i + 1; the last is the rank's
            step = ring.shift(t, i + 1, nbytes)
            handles.append(new_handle())
            name = f"{label} [ring {i + 1}/{t - 1}]"
            record(CollectiveCall(step.op, step.algorithm, "tp", step, name, handles[-1]))
    for handle in handles:
        wait(handle)
    # the t partial sums of the rank's chunk added: t chunks read, one written
    dtype = dtype_of(summed[0])
    per_rank(t, lambda r: emit(f"{label} [add]", "elementwise", dtype, 0, (t + 1) * nbytes))
    return summed, result


def _recorded(run: Callable[[], R]) -> tuple[list[Item], R]:
    """What ``run`` records, on a tape of its own tagged as the one being recorded
    (recomputation stays recomputation), and its result."""
    parent = active()
    with recording() as tape:
        tape.tag = parent.tag if parent is not None else ""
        result = run()
    return tape.items, result


def _part(item: Item, t: int) -> Item:
    """One of ``t`` equal chunks of a compute segment: every kernel with ``1/t`` of its
    FLOPs and bytes and the whole GEMM's shape, so that the chunks tile the device as
    the whole does (module docstring)."""
    assert isinstance(item, ComputeSegment), "a pipelined GEMM records compute only"
    kernels = {
        r: [replace(k, flops=k.flops / t, bytes=k.bytes / t, seconds=k.seconds / t,
                    model=None if k.model is None else k.model / t) for k in ks]
        for r, ks in item.kernels.items()
    }  # fmt: skip
    return ComputeSegment(kernels, item.tag)

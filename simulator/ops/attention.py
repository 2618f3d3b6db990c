"""Attention's own ops: grouped query heads, and FlashAttention as one fused kernel.

**Grouped-query attention** (Ainslie et al. 2023, "GQA", sec. 2.2): ``a``
query heads share ``kv`` key and value heads, ``g = a / kv`` queries per
group (``kv = a`` is multi-head attention, ``kv = 1`` multi-query). The fused
QKV projection lays its output out group-major, as Megatron-Core's
``linear_qkv`` does: for every group, its ``g`` query heads, then its key,
then its value, each ``d`` wide. A contiguous block of columns then holds
whole groups, which is what lets tensor parallelism split attention by
groups; with ``kv = a`` the layout is GPT's ``[head, (q, k, v), d]``
(:func:`simulator.ops.functional.split_heads`). Queries are viewed as ``(b,
kv, g, s, d)`` and keys and values as ``(b, kv, 1, s, d)``, so one broadcast
GEMM serves every query of a group.

**FlashAttention** (Dao et al. 2022, "FlashAttention", sec. 3.1, algorithm 1;
Dao 2023, "FlashAttention-2", sec. 3) computes ``softmax(Q K^T / sqrt(d)) V``
block by block with an online softmax, never storing the ``s x s`` scores:
it keeps the output and one log-sum-exp per query row (the *softmax
statistics*, in FP32), and its backward recomputes the scores from Q, K and
the statistics. Here it is one kernel forward and one backward, whose FLOPs
are counted as those papers count them (FlashAttention-2, sec. 4.1): ``4 b s^2
h`` forward for ``h = heads x d`` (the two GEMMs ``Q K^T`` and ``P V``), half
of it with the causal mask (the blocks above the diagonal are skipped), and a
backward of 2.5 forwards (five GEMMs: the scores again, ``dV``, ``dP``,
``dQ``, ``dK``). The model's formula credits the same kernel with the full
``4 b s^2 h`` forward and ``8 b s^2 h`` backward (Korthikanti et al. 2022,
appendix A), so MFU is the same whatever the kernel
(:attr:`simulator.ops.tape.Kernel.model`).

The math is factored for blocks: :func:`flash_attention` attends a block of
queries at positions ``q_start ..`` to a block of keys at ``k_start ..`` and
returns the output with its log-sum-exp, and :func:`merge_attention` joins
two such partial results exactly (Milakov and Gimelshein 2018, "Online
normalizer calculation for softmax", sec. 3). A ring or chunked attention
over a split sequence is these two ops in a loop
(:mod:`simulator.parallel.context`). A block's positions may also be runs,
``((start, length), ...)``: a context-parallel rank holds two chunks of the
sequence, and attends with both at once.
"""

from __future__ import annotations

import numpy as np

from .arrays import Array, ShapeArray, dtype_of, is_shape_only
from .basic import bytes_moved, emit

#: A run of consecutive positions, ``(start, length)``.
Span = tuple[int, int]
#: Where a block's queries or keys sit: the first of consecutive positions, or runs.
Where = int | tuple[Span, ...]


def spans_of(where: Where, n: int) -> tuple[Span, ...]:
    """The runs of a block of ``n`` positions given as :data:`Where`."""
    return ((where, n),) if isinstance(where, int) else where


def positions_of(where: Where, n: int) -> np.ndarray:
    """Every position of a block of ``n``, in order."""
    return np.concatenate([np.arange(a, a + m) for a, m in spans_of(where, n)])


# -- grouped heads ------------------------------------------------------------------------


def split_groups(x: Array, kv: int, group: int) -> tuple[Array, Array, Array]:
    """Views of a ``(b, s, kv (group + 2) d)`` QKV activation (module docstring):
    queries ``(b, kv, group, s, d)``, keys and values ``(b, kv, 1, s, d)``. A view
    costs nothing, so no kernel."""
    b, s, width = x.shape
    parts = group + 2
    if width % (kv * parts):
        raise ValueError(f"width {width} does not split into {kv} groups of {parts} heads")
    grouped = x.reshape(b, s, kv, parts, width // (kv * parts)).transpose(0, 2, 3, 1, 4)
    return grouped[:, :, :group], grouped[:, :, group : group + 1], grouped[:, :, group + 1 :]


def merge_groups(q: Array, k: Array, v: Array) -> Array:
    """The inverse of :func:`split_groups`: one contiguous ``(b, s, kv (g + 2) d)``
    array (a copy kernel; with one query per group it is GPT's ``merge_heads``)."""
    b, kv, g, s, d = q.shape
    shape = (b, s, kv * (g + 2) * d)
    dtype = dtype_of(q)
    if is_shape_only(q):
        out: Array = ShapeArray(shape, dtype)
    else:
        out = np.concatenate([q, k, v], axis=2).transpose(0, 3, 1, 2, 4).reshape(shape)
    emit("merge_heads", "elementwise", dtype, 0, bytes_moved(q, k, v, out))
    return out


def sum_groups(x: Array, name: str) -> Array:
    """``(b, kv, g, s, d)`` summed over the ``g`` queries of each group,
    ``(b, kv, 1, s, d)``: the key or value gradient of grouped-query attention."""
    dtype = dtype_of(x)
    if is_shape_only(x):
        out: Array = ShapeArray((*x.shape[:2], 1, *x.shape[3:]), dtype)
    else:
        out = x.sum(axis=2, keepdims=True)
    emit(name, "elementwise", dtype, 0, bytes_moved(x, out))
    return out


# -- FlashAttention -----------------------------------------------------------------------


def visible_pairs(sq: int, sk: int, q_start: int = 0, k_start: int = 0) -> float:
    """Query-key pairs a causal kernel computes: all of them for keys wholly before
    the queries, none for keys wholly after, half of a diagonal block (the papers'
    count, FlashAttention-2 sec. 4.1) -- also when the keys start earlier and end
    where the queries do (a diagonal block after full ones: the queries of a chunk
    over every key up to theirs) -- and the exact count otherwise."""
    if k_start + sk - 1 <= q_start:
        return float(sq * sk)
    if k_start > q_start + sq - 1:
        return 0.0
    if k_start <= q_start and k_start + sk == q_start + sq:
        return sq * (q_start - k_start) + sq * sq / 2
    seen = np.clip(np.arange(q_start, q_start + sq) - k_start + 1, 0, sk)
    return float(seen.sum())


def block_pairs(sq: int, sk: int, q_start: Where = 0, k_start: Where = 0) -> float:
    """:func:`visible_pairs` of a block whose positions may be runs: the sum over its
    pairs of runs."""
    if isinstance(q_start, int) and isinstance(k_start, int):
        return visible_pairs(sq, sk, q_start, k_start)
    return sum(
        visible_pairs(nq, nk, a, b)
        for a, nq in spans_of(q_start, sq)
        for b, nk in spans_of(k_start, sk)
    )


def causal_credit(sq: int, sk: int, q_start: Where = 0, k_start: Where = 0) -> float:
    """The share of a block's ``sq x sk`` pairs the model's formula credits under a
    causal mask: twice the pairs a causal kernel computes, over the pairs.

    The formula counts attention's ``s x s`` matrix in full (Korthikanti et al.
    2022, appendix A), of which a causal attention computes half; crediting
    every block twice its visible pairs makes the credits of the blocks of one
    attention add up to the formula's count however the matrix is cut (one
    block: 1; a context-parallel ring: the blocks each rank computes,
    :mod:`simulator.parallel.context`)."""
    return 2.0 * block_pairs(sq, sk, q_start, k_start) / (sq * sk)


def _flops(q: Array, k: Array, causal: bool, q_start: Where, k_start: Where) -> tuple[float, float]:
    """Executed and model FLOPs of one forward: ``4 x pairs x d`` per query head
    (model: twice the visible pairs under a causal mask, :func:`causal_credit`)."""
    b, kv, g, sq, d = q.shape
    sk = k.shape[-2]
    if not causal:
        return (4.0 * b * kv * g * d * sq * sk,) * 2
    pairs = block_pairs(sq, sk, q_start, k_start)
    return 4.0 * b * kv * g * d * pairs, 8.0 * b * kv * g * d * pairs


def _causal(s: np.ndarray, q_start: Where, k_start: Where) -> np.ndarray:
    """Scores ``s`` with the keys after each query masked (``-inf``)."""
    rows = positions_of(q_start, s.shape[-2])[:, None]
    cols = positions_of(k_start, s.shape[-1])[None, :]
    return np.where(cols > rows, -np.inf, s)


def _scores(
    q: np.ndarray, k: np.ndarray, scale: float, causal: bool, q_start: Where, k_start: Where
):
    s = (q @ k.swapaxes(-1, -2)) * scale
    return _causal(s, q_start, k_start) if causal else s


def _lse(s: np.ndarray) -> np.ndarray:
    """Log-sum-exp over the last axis; ``-inf`` for a row with no visible key."""
    top = s.max(axis=-1, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (safe + np.log(np.exp(s - safe).sum(axis=-1, keepdims=True)))[..., 0]


def _probs(s: np.ndarray, lse: np.ndarray) -> np.ndarray:
    finite = np.isfinite(lse)[..., None]
    return np.where(finite, np.exp(s - np.where(finite, lse[..., None], 0.0)), 0.0)


def flash_attention(
    q: Array,
    k: Array,
    v: Array,
    scale: float,
    causal: bool = True,
    keep: Array | None = None,
    p: float = 0.0,
    q_start: Where = 0,
    k_start: Where = 0,
) -> tuple[Array, Array]:
    """``softmax(scale Q K^T + mask) V`` as one fused kernel, and the log-sum-exp.

    ``q`` is ``(b, kv, g, sq, d)``, ``k`` and ``v`` ``(b, kv, 1, sk, d)``; query
    ``i`` sits at position ``q_start + i``, key ``j`` at ``k_start + j`` (or at the
    ``i``-th position of the runs ``q_start``, :data:`Where`). With
    dropout, ``keep`` is the one-byte mask of the probabilities (regenerated, never
    stored: FlashAttention keeps only its random seed) and ``p`` the drop rate.
    Returns the output ``(b, kv, g, sq, d)`` and the softmax statistics ``(b, kv,
    g, sq)`` in FP32 (numerics: the model's dtype).
    """
    dtype = dtype_of(q)
    executed, model = _flops(q, k, causal, q_start, k_start)
    if is_shape_only(q):
        out: Array = ShapeArray(q.shape, dtype)
        lse: Array = ShapeArray(q.shape[:-1], "float32")
    else:
        s = _scores(q, k, scale, causal, q_start, k_start)
        lse = _lse(s)
        probs = _probs(s, lse)
        if keep is not None:
            probs = probs * keep / (1.0 - p)
        out = probs @ v
    emit("flash_attention", "attention", dtype, executed, bytes_moved(q, k, v, out, lse), model)
    return out, lse


def flash_attention_backward(
    dout: Array,
    q: Array,
    k: Array,
    v: Array,
    out: Array,
    lse: Array,
    scale: float,
    causal: bool = True,
    keep: Array | None = None,
    p: float = 0.0,
    q_start: Where = 0,
    k_start: Where = 0,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`flash_attention` w.r.t. ``q``, ``k`` and ``v``, from what its
    forward kept (one kernel; Dao 2023, algorithm 2).

    The scores are recomputed, ``P = exp(S - lse)``; with ``D = rowsum(dO * O)``
    the score gradient is ``dS = P (dP - D)``, since ``rowsum(P dP) = D``. The key
    and value gradients of a group add over its queries.
    """
    dtype = dtype_of(q)
    executed, model = _flops(q, k, causal, q_start, k_start)
    if is_shape_only(q):
        dq: Array = ShapeArray(q.shape, dtype)
        dk: Array = ShapeArray(k.shape, dtype)
        dv: Array = ShapeArray(v.shape, dtype)
    else:
        probs = _probs(_scores(q, k, scale, causal, q_start, k_start), lse)
        dropped = probs if keep is None else probs * keep / (1.0 - p)
        dv = (dropped.swapaxes(-1, -2) @ dout).sum(axis=2, keepdims=True)
        dprobs = dout @ v.swapaxes(-1, -2)
        if keep is not None:
            dprobs = dprobs * keep / (1.0 - p)
        rows = (dout * out).sum(axis=-1, keepdims=True)
        dscores = scale * probs * (dprobs - rows)
        dq = dscores @ k
        dk = (dscores.swapaxes(-1, -2) @ q).sum(axis=2, keepdims=True)
    moved = bytes_moved(dout, q, k, v, out, lse, dq, dk, dv)
    emit("flash_attention_backward", "attention", dtype, 2.5 * executed, moved, 2 * model)
    return dq, dk, dv


def merge_attention(out1: Array, lse1: Array, out2: Array, lse2: Array) -> tuple[Array, Array]:
    """Two partial attentions of the same queries over disjoint keys, joined exactly:
    ``lse = log(e^lse1 + e^lse2)`` and ``out = e^(lse1 - lse) out1 + e^(lse2 - lse) out2``
    (the online softmax's rescaling, Milakov and Gimelshein 2018, sec. 3). A query
    with no visible key in one part (``lse = -inf``) takes the other part whole."""
    if is_shape_only(out1):
        out: Array = ShapeArray(out1.shape, dtype_of(out1))
        lse: Array = ShapeArray(lse1.shape, dtype_of(lse1))
    else:
        lse = np.logaddexp(lse1, lse2)
        base = np.where(np.isfinite(lse), lse, 0.0)

        def weight(part: np.ndarray) -> np.ndarray:
            return np.where(np.isfinite(part), np.exp(part - base), 0.0)[..., None]

        out = weight(lse1) * out1 + weight(lse2) * out2
    moved = bytes_moved(out1, lse1, out2, lse2, out, lse)
    emit("merge_attention", "elementwise", dtype_of(out1), 0, moved)
    return out, lse


# -- materialised blocks ------------------------------------------------------------------


def block_softmax(
    scores: Array, scale: float, q_start: Where, k_start: Where
) -> tuple[Array, Array]:
    """The softmax of one block of ``scale * scores`` over its own keys, causally masked
    for queries at ``q_start ..`` and keys at ``k_start ..``, and its log-sum-exp.

    The materialised kernel's building block when the keys arrive in blocks (ring
    attention, :mod:`simulator.parallel.context`): the probabilities are kept for
    backward, and the statistics let the partial outputs merge
    (:func:`merge_attention`) and the probabilities be rescaled to the whole
    row's later (:func:`block_softmax_backward`). A query that sees no key of the
    block gets zeros and ``-inf``. ``scores`` is ``(..., sq, sk)``; one
    normalization kernel, as :func:`~simulator.ops.functional.causal_softmax`.
    """
    dtype = dtype_of(scores)
    if is_shape_only(scores):
        probs: Array = ShapeArray(scores.shape, dtype)
        lse: Array = ShapeArray(scores.shape[:-1], "float32")
    else:
        s = _causal(scale * scores, q_start, k_start)
        lse = _lse(s)
        probs = _probs(s, lse)
    emit("block_softmax", "normalization", dtype, 0, bytes_moved(scores, probs, lse))
    return probs, lse


def row_dot(dout: Array, out: Array) -> Array:
    """``D = rowsum(dO * O)`` per query and head, ``(..., sq)``: the term every block's
    softmax gradient subtracts (Dao 2023, algorithm 2, line 4)."""
    dtype = dtype_of(out)
    rows = ShapeArray(out.shape[:-1], "float32") if is_shape_only(out) else (dout * out).sum(-1)
    emit("attention_rows", "elementwise", dtype, 0, bytes_moved(dout, out, rows))
    return rows


def rescale_rows(x: Array, lse_block: Array, lse: Array, name: str) -> Array:
    """``x`` with every query row weighted by ``exp(lse_block - lse)``: a block's share
    of the whole row's softmax (0 for a row that saw none of the block)."""

    def fn(v: np.ndarray, part: np.ndarray, whole: np.ndarray) -> np.ndarray:
        base = np.where(np.isfinite(whole), whole, 0.0)
        weight = np.where(np.isfinite(part), np.exp(part - base), 0.0)
        return v * weight[..., None]

    dtype = dtype_of(x)
    out = ShapeArray(x.shape, dtype) if is_shape_only(x) else fn(x, lse_block, lse)
    emit(name, "elementwise", dtype, 0, bytes_moved(x, lse_block, lse, out))
    return out


def block_softmax_backward(
    dprobs: Array, probs: Array, lse_block: Array, lse: Array, rows: Array, scale: float
) -> Array:
    """Gradient of a block's scores from the gradient of the whole row's probabilities:
    ``dS = scale P (dP - D)`` with ``P = probs exp(lse_block - lse)``, the block's
    probabilities rescaled to the whole row's, and ``D`` from :func:`row_dot`
    (``rowsum(P dP) = D`` over all blocks of the row; Dao 2023, algorithm 2)."""

    def fn(dp: np.ndarray, p: np.ndarray, part: np.ndarray, whole: np.ndarray, d: np.ndarray):
        base = np.where(np.isfinite(whole), whole, 0.0)
        weight = np.where(np.isfinite(part), np.exp(part - base), 0.0)
        return scale * p * weight[..., None] * (dp - d[..., None])

    dtype = dtype_of(probs)
    if is_shape_only(probs):
        out: Array = ShapeArray(probs.shape, dtype)
    else:
        out = fn(dprobs, probs, lse_block, lse, rows)
    moved = bytes_moved(dprobs, probs, lse_block, lse, rows, out)
    emit("block_softmax_backward", "normalization", dtype, 0, moved)
    return out

"""Attention block by block equals the whole core, forward and backward, with either kernel.

A rank holding chunks 0 and 3 of a sequence cut in 4 (context parallelism's
balanced layout) attends to the blocks of keys it receives; merged by their
log-sum-exp the partial outputs are the core's, and each block's gradients,
from the whole row's output and statistics, add up to the core's.
"""

import numpy as np
import pytest

from simulator.nn.attention import AttentionCore
from simulator.nn.blockwise import attend_block, attend_block_backward
from simulator.nn.context import BatchInfo, batch
from simulator.nn.dropout import Dropout
from simulator.ops.attention import merge_attention, row_dot

B, S, HEADS, KV, D = 2, 8, 4, 2, 4
CHUNK = S // 4
MINE = ((0, CHUNK), (6, CHUNK))  # chunks 0 and 3
OTHERS = [((2, CHUNK), (4, CHUNK))]  # chunks 1 and 2, a neighbour's block
ROWS = np.r_[0:2, 6:8]
OTHER_ROWS = np.r_[2:6]


@pytest.mark.parametrize("selective", [False, True])
@pytest.mark.parametrize("kernel", ["flash", "materialised"])
def test_blocks_merge_into_the_whole_core(kernel, selective):
    core = AttentionCore("core", HEADS, D, Dropout(0.2, 0, "attention_probs"), selective,
                         kv_heads=KV, kernel=kernel)  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, S, KV * (HEADS // KV + 2) * D))
    with batch(BatchInfo(1, 0, 0, B)):
        y, ctx = core.forward(x)
        dy = rng.normal(size=y.shape)
        dx, _ = core.backward_input(dy, ctx)
        q, k, v = core.split(x)
        mine = q[..., ROWS, :]
        parts = []
        out = lse = None
        for keys, rows in [(MINE, ROWS), (OTHERS[0], OTHER_ROWS)]:
            o, s, kept = attend_block(core, mine, k[..., rows, :], v[..., rows, :], MINE, keys, S)
            parts.append((keys, rows, kept))
            out, lse = (o, s) if out is None else merge_attention(out, lse, o, s)
        np.testing.assert_allclose(core.merge(out), y[:, ROWS], rtol=1e-12, atol=1e-14)
        dout = core.heads_of(dy)[..., ROWS, :]
        rows_dot = row_dot(dout, out)
        dq = np.zeros_like(mine)
        dk, dv = np.zeros_like(k), np.zeros_like(v)
        for keys, rows, kept in parts:
            g = attend_block_backward(core, dout, mine, k[..., rows, :], v[..., rows, :], out,
                                      lse, rows_dot, kept, MINE, keys, S)  # fmt: skip
            dq += g[0]
            dk[..., rows, :] += g[1]
            dv[..., rows, :] += g[2]
    # the rank's share of the whole input gradient: its queries' part, and every key's
    # and value's gradient from its queries (the other ranks' queries add the rest)
    other = core.heads_of(dy).copy()
    other[..., OTHER_ROWS, :] = 0.0
    with batch(BatchInfo(1, 0, 0, B)):
        _, ctx = core.forward(x)
        expected, _ = core.backward_input(core.merge(other), ctx)
    every_dq = np.zeros_like(q)
    every_dq[..., ROWS, :] = dq
    got = core.unrotate(every_dq, dk, dv)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)
    assert not np.allclose(got, dx)  # the other queries' share is missing, and it is some

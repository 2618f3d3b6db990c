"""Which tokens of every sequence a context-parallel rank holds.

Context parallelism splits every sequence of the micro-batch over the ``cp``
ranks of a group: each holds ``s/cp`` tokens of every sequence, and all that
is not attention (norms, projections, the MLP, the loss) works on them alone.
Attention mixes positions, so it is where the ranks must talk
(:mod:`.attention`).

Under a causal mask the ``i``-th query attends to ``i + 1`` keys, so a rank
holding the ``r``-th contiguous ``s/cp`` tokens would do ``r + 1/2`` blocks of
work and the last rank about twice the mean. Megatron-Core and
TransformerEngine cut the sequence into ``2 cp`` chunks instead and give rank
``r`` the chunks ``r`` and ``2 cp - 1 - r`` (one early, one late): every rank
then does the same work (``cp_balance = true``, the default; the Llama 3
Herd of Models, sec. 3.3.2, balances the same way). Without it
(``cp_balance = false``) rank ``r`` holds the ``r``-th contiguous part.

A rank's tokens are listed as *spans*, ``(start, length)`` runs of
positions, and as the array of its positions (what rotary embeddings,
position tables and dropout windows read).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ...ops.attention import Span


@dataclass(frozen=True)
class TokenLayout:
    """The positions each of ``cp`` ranks holds of a ``seq_len`` sequence."""

    seq_len: int
    cp: int = 1
    balanced: bool = True

    @property
    def pieces(self) -> int:
        """Chunks the sequence is cut into: ``2 cp`` balanced, ``cp`` otherwise."""
        return 2 * self.cp if self.balanced and self.cp > 1 else self.cp

    @property
    def chunk(self) -> int:
        """Tokens per chunk."""
        return self.seq_len // self.pieces

    @property
    def local(self) -> int:
        """Tokens every rank holds of every sequence, ``s / cp``."""
        return self.seq_len // self.cp

    def chunks(self, rank: int) -> tuple[int, ...]:
        """The chunks ``rank`` holds, in the order it holds them."""
        if self.pieces == self.cp:
            return (rank,)
        return (rank, self.pieces - 1 - rank)

    def spans(self, rank: int) -> tuple[Span, ...]:
        """``rank``'s tokens as runs of positions, in the order it holds them."""
        n = self.chunk
        return tuple((c * n, n) for c in self.chunks(rank))

    @cached_property
    def _positions(self) -> tuple[np.ndarray, ...]:
        out = []
        for rank in range(self.cp):
            pos = np.concatenate([np.arange(a, a + n) for a, n in self.spans(rank)])
            pos.flags.writeable = False
            out.append(pos)
        return tuple(out)

    def positions(self, rank: int) -> np.ndarray:
        """The position of every token ``rank`` holds, in order (read-only)."""
        return self._positions[rank]

    @cached_property
    def order(self) -> np.ndarray:
        """Every position, rank after rank, as the ranks hold them: what a gather over
        the group puts side by side (its inverse puts it back in sequence order)."""
        order = np.concatenate(self._positions)
        order.flags.writeable = False
        return order

    @cached_property
    def inverse(self) -> np.ndarray:
        """Where each position of the sequence sits in :attr:`order`."""
        inverse = np.argsort(self.order)
        inverse.flags.writeable = False
        return inverse

"""A chunk: the contiguous run of blocks one pipeline stage holds.

The chunk is where a micro-batch's forward and backward are stitched from its
blocks, where the loss is applied on the last chunk, and where activation
recomputation happens (``recompute = "full"`` keeps only every block's input
and reruns its forward right before its backward -- GPipe's
re-materialisation, Huang et al. 2019, sec. 2.3; Chen et al. 2016).

It leaves :class:`~simulator.ops.tape.Mark` records on the tape -- the start of
each block's work and the moment each block's parameter gradients are final
-- so that data-parallel hooks can gather parameters or launch gradient
all-reduces at the right point of the timeline.
"""

from __future__ import annotations

from typing import Any

from ..nn.context import loss_scale
from ..nn.param import Param
from ..ops.arrays import Array, tree_bytes
from ..ops.precision import gemm_precision
from ..ops.tape import Mark, record, tagged
from .reuse import run_unit
from .tensor import ParallelBlock, ShardLoss

RECOMPUTE = ("none", "full", "selective")


class Chunk:
    """Blocks ``blocks`` of model stage ``index``; ``loss`` only on the last stage.

    ``precision`` is the strategy's: the blocks' linear layers run their GEMMs
    in FP8 under ``"fp8"`` (:mod:`simulator.ops.precision`).
    """

    def __init__(
        self,
        index: int,
        blocks: list[ParallelBlock],
        loss: ShardLoss | None,
        recompute: str = "none",
        precision: str = "bf16",
    ) -> None:
        self.index = index
        self.blocks = blocks
        self.loss = loss
        self.recompute = recompute
        self.precision = precision
        self.ranks = blocks[0].ranks if blocks else 1
        for block in blocks:
            block.configure(selective=recompute == "selective")

    @property
    def output_sharded(self) -> bool:
        """Whether the chunk's output differs across tensor-parallel ranks (it ends in a
        column-parallel layer) instead of being replicated on every rank."""
        sharded = False
        for block in self.blocks:
            if block.shards_output is not None:
                sharded = block.shards_output
        return sharded

    def _rerun(self, i: int) -> bool:
        """Whether block ``i`` keeps only its input and reruns its forward in backward."""
        return self.recompute == "full" and self.blocks[i].recomputable

    # -- forward -----------------------------------------------------------------
    def forward(
        self, xs: list[Array], targets: list[Array] | None = None, apply_loss: bool = True
    ) -> tuple[list[Array], Any]:
        """Run the blocks; on the last chunk return the per-rank loss values (unless
        ``apply_loss`` is false: ``nn.DataParallel`` applies it to the gathered outputs)."""
        with gemm_precision(self.precision):
            return self._forward(xs, targets, apply_loss)

    def _forward(
        self, xs: list[Array], targets: list[Array] | None, apply_loss: bool
    ) -> tuple[list[Array], Any]:
        ctxs = []
        for i, block in enumerate(self.blocks):
            record(Mark("block", (self.index, i, "F")))
            inputs = xs
            xs, c = run_unit("F", block, inputs, lambda b=block, x=inputs: b.forward(x))
            ctxs.append(("inputs", inputs) if self._rerun(i) else c)
        if self.loss is None or not apply_loss:
            return xs, (ctxs, None)
        values, lctx = self.loss.forward(xs, targets)
        return values, (ctxs, lctx)

    # -- backward ----------------------------------------------------------------
    def _block_ctx(self, i: int, c: Any) -> Any:
        """The block's saved context, rebuilt by a second forward under full recomputation."""
        if self._rerun(i):
            with tagged("recompute"):
                _, c = self.blocks[i].forward(c[1])
        return c

    def _start(self, dys: list[Array] | None, ctx: Any, scale: float) -> list[Array]:
        _, lctx = ctx
        if lctx is not None:
            return self.loss.backward(lctx, scale)
        assert dys is not None
        return dys

    def backward_input(
        self, dys: list[Array] | None, ctx: Any, scale: float
    ) -> tuple[list[Array], list[Any]]:
        """B: input gradients only; returns them and what W will need."""
        with gemm_precision(self.precision), loss_scale(scale):
            return self._backward_input(dys, ctx, scale)

    def _backward_input(
        self, dys: list[Array] | None, ctx: Any, scale: float
    ) -> tuple[list[Array], list[Any]]:
        ctxs, _ = ctx
        dys = self._start(dys, ctx, scale)
        wctxs: list[Any] = [None] * len(self.blocks)
        for i in reversed(range(len(self.blocks))):
            record(Mark("block", (self.index, i, "B")))
            dys, wctxs[i] = run_unit(
                f"B {self.recompute}",
                self.blocks[i],
                (dys, ctxs[i]),
                lambda i=i, d=dys: self.blocks[i].backward_input(d, self._block_ctx(i, ctxs[i])),
            )
        return dys, wctxs

    def backward_weight(self, wctxs: list[Any]) -> None:
        """W: parameter gradients of every block, last block first."""
        with gemm_precision(self.precision):
            self._backward_weight(wctxs)

    def _backward_weight(self, wctxs: list[Any]) -> None:
        for i in reversed(range(len(self.blocks))):
            record(Mark("block", (self.index, i, "W")))
            block = self.blocks[i]
            run_unit("W", block, wctxs[i], lambda b=block, w=wctxs[i]: b.backward_weight(w))
            record(Mark("grads_ready", (self.index, i)))

    def backward(self, dys: list[Array] | None, ctx: Any, scale: float) -> list[Array]:
        """B and W fused, block by block, as schedules without a B/W split run them."""
        with gemm_precision(self.precision), loss_scale(scale):
            return self._backward(dys, ctx, scale)

    def _backward(self, dys: list[Array] | None, ctx: Any, scale: float) -> list[Array]:
        ctxs, _ = ctx
        dys = self._start(dys, ctx, scale)
        for i in reversed(range(len(self.blocks))):
            record(Mark("block", (self.index, i, "B")))
            dys = run_unit(
                f"BW {self.recompute}",
                self.blocks[i],
                (dys, ctxs[i]),
                lambda i=i, d=dys: self.blocks[i].backward(d, self._block_ctx(i, ctxs[i])),
            )
            record(Mark("grads_ready", (self.index, i)))
        return dys

    # -- bookkeeping ---------------------------------------------------------------
    def stash_bytes(self, ctx: Any, rank: int) -> int:
        """Activation bytes rank ``rank`` keeps from forward until backward."""
        ctxs, lctx = ctx
        seen: set[int] = set()
        total = sum(
            tree_bytes(c[1][rank] if self._rerun(i) else c[rank], seen) for i, c in enumerate(ctxs)
        )
        return total + (tree_bytes(lctx[rank], seen) if lctx is not None else 0)

    @staticmethod
    def wstash_bytes(wctxs: list[Any], rank: int) -> int:
        """Bytes rank ``rank`` keeps from B until W (inputs and output gradients)."""
        seen: set[int] = set()
        return sum(tree_bytes(w[rank], seen) for w in wctxs)

    def params(self, rank: int) -> list[Param]:
        return [p for b in self.blocks for p in b.params(rank)]

    def full_params(self) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for b in self.blocks:
            out.update(b.full_params())
        return out

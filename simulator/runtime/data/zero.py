"""Parameter all-gathers: after a sharded optimizer step, and ZeRO-3's per block.

Under ZeRO (Rajbhandari et al. 2020, sec. 5) every replica updates only the
part of the parameters it owns; an all-gather then gives every replica the
whole updated parameters (:meth:`ParameterGathers._gather_params`). ZeRO-3
keeps only its part between uses and all-gathers each block's parameters
right before the block runs (:meth:`ParameterGathers._gather_block`),
holding them until the next block.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ...engine import Engine, Process
from ...engine.memory import BUFFERS
from ...nn.param import Param
from ...ops.arrays import ShapeArray, dtype_of, is_shape_only, split_bounds
from ...parallel.build import Plan
from ...parallel.data.buckets import Bucket
from ...parallel.worker import Worker
from ..meetings import Meetings
from ..workers import SimWorker


class ParameterGathers:
    """The all-gathers of :class:`~.ddp.DataParallel` under ZeRO (module docstring)."""

    plan: Plan
    engine: Engine
    meetings: Meetings
    algorithm: str
    zero: int
    dp_size: int
    buckets: list[list[Bucket]]
    _gathered: dict[int, list[int]]
    _gathers: Counter
    _shard: Callable[[Worker, int, Bucket], Param]
    _group: Callable[[Worker, Bucket], list[Worker]]
    _payloads: Callable[[SimWorker, Callable[[Worker], Any]], dict[int, Any]]
    _members: Callable[[SimWorker], list[Worker]]

    def _gather_params(self, sw: SimWorker) -> Process:
        """All-gather the updated parts of every bucket and write the parameters back:
        one gather over the replicas, and one over the replicas holding the same
        experts for the experts' buckets (expert parallelism)."""
        for expert in (False, True):
            buckets = [b for b in self.buckets[sw.pp_rank] if b.expert == expert]
            if buckets:
                yield from self._gather_buckets(sw, buckets)

    def _gather_buckets(self, sw: SimWorker, buckets: list[Bucket]) -> Process:
        group = self._group(sw.lead, buckets[0])
        t = len(sw.devices)
        ranks = [r for _ in buckets for r in range(t)]

        def parts(w: Worker) -> list[Any]:
            return [self._shard(w, r, b).value for b in buckets for r in range(t)]

        def run(payloads: list[list[Any]]) -> tuple[list[list[Any]], float]:
            # ZeRO-3 pays for its gathers block by block, before each use
            return self.meetings.per_rank(
                "all_gather",
                self.algorithm,
                group,
                payloads,
                "dp",
                "param all-gather",
                timed=self.zero < 3,
                ranks=ranks,
            )

        handle = yield from self.meetings.meet(
            sw,
            ("params", sw.pp_rank, buckets[0].expert, group[0].index),
            group,
            self._payloads(sw, parts),
            run,
            "the parameter all-gather of its replicas",
        )
        for w in self._members(sw):
            flat_of = iter(handle.results[w.index])
            for bucket in buckets:
                for r in range(t):
                    flat = next(flat_of)
                    if is_shape_only(flat):
                        continue
                    offset = 0
                    for p in bucket.params(w, r):
                        p.value[...] = flat[offset : offset + p.size].reshape(p.shape)
                        offset += p.size

    def _gather_block(self, sw: SimWorker, chunk: int, block: int) -> Process:
        """All-gather one block's parameters right before it runs; held until the next block."""
        group = self.plan.dp_group(sw.pp_rank)
        w = sw.lead
        (bucket,) = [b for b in self.buckets[sw.pp_rank] if b.blocks == {(chunk, block)}]
        pieces, held = [], []
        for r in range(len(w.devices)):
            params = bucket.params(w, r)
            size = sum(p.size for p in params)
            dtype = dtype_of(params[0].value)
            bounds = split_bounds(size, self.dp_size)
            pieces.append([ShapeArray((hi - lo,), dtype) for lo, hi in bounds])
            held.append(sum(p.nbytes for p in params) - self._shard(w, r, bucket).nbytes)
        sw.charge(self.engine, BUFFERS, held)
        self._gathered[sw.index] = held

        def run(_: list[Any]) -> tuple[list[Any], float]:
            # every member's part has the same shape; the values were gathered already
            t = len(w.devices)
            payloads = [[pieces[r][m] for r in range(t)] for m in range(self.dp_size)]
            _, end = self.meetings.per_rank(
                "all_gather", self.algorithm, group, payloads, "dp", "param all-gather"
            )
            return [None] * len(group), end

        self._gathers[(sw.index, chunk, block)] += 1
        key = ("gather", sw.pp_rank, chunk, block, self._gathers[(sw.index, chunk, block)])
        yield from self.meetings.meet(
            sw, key, group, dict.fromkeys(m.index for m in sw.members), run,
            "a ZeRO-3 parameter all-gather",
        )  # fmt: skip

    def _release_gathered(self, sw: SimWorker) -> None:
        held = self._gathered.pop(sw.index, None)
        if held is not None:
            sw.charge(self.engine, BUFFERS, [-b for b in held])

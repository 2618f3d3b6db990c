"""Tied weights that a pipeline splits: Megatron-LM's embedding group.

A GPT uses its token embedding twice: to look tokens up on the first stage
and to compute the logits on the last. When the pipeline puts the two ends on
different workers, each holds its own copy of the table; both copies must get
the *sum* of both uses' gradients before every update, so that they stay
equal (Shoeybi et al. 2019, sec. 3; Megatron-LM's ``_allreduce_embedding_grads``
all-reduces them over the group of the first and last pipeline stage). The
planner makes the copies (:func:`tie_copies`); the data-parallel step sums the
gradients after the replicas have agreed (:func:`sync_tied`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import comm
from ..engine import Process
from ..nn.param import Param
from .worker import Worker

if TYPE_CHECKING:
    from ..runtime.core import Runtime
    from ..runtime.workers import SimWorker


@dataclass(frozen=True)
class TiedPair:
    """A parameter owned on worker ``owner`` and copied on worker ``user``.

    ``params`` holds ``(tp rank, owner's Param, user's copy)`` per shard.
    """

    owner: int
    user: int
    params: tuple[tuple[int, Param, Param], ...]

    def mine(self, w: Worker) -> list[tuple[int, Param]]:
        """This worker's side of the pair: ``(tp rank, Param)``."""
        side = 1 if w.index == self.owner else 2
        return [(entry[0], entry[side]) for entry in self.params]


def tie_copies(replica: list[Worker]) -> list[TiedPair]:
    """Give every borrowed parameter whose owner is another worker a copy of its own."""
    owner_of = {id(p): w for w in replica for r in range(len(w.devices)) for p in w.params(r)}
    copies: dict[tuple[int, int], list[tuple[int, Param, Param]]] = {}
    for w in replica:
        for chunk in w.chunks.values():
            for block in chunk.blocks:
                for r in range(block.ranks):
                    for p in block.borrowed(r):
                        owner = owner_of.get(id(p))
                        if owner is not None and owner is not w:
                            copy = block.own_copy(r, p)
                            copies.setdefault((owner.index, w.index), []).append((r, p, copy))
    return [TiedPair(o, u, tuple(ps)) for (o, u), ps in copies.items()]


def sync_tied(
    rt: Runtime,
    sw: SimWorker,
    pairs: list[TiedPair],
    grad_of: Callable[[Worker, int, Param], Any],
) -> Process:
    """Sum the gradients of both copies of every tied pair ``sw``'s members belong to.

    ``grad_of(worker, rank, param)`` returns the array that holds the
    parameter's gradient (under ZeRO, the owned part of its bucket). Every
    pair is launched before any is waited for: the replicas' sums run side by
    side.
    """
    mine = {m.index: m for m in sw.members}
    launched = []
    for k, pair in enumerate(pairs):
        members = [rt.plan.workers[pair.owner], rt.plan.workers[pair.user]]
        here = [m for m in members if m.index in mine]
        if not here:
            continue

        def run(payloads: list[list[Any]], members=members, pair=pair) -> tuple[list, float]:
            results: list[list[Any]] = [[], []]
            end = rt.env.now
            for i, (r, _, _) in enumerate(pair.params):
                devices = (members[0].devices[r], members[1].devices[r])
                outs, plan = comm.collective(
                    "all_reduce", [p[i] for p in payloads], "ring", layout=rt.layout_of(devices)
                )
                end = max(
                    end, rt.engine.collective(plan, devices, "embedding", "tied embedding grads")
                )
                for m, out in enumerate(outs):
                    results[m].append(out)
            return results, end

        payloads = {w.index: [grad_of(w, r, p) for r, p in pair.mine(w)] for w in here}
        launched.append((pair, here, rt.meetings.launch(("tied", k), members, payloads, run)))
    yield from rt.meetings.wait(sw, [h for _, _, h in launched], "the gradient of its tied copy")
    if rt.shape_only:
        return
    for pair, here, handle in launched:
        for w in here:
            for out, (r, p) in zip(handle.results[w.index], pair.mine(w), strict=True):
                grad_of(w, r, p)[...] = out

"""Summing the gradients of tied copies: Megatron-LM's embedding all-reduce, at run time.

A GPT uses its token embedding on the first stage and for the logits on the
last; when a pipeline puts them on different workers, each holds a copy
(:func:`simulator.parallel.tied.tie_copies`), and both copies must get the
*sum* of both uses' gradients before every update, so that they stay equal
(Shoeybi et al. 2019, sec. 3; Megatron-LM's ``_allreduce_embedding_grads``
all-reduces them over the group of the first and last pipeline stage). The
data-parallel step does it after the replicas have agreed (:func:`sync_tied`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...engine import Process
from ...nn.param import Param
from ...parallel.tied import TiedPair
from ...parallel.worker import Worker
from ..meetings import Meetings
from ..workers import SimWorker


def sync_tied(
    meetings: Meetings,
    sw: SimWorker,
    pairs: Sequence[TiedPair],
    workers: Sequence[Worker],
    grad_of: Callable[[Worker, int, Param], Any],
    numerics: bool,
    what: tuple[str, str, str] = ("tied", "embedding", "tied embedding grads"),
) -> Process:
    """Sum the gradients of both copies of every tied pair ``sw``'s members belong to.

    ``workers`` are the plan's, by index; ``grad_of(worker, rank, param)`` returns
    the array that holds the parameter's gradient (under ZeRO, the owned part of
    its bucket). Every pair is launched before any is waited for: the replicas'
    sums run side by side. ``what`` names the pairs' meetings, the kind of their
    traffic and its label (the tied embedding's by default; DualPipe's copies of
    its stages, :func:`simulator.parallel.tied.stage_copies`, are pairs too).
    """
    tag, kind, label = what
    mine = {m.index: m for m in sw.members}
    launched = []
    for k, pair in enumerate(pairs):
        members = [workers[pair.owner], workers[pair.user]]
        here = [m for m in members if m.index in mine]
        if not here:
            continue

        def run(payloads: list[list[Any]], members=members, pair=pair) -> tuple[list, float]:
            ranks = [r for r, _, _ in pair.params]
            return meetings.per_rank(
                "all_reduce", "ring", members, payloads, kind, label, ranks=ranks
            )

        payloads = {w.index: [grad_of(w, r, p) for r, p in pair.mine(w)] for w in here}
        launched.append((pair, here, meetings.launch((tag, k), members, payloads, run)))
    yield from meetings.wait(sw, [h for _, _, h in launched], f"the gradient of its {tag} copy")
    if not numerics:
        return
    for pair, here, handle in launched:
        for w in here:
            for out, (r, p) in zip(handle.results[w.index], pair.mine(w), strict=True):
                grad_of(w, r, p)[...] = out

"""A lower bound on a layout's step time: what lets the planner skip most simulations.

The planner is a branch and bound (Land and Doig 1960): it simulates layouts
in the order of a lower bound on their step time and stops when the next
bound is no better than the ``k``-th fastest step simulated so far. Every
layout it skips is provably slower than the ``k`` it shows, so the top ``k``
are those an exhaustive search finds; the skipped layouts are counted under
:data:`BOUND_RULE`.

**The bound.** In the simulator a pipeline rank runs its schedule's actions
one at a time, in the schedule's order, and an action starts only after the
actions it depends on have finished (its input activation, its output
gradient; :func:`~simulator.parallel.pipeline.actions.dependencies`). An
action lasts at least its compute: the seconds of its compute segments on
the device's roofline -- the same blocks, run by the same
:class:`~simulator.parallel.stage.Chunk` code on a tape priced by the same
:func:`~simulator.runtime.tapes.compile_tape` as the runtime's. Everything
else a simulation adds (tensor-parallel collectives, pipeline messages, the
data-parallel gradient sync, ZeRO gathers, the optimizer) only delays
actions. So the longest path through the schedule's dependency graph, with
every action taking its compute
(:func:`~simulator.parallel.pipeline.timeline.run`), is at most the
simulated step. It is the pipeline's ideal makespan: compute plus the
schedule's own bubble (Narayanan et al. 2021, sec. 2.2, eq. 1 for 1F1B).

**The communication no schedule hides.** On idle links every message takes
at least its alpha-beta time, and contention only adds, so the bound adds
what a layout cannot overlap, each timed on the links of the devices the
mesh order puts it on (:class:`~simulator.engine.network.Network`, on idle
ports):

* the *blocking* tensor-parallel collectives of every action (those the code
  waits for at once; Megatron's asynchronous ones may hide behind GEMMs and
  count nothing, and so do the chunks ``tp_comm_overlap`` pipelines with the
  GEMMs, and all of a schedule whose ``F&B`` pairs overlap a forward with a
  backward, DualPipe's with ``ep_overlap`` ``fb`` or ``both``), on the stage's
  own tensor-parallel group;
* on a device that states ``overlap_slowdown``, the compute segment right after
  one or more asynchronous collectives are launched (nothing between them)
  runs beside them at least for their time on idle links, so it takes at least
  :func:`~simulator.engine.cost.overlapped` of that (a collective only ends
  later under contention, and a later end only slows the segment more).
  Nothing is counted for a segment the runtime may start later than the
  launch (after a wait, a blocking collective or a mark), nor in a schedule
  whose overlapped ``F&B`` pairs make a segment wait for its turn;
* a pipeline message on every dependency between ranks: the fastest of the
  layout's activation messages (``1/t`` of it with the scatter/gather);
* after a rank's last action, the data-parallel exchange of its gradients
  (one all-reduce, or ZeRO-1's reduce-scatter without ``overlap_grad_reduce``),
  its optimizer step (its bytes at the memory's speed) and, for ZeRO-1 and 2,
  the all-gather of the updated parameters unless ``overlap_param_gather``
  moves it beside the next step's forward -- the step cannot end before.

A block's compute is the same in every stage that holds it (compute segments
end at every block's mark), so a stage's is the sum of its blocks', each
priced once per (``tp``, sequence parallelism, recomputation, precision,
micro-batch size, and context parallelism: a ``cp x tp`` worker runs its
blocks on each rank's tokens, :mod:`simulator.parallel.context`). The sum is
scaled by ``1 - 1e-9`` so that summing in another order than the runtime
cannot push the bound over the simulated time.

Context and expert parallelism (``cp > 1``, ``ep > 1``) count compute alone:
their blocks' collectives (the attention ring, the experts' all-to-all), their
pipeline messages and their data-parallel exchange (over ``dp x cp`` ranks,
the experts' over fewer) count nothing -- a weaker bound, still a bound -- and
the optimizer step is the share of ``dp x cp`` ranks under ZeRO (the
families' :meth:`StepBound.floor` is 0).

The bound needs one kind of device (on mixed clusters it is 0: no layout is
skipped) and the strategy variants whose compute is the chunks' own (the
``replicated`` variant gathers outputs on one device: 0 as well). Gradient
buckets, ZeRO-2 and 3, and ZeRO-1 with ``overlap_grad_reduce`` (its default)
reduce during backward, where compute may hide all but the last bucket: their
reductions count nothing (a weaker bound, still a bound), and ZeRO's all-gather
after the step still does.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import replace
from typing import Any, NamedTuple

from .. import comm
from ..comm.layout import GroupLayout, Layouts, placed
from ..engine.cost import CostModel, overlapped
from ..engine.network import Network
from ..errors import SimulatorError
from ..nn.context import BatchInfo, batch
from ..ops.arrays import ShapeArray, nbytes
from ..ops.tape import Kernel, recording
from ..parallel.build import (
    context_copies,
    group_block,
    group_loss,
    parallel_loss,
    parallelize,
    resolve_schedule,
    token_layout,
)
from ..parallel.data import get_variant
from ..parallel.mesh import Mesh
from ..parallel.pipeline.actions import BW, B
from ..parallel.pipeline.schedules import get_schedule
from ..parallel.stage import Chunk
from ..parallel.strategy import Strategy
from ..runtime.tapes import COLLECTIVE, SEGMENT, compile_tape
from ..transfer import TransferPlan
from .longest_path import LongestPath
from .prune import Pruner, schedule_key, signature


def _moved(call: Any, t: int) -> float:
    """Bytes every rank of ``t`` must receive for a tensor-parallel collective ``call``
    read at ``t = 2``: ``2 (t-1)/t n`` for an all-reduce of ``n``, ``(t-1)/t n`` for an
    all-gather or reduce-scatter (``n`` the whole array)."""
    sent = sum(call.plan.bytes_by_rank)  # at t = 2 every algorithm moves the least
    if call.op == "all_reduce":
        return 2 * (t - 1) / t * (sent / 2)  # two ranks send n between them each way
    return (t - 1) / t * sent  # two ranks send n/2 each


#: The rule name of layouts the bound skips.
BOUND_RULE = "step-time lower bound no better than the k-th fastest simulated"
#: Slack for summing a stage's compute in another order than the runtime does.
SLACK = 1.0 - 1e-9
#: Schedules with more actions get the quick bound only (the longest path costs
#: a few microseconds per action).
MAX_ACTIONS = 50_000
#: How many items of recorded schedule walks a bound keeps (each about 200 bytes).
KEEP_PATH_ITEMS = 1_000_000
#: Per block: seconds of F, B (input gradient), W (weight gradient) and BW (both).
Times = tuple[float, float, float, float]


class Beside(NamedTuple):
    """A compute segment of ``seconds`` that starts as the asynchronous collectives
    ``plans`` are launched, so runs beside them (module docstring)."""

    seconds: float
    plans: tuple[TransferPlan, ...]


#: Per block: what of F, B, W and BW the bound adds to their compute: the blocking
#: tensor-parallel collectives, and the segments that run beside asynchronous ones.
Blocking = tuple[tuple[TransferPlan | Beside, ...], ...]


def _unhidden(compiled: Any, slowdown: float) -> tuple[TransferPlan | Beside, ...]:
    """What of a priced tape no schedule hides: its blocking collectives (those with
    messages) and, with ``slowdown``, each segment right after asynchronous launches."""
    out: list[TransferPlan | Beside] = []
    launched: list[TransferPlan] = []
    for item in compiled.items:
        kind = item[0]
        if kind == COLLECTIVE:
            call = item[1]
            if call.handle < 0:
                if call.plan.sends:
                    out.append(call.plan)
                launched = []
            elif call.plan.sends:
                launched.append(call.plan)
            continue
        if kind == SEGMENT and launched and slowdown:
            out.append(Beside(item[1], tuple(launched)))
        launched = []
    return tuple(out)


def _compute_key(s: Strategy) -> tuple:
    """What the compute of a block depends on, besides the micro-batch size."""
    return (s.tp, s.sequence_parallel, s.recompute, s.precision, s.cp, s.context_parallel,
            s.cp_balance, s.ep, s.tp_comm_overlap)  # fmt: skip


def _compute_only(s: Strategy) -> bool:
    """Whether the bound counts ``s``'s compute alone: context and expert parallelism
    (module docstring)."""
    return s.cp > 1 or s.ep > 1


def _reduces_in_backward(s: Strategy) -> bool:
    """Whether ZeRO's reduce-scatters run during backward, block by block, where the
    bound cannot tell how much of them compute hides: every micro-batch under ZeRO-2,
    and the last one's under ZeRO-1 with ``overlap_grad_reduce``
    (:mod:`simulator.runtime.data.ddp`). Only the all-gather of the updated
    parameters then surely follows a rank's last action."""
    return s.zero == 2 or (s.zero == 1 and s.overlap_grad_reduce)


def _backward(split: float, whole: float, splits: bool, paired: bool) -> float:
    """The least a backward takes: ``split`` (B, or B + W) in a schedule that splits
    them, ``whole`` (BW) in one that does not, and the shorter of the two in a paired
    schedule, whose backwards are whole in its pairs and split elsewhere (with
    collectives counted, a whole one hides some of them)."""
    if paired:
        return min(split, whole)
    return split if splits else whole


class StepBound:
    """Lower bounds on the step time of layouts a :class:`Pruner` let through."""

    def __init__(self, pruner: Pruner, devices: int | None = None) -> None:
        self.pruner = pruner
        cluster = pruner.cluster
        #: the layouts' devices, which wait for the slowest (:mod:`simulator.engine.cost`)
        self.cost = CostModel(cluster.device, devices or cluster.num_devices)
        # the floors' kernels: the plain roofline plus the launch, which every refinement
        # of the cost model (tiles, the host, the slowest device) only lengthens
        self.roofline = CostModel(replace(cluster.device, sms=0, host_overhead=0.0, jitter=0.0))
        self.active = cluster.homogeneous
        #: idle links: every booking here starts from free ports
        self.network = Network(cluster)
        self._layouts = Layouts(cluster)
        self._blocks: dict[Hashable, list[tuple[Times, Blocking, int]]] = {}
        self._idle: dict[tuple[TransferPlan, tuple[int, ...]], float] = {}
        self._cached: dict[Hashable, Any] = {}
        self._bounds: dict[Hashable, float] = {}
        self._quick: dict[Hashable, float] = {}
        #: the recorded walks of the schedules bounded last (:meth:`_ends`)
        self._paths: OrderedDict[Hashable, LongestPath] = OrderedDict()
        self._path_items = 0

    def _memo(self, key: Hashable, compute: Any) -> Any:
        hit = self._cached.get(key)
        if hit is None:
            hit = self._cached[key] = compute()
        return hit

    def idle(self, plan: TransferPlan, devices: tuple[int, ...]) -> float:
        """Seconds ``plan`` takes on ``devices`` when nothing else uses their links."""
        key = (plan, devices)
        seconds = self._idle.get(key)
        if seconds is None:
            seconds = self._idle[key] = self.network.idle_duration(plan, devices)
        return seconds

    def _blocks_of(
        self, s: Strategy, group: tuple[int, ...] | None = None
    ) -> list[tuple[Times, Blocking, int]]:
        """Per block: compute times, the blocking collectives the runtime would run on
        the tensor-parallel ``group`` (by default the first ``tp`` devices), and
        output bytes per rank."""
        micro_batch = self.pruner.micro_batch(s)
        layout = self._layouts(group or tuple(range(s.tp)))
        key = (*_compute_key(s), s.async_tp, micro_batch, layout)
        blocks = self._blocks.get(key)
        if blocks is None:
            blocks = self._blocks[key] = self.block_times(s, micro_batch, layout)
        return blocks

    def _stage_times(self, s: Strategy) -> list[Times]:
        """Per stage of ``s``: the seconds of its F, B, W and BW -- compute and the
        blocking tensor-parallel collectives on the stage's group (module docstring).
        Layouts that differ in ZeRO and their data-parallel exchange share them."""
        micro_batch = self.pruner.micro_batch(s)
        key = ("stage times", *_compute_key(s), s.async_tp, micro_batch, schedule_key(s),
               s.partition, s.pairs_overlap, s.dp, s.pp, s.order)  # fmt: skip
        return self._memo(key, lambda: self._work_out_stage_times(s, micro_batch))

    def _work_out_stage_times(self, s: Strategy, micro_batch: int) -> list[Times]:
        pruner = self.pruner
        stages = pruner.stages_of(s, micro_batch)
        facts = pruner.schedule_of(s)
        rank_of = facts.rank_of
        # overlapped F&B pairs hide one's collectives behind the other's compute: compute
        # alone (pairs that do not overlap run their halves one after the other)
        talks = not _compute_only(s) and not (facts.paired and s.pairs_overlap)
        mesh = Mesh(s.dp, s.tp, s.pp, s.order, cp=s.cp)
        out = []
        for c, stage in enumerate(stages):
            group = tuple(mesh.group("tp", pp=rank_of[c]))
            blocks = self._blocks_of(s, group)  # the collectives its layout runs
            idle = self._block_talk(blocks, group) if talks else None
            times = []
            for k in range(4):
                compute = sum(blocks[i][0][k] for i in stage)
                talk = 0.0
                if idle is not None:  # module docstring
                    talk = sum(seconds for i in stage for seconds in idle[i][k])
                times.append(compute + talk)
            out.append(tuple(times))
        return out

    def _block_talk(
        self, blocks: list[tuple[Times, Blocking, int]], group: tuple[int, ...]
    ) -> list[tuple[tuple[float, ...], ...]]:
        """Per block and action kind, the seconds of each blocking collective on
        ``group``'s idle links. Worked out once per list of blocks: a list serves the
        groups of one relabelled layout (:meth:`_blocks_of`), whose collectives run
        alike on a cluster of one kind (:meth:`~simulator.comm.layout.GroupLayout.relabelled`;
        the bound is 0 on mixed clusters)."""

        slowdown = self.cost.overlap_slowdown

        def seconds(item: TransferPlan | Beside) -> float:
            if isinstance(item, Beside):  # how much longer it takes beside them, at least
                busy = max(self.idle(plan, group) for plan in item.plans)
                return overlapped(0.0, item.seconds, busy, slowdown) - item.seconds
            return self.idle(item, group)

        def work_out() -> list[tuple[tuple[float, ...], ...]]:
            return [tuple(tuple(map(seconds, items)) for items in waits) for _, waits, _ in blocks]

        return self._memo(("talk", id(blocks)), work_out)

    def _message(self, s: Strategy) -> float:
        """The fastest pipeline message of ``s`` on idle links: an activation at a stage
        boundary, ``1/t`` of it with the scatter/gather, between the ranks of two
        consecutive pipeline ranks (the last to the first for chunked schedules)."""
        if s.pp == 1 or _compute_only(s):
            return 0.0

        def fastest() -> float:
            config = self.pruner.model_config
            stated = [config.transfer_seconds(c, what) for c in range(s.num_stages)
                      for what in ("activation", "gradient")]  # fmt: skip
            if all(x is not None for x in stated):  # the model states its messages' times
                return min(stated)
            blocks = self._blocks_of(s)
            stages = self.pruner.stages_of(s, self.pruner.micro_batch(s))
            cut = min(blocks[stage[-1]][2] for stage in stages[:-1])
            if s.pp_scatter_gather and s.tp > 1:
                cut //= s.tp
            mesh = Mesh(s.dp, s.tp, s.pp, s.order)
            pairs = [(mesh.device(pp=r), mesh.device(pp=(r + 1) % s.pp)) for r in range(s.pp)]
            return min(self.network.route(a, b).seconds(cut) for a, b in pairs)

        key = ("message", s.dp, s.cp, s.ep, s.tp, s.pp, s.order, s.pp_scatter_gather,
               s.sequence_parallel, s.recompute, s.num_stages, s.partition,
               self.pruner.micro_batch(s))  # fmt: skip
        return self._memo(key, fastest)

    def _sync(self, s: Strategy) -> list[float]:
        """Per pipeline rank, what follows its last action: its gradients' exchange, its
        optimizer step and, under ZeRO-1 and 2, the gathering of its parameters."""
        # the schedule matters through its stages' ranks alone, which the micro-batches
        # do not change (:meth:`_ranks`)
        key = ("sync", s.dp, s.cp, s.ep, s.tp, s.pp, s.order, s.zero, s.bucket_mb,
               s.overlap_grad_reduce, s.overlap_param_gather, s.schedule if s.pp > 1 else None,
               s.chunks,
               s.partition, s.allreduce_algorithm, self.pruner.micro_batch(s),
               s.sequence_parallel)  # fmt: skip
        return self._memo(key, lambda: self._work_out_sync(s))

    def _work_out_sync(self, s: Strategy) -> list[float]:
        pruner = self.pruner
        stages = pruner.stages_of(s, pruner.micro_batch(s))
        rank_of = pruner.schedule_of(s).rank_of
        blocks = pruner.block_bytes(s)
        mesh = Mesh(s.dp, s.tp, s.pp, s.order, cp=s.cp)
        dtype = pruner.model_config.dtype
        item = ShapeArray((1,), dtype).nbytes
        replicas = s.dp * s.cp  # the weights' replicas, over which ZeRO partitions
        sharded = s.zero > 0 and replicas > 1
        out = []
        for r in range(s.pp):
            mine = [i for c, stage in enumerate(stages) if rank_of[c] == r for i in stage]
            # the transformer layers' weights: none of them is tied across ranks
            weights = sum(blocks[i][0] for i in mine if pruner.is_layer[i])
            traffic = sum(3 * blocks[i][0] + 2 * blocks[i][1] for i in mine)
            if sharded:
                traffic //= replicas
            step = 0.0
            if traffic:
                step = self.cost.kernel_time(Kernel("optimizer", "elementwise", dtype, 0, traffic))
            talk = 0.0
            if s.dp > 1 and not _compute_only(s) and weights and s.bucket_mb == 0 and s.zero <= 2:
                group = tuple(mesh.group("dp", pp=r))
                ops = ["all_reduce"] if not sharded else ["reduce_scatter", "all_gather"]
                if sharded and _reduces_in_backward(s):
                    ops = ["all_gather"]  # its reduce-scatters run during backward
                if sharded and s.overlap_param_gather:
                    ops.remove("all_gather")  # beside the next step's forward
                for op in ops:
                    talk += self._exchange(op, weights // item, dtype, s, group)
            out.append(talk + step)
        return out

    def _exchange(self, op: str, n: int, dtype: str, s: Strategy, group: tuple[int, ...]) -> float:
        """Seconds of a data-parallel ``op`` of ``n`` elements per replica over ``group``'s
        idle links; once per relabelled layout of the group (:meth:`_block_talk`)."""
        layout = self._layouts(group)

        def work_out() -> float:
            size = n if op != "all_gather" else n // s.dp
            parts = [ShapeArray((size,), dtype)] * s.dp
            _, plan = comm.collective(op, parts, s.allreduce_algorithm, layout=layout)
            return self.idle(plan, group)

        return self._memo(("exchange", op, n, dtype, s.dp, s.allreduce_algorithm, layout), work_out)

    def quick(self, s: Strategy) -> float:
        """A lower bound in O(stages): the largest over the pipeline ranks of

        * the forwards of the stages before the rank's first action's stage (its
          input must come down the pipeline first, a message per hop), plus
        * the time of every one of its actions (they run one at a time), plus
        * after its last action, when that is a backward of stage ``s``, the
          backwards of stages ``s-1, ..., 0`` (the gradient must go up the pipeline),
          or what the rank itself does after its last action (:meth:`_sync`).

        For GPipe, 1F1B and interleaved 1F1B with equal stages and free
        communication this is their ideal makespan, ``(m + (p-1)/v)(t_F + t_B)``
        (Narayanan et al. 2021, sec. 2.2).
        """
        if not self.active or not get_variant(s.data_parallel).symmetric:
            return 0.0
        key = self._key(s)
        bound = self._quick.get(key)
        if bound is None:
            bound = self._quick[key] = self._quick_bound(s)
        return bound

    def _key(self, s: Strategy) -> Hashable:
        """What a bound depends on: the blocks' times, the stages, the schedule, the
        placement of its groups and what its data-parallel exchange sends."""
        micro_batch = self.pruner.micro_batch(s)
        return (
            (*_compute_key(s), s.async_tp, micro_batch),
            self.pruner.stages_of(s, micro_batch),
            schedule_key(s),
            (
                s.dp,
                s.cp,
                s.order,
                s.zero,
                s.bucket_mb,
                s.overlap_grad_reduce,
                s.overlap_param_gather,
                s.pairs_overlap,
                s.allreduce_algorithm,
                s.pp_scatter_gather,
            ),
        )

    def _quick_bound(self, s: Strategy) -> float:
        facts = self.pruner.schedule_of(s)
        times = self._stage_times(s)
        hop = self._message(s)
        sync = self._sync(s)
        back = [_backward(b + w, bw, facts.split, facts.paired) for _, b, w, bw in times]
        chain = [_backward(b, bw, facts.split, facts.paired) for _, b, _, bw in times]
        busy = [0.0] * len(facts.ends)
        per_stage = s.microbatches // facts.directions  # DualPipe: half each way
        for stage, (f, *_rest) in enumerate(times):
            busy[facts.rank_of[stage]] += per_stage * (f + back[stage])
        bound = 0.0
        per = facts.num_stages // facts.directions  # each direction's stages (DualPipe)
        rank_of = facts.rank_of
        moves = [hop if rank_of[i] != rank_of[i + 1] else 0.0 for i in range(len(times) - 1)]
        for r, ends in enumerate(facts.ends):
            if ends is None:
                continue
            first, last = ends
            # a message on every step between two ranks (DualPipeV turns on a rank)
            head = sum(
                times[i][0] + moves[i] for i in range(first.stage - first.stage % per, first.stage)
            )
            start = last.stage - last.stage % per
            tail = 0.0
            if last.kind in (B, BW):
                tail = sum(chain[i] + moves[i] for i in range(start, last.stage))
            bound = max(bound, head + busy[r] + max(tail, sync[r]))
        return bound * SLACK

    def seconds(self, s: Strategy) -> float:
        """A lower bound on the simulated step time of layout ``s``: the longest path
        through its schedule with every action taking its compute and blocking
        collectives and every message between ranks its time, then each rank's
        exchange and update (module docstring); :meth:`quick` when the schedule has
        more than :data:`MAX_ACTIONS` actions."""
        if not self.active or not get_variant(s.data_parallel).symmetric:
            return 0.0
        facts = self.pruner.schedule_of(s)
        if facts.actions > MAX_ACTIONS:
            return self.quick(s)
        key = self._key(s)
        bound = self._bounds.get(key)
        if bound is None:
            per_stage = self._stage_times(s)
            message = self._message(s)
            # the longest path depends on the actions' times and the messages alone:
            # layouts that differ in their data-parallel exchange share it
            ends = self._memo(
                ("ends", schedule_key(s), tuple(per_stage), message),
                lambda: self._ends(s, per_stage, message),
            )
            sync = self._sync(s)
            end = max((e + sync[r] for r, e in enumerate(ends) if e is not None), default=0.0)
            end = max(end, self._traffic_floor(s))
            bound = self._bounds[key] = max(end * SLACK, self.quick(s))
        return bound

    def _ends(self, s: Strategy, per_stage: list[Times], message: float) -> list[float | None]:
        """When every pipeline rank's last action ends on the longest path (the schedule's
        walk recorded once, :mod:`.longest_path`)."""
        key = schedule_key(s)
        paths = self._paths.pop(key, None)
        if paths is None:
            paths = LongestPath.of(self.pruner.built(s))
            self._path_items += len(paths.items)
        self._paths[key] = paths  # the most recently used last
        while self._path_items > KEEP_PATH_ITEMS and len(self._paths) > 1:
            _, dropped = self._paths.popitem(last=False)
            self._path_items -= len(dropped.items)
        return paths.ends(per_stage, message)

    def floor(
        self, members: list[Strategy], orders: list[tuple[str, ...]] | None = None
    ) -> list[float]:
        """Lower bounds for ``members`` in every mesh order they may take, priced without
        placing them (so cheaply that every family of a search gets them): members share
        ``dp``, ``tp``, ``pp``, the micro-batches, the schedule and its chunks, and differ
        in recomputation, sequence parallelism and ZeRO.

        Every rank runs its actions one at a time, after the forwards of the stages
        before its first (in its direction, for DualPipe's two, each of which carries
        half the micro-batches) and, when its last action is a full backward, before the
        backwards of the stages before it; each action takes at least its compute at
        ``tp = 1`` over ``tp`` (GEMMs at the device's best throughput: the FLOPs split
        evenly, every other kernel's work at least does) and its blocking
        tensor-parallel collectives at the fastest link's bandwidth, ``2 (t-1)/t n``
        bytes for an all-reduce and ``(t-1)/t n`` for a gather or scatter (no algorithm
        moves fewer: Patarasuk and Yuan 2009); then the exchange of the rank's
        gradients, by the same count over ``dp`` -- or, if more, all the data-parallel
        traffic of the step over the links that must carry it (:meth:`_traffic_floor`,
        the least over the member's ``orders``)."""
        if not self.active or not members:
            return [0.0] * len(members)
        s = members[0]
        if not get_variant(s.data_parallel).symmetric:
            return [0.0] * len(members)
        orders = orders or [(m.order,) for m in members]
        try:  # the stages first: a pipeline longer than the model fails at once
            stages = self.pruner.stages_of(s, self.pruner.micro_batch(s))
            rank_of = self._ranks(s)
        except SimulatorError:
            return [0.0] * len(members)  # checking them says which rule fails
        b = self.pruner.micro_batch(s)
        info = get_schedule(s.schedule) if s.pp > 1 else None
        split = info is not None and info.split_backward
        paired = info is not None and info.paired
        # DualPipe: two pipelines over copies of the stages, half the micro-batches each
        directions = info.directions if info is not None else 1
        half, per_stage = len(stages) // directions, s.microbatches // directions
        first = [min((c for c in range(len(stages)) if rank_of[c] == r), default=0)
                 for r in range(s.pp)]  # fmt: skip
        pipeline: dict[tuple[str, bool], float] = {}
        out = []
        for i, m in enumerate(members):
            if _compute_only(m) or (paired and m.pairs_overlap):
                out.append(0.0)  # priced by :meth:`seconds` alone (module docstring)
                continue
            variant = (m.recompute, m.sequence_parallel, m.tp_comm_overlap)
            if variant not in pipeline:
                times = self._memo(
                    ("floor times", s.tp, variant, s.precision, b, stages),
                    lambda variant=variant: self._floor_times(s, variant, b, stages),
                )
                busy = [0.0] * s.pp
                # a rank starts when the first micro-batch has come down its direction's
                # stages to one of its own: the soonest of its stages
                head = [0.0 if r not in rank_of.values() else float("inf") for r in range(s.pp)]
                came = 0.0  # the forwards of the stages before c in its direction
                for c, (f, bb, w, bw) in enumerate(times):
                    back = _backward(bb + w, bw, split, paired)
                    busy[rank_of[c]] += per_stage * (f + back)
                    came = 0.0 if c % half == 0 else came
                    head[rank_of[c]] = min(head[rank_of[c]], came)
                    came += f
                pipeline[variant] = max(
                    head[r] + busy[r]
                    + (0.0 if split else sum(times[i][3] for i in range(first[r])))
                    for r in range(s.pp)
                )  # fmt: skip
            ends = pipeline[variant] + self._sync_floor(m)
            out.append(max(ends, self._traffic_floor(m, orders[i])) * SLACK)
        return out

    def _floor_times(
        self, s: Strategy, variant: tuple[str, bool, bool], b: int, stages: tuple[range, ...]
    ) -> list[list[float]]:
        """For :meth:`floor`: every stage's floors of F, B, W and BW for a micro-batch of
        ``b`` sequences, its blocks' :meth:`_units` summed (shared by the families of one
        ``tp``, micro-batch and split into stages)."""
        units = self._units(s.tp, *variant, s.precision, 1)
        if b > 1:  # through 1 and 2 sequences: below a convex cost (:meth:`_units`)
            two = self._units(s.tp, *variant, s.precision, 2)
            units = [tuple(u + (b - 1) * (v - u) for u, v in zip(us, vs, strict=True))
                     for us, vs in zip(units, two, strict=True)]  # fmt: skip
        return [[max(0.0, sum(units[i][k] for i in st)) for k in range(4)] for st in stages]

    def _units(
        self,
        tp: int,
        recompute: str,
        sequence_parallel: bool,
        tp_comm_overlap: bool,
        precision: str,
        sequences: int,
    ) -> list[Times]:
        """Per block, for a micro-batch of ``sequences``: floors of its F, B, W and BW at
        this ``tp`` (see :meth:`floor`): its compute at ``tp = 1`` over ``tp`` (one pricing
        serves every ``tp``) and its blocking collectives, the same calls at every
        ``tp`` > 1 (read at ``tp = 2``). Every kernel is priced by the plain roofline
        plus its launch (:attr:`roofline`), ``launch + max(F / peak, M / bandwidth)`` with
        ``F`` and ``M`` affine in the sequences, so a block's floor is convex in them: the
        line through 1 and 2 sequences stays below it at every larger micro-batch
        (:meth:`floor` extends it); a kernel launched once per micro-batch is not
        counted once per sequence. With ``tp_comm_overlap`` the collectives it
        pipelines with the GEMMs do not block, and count nothing; the compute is
        that without it, which cutting the GEMMs into chunks only lengthens."""

        def work_out() -> list[Times]:
            device = self.pruner.cluster.device
            best = max(device.peak_flops.values()) * device.efficiency["gemm"]

            def gemm(compiled: Any, kernels: list[Kernel], _: Any) -> float:
                return sum(k.flops / best for k in kernels if k.op_class == "gemm")

            def other(compiled: Any, kernels: list[Kernel], _: Any) -> float:
                return sum(self.roofline.kernel_time(k) for k in kernels if k.op_class != "gemm")

            one = Strategy(recompute=recompute, precision=precision)
            gemms = self._per_action(one, gemm, sequences)
            others = self._per_action(one, other, sequences)
            talk = [(0.0,) * 4] * len(gemms)
            if tp > 1:
                # the other kernels of a rank: a part replicated over the ranks, a part
                # split over them (time linear in bytes): read off tp = 1 and tp = 2
                two = Strategy(tp=2, recompute=recompute, sequence_parallel=sequence_parallel,
                               precision=precision)  # fmt: skip
                halves = self._per_action(two, other, sequences)
                others = [tuple(max(0.0, 2 * h - o) + max(0.0, 2 * (o - h)) / tp
                                for o, h in zip(os_, hs, strict=True))
                          for os_, hs in zip(others, halves, strict=True)]  # fmt: skip
                bandwidth = max(self.pruner.cluster.intra_node.effective_bandwidth,
                                self.pruner.cluster.inter_node.effective_bandwidth)  # fmt: skip
                talking = two
                if tp_comm_overlap and sequence_parallel:
                    talking = replace(two, tp_comm_overlap=True)
                talk = self._per_action(talking, lambda _, __, calls: sum(
                    _moved(call, tp) for call in calls) / bandwidth, sequences)  # fmt: skip
            return [tuple(g / tp + o + c for g, o, c in zip(gs, os_, cs, strict=True))
                    for gs, os_, cs in zip(gemms, others, talk, strict=True)]  # fmt: skip

        key = ("units", tp, recompute, sequence_parallel, tp_comm_overlap, precision, sequences)
        return self._memo(key, work_out)

    def _per_action(self, s: Strategy, measure: Any, sequences: int = 1) -> list[Times]:
        """Per block, ``measure(compiled tape, rank 0's kernels, blocking collective
        calls)`` of its F, B, W and BW for a micro-batch of ``sequences`` under ``s``."""
        pruner = self.pruner
        model, config, training = pruner.model, pruner.model_config, pruner.training
        x, y = config.batch(training.seed, 0, sequences, numerics=False)
        layout = GroupLayout.of(pruner.cluster, tuple(range(s.tp))).relabelled()
        last = len(model.blocks) - 1
        xs: list[Any] = [x] * s.tp
        out = []
        seen: dict[Hashable, tuple[Times, list[Any]]] = {}
        with batch(BatchInfo(training.seed, 0, 0, sequences)), placed(layout):
            for i, block in enumerate(model.blocks):
                key = (signature(block), i == last, tuple(getattr(a, "shape", None) for a in xs))
                if key not in seen:
                    loss = parallel_loss(model.loss, s) if i == last else None
                    chunk = Chunk(0, [parallelize(block, s)], loss, s.recompute, s.precision)
                    targets = [y] * s.tp if i == last else None
                    seen[key] = self._measure(chunk, xs, targets, measure)
                values, xs = seen[key]
                out.append(values)
        return out

    def _measure(self, chunk: Chunk, xs: list[Any], targets: list[Any] | None,
                 measure: Any) -> tuple[Times, list[Any]]:  # fmt: skip
        def one(fn: Any) -> tuple[Any, float]:
            with recording() as tape:
                result = fn()
            compiled = compile_tape(tape, self.cost, False)
            calls = [item[1] for item in compiled.items if item[0] == COLLECTIVE
                     and item[1].handle < 0]  # fmt: skip
            return result, measure(compiled, tape.kernels(0), calls)

        (out, ctx), f = one(lambda: chunk.forward(xs, targets))
        dys = None if targets is not None else out
        _, bw = one(lambda: chunk.backward(dys, ctx, 1.0))
        (out, ctx), _ = one(lambda: chunk.forward(xs, targets))
        (_, wctxs), b = one(lambda: chunk.backward_input(dys, ctx, 1.0))
        _, w = one(lambda: chunk.backward_weight(wctxs))
        return (f, b, w, bw), out

    def _traffic_floor(self, s: Strategy, orders: tuple[str, ...] = ()) -> float:
        """The data-parallel bytes of a step, whenever they run, over the links that must
        carry them (bandwidth-optimal counts: Patarasuk and Yuan 2009; Rajbhandari et al.
        2020, sec. 7): ``2 (d-1)/d`` of a rank's gradients for an all-reduce or ZeRO-1,
        a reduce-scatter per micro-batch for ZeRO-2 and two gathers more for ZeRO-3.

        Each rank receives its share through its NVLink port at best; and a node
        imports, through its NICs, every group's share held in other nodes: for a
        group with ``g`` ranks in the node, ``(d-g)/d`` of it. The least over the mesh
        ``orders`` (``s.order`` alone by default), which decide ``g``."""
        if s.dp == 1 or _compute_only(s):
            return 0.0  # (nothing counted: module docstring)
        pruner = self.pruner
        blocks = pruner.block_bytes(s)
        layers = [w for (w, _), layer in zip(blocks, pruner.is_layer, strict=True) if layer]
        weights = sum(layers) / s.pp
        passes = {0: 2, 1: 2, 2: s.microbatches + 1, 3: 3 * s.microbatches}[s.zero]
        cluster = pruner.cluster
        port = (
            passes
            * (s.dp - 1)
            / s.dp
            * weights
            / max(cluster.intra_node.effective_bandwidth, cluster.inter_node.effective_bandwidth)
        )
        nics = cluster.nics * cluster.inter_node.effective_bandwidth
        imports = []
        for order in orders or (s.order,):
            key = ("outside", s.dp, s.tp, s.pp, order)
            outside = self._memo(key, lambda order=order: self._outside(s.dp, s.tp, s.pp, order))
            imports.append(passes * outside * weights / nics)
        return max(port, min(imports))

    def _outside(self, dp: int, tp: int, pp: int, order: str) -> float:
        """For :meth:`_traffic_floor`: the sum over the data-parallel groups with ranks in
        node 0 of the share of the group outside it, ``(d-g)/d`` for ``g`` ranks inside."""
        mesh = Mesh(dp, tp, pp, order)
        groups: dict[tuple[int, int], int] = {}  # (tp, pp) -> its ranks in node 0
        for d in range(min(self.pruner.cluster.devices_per_node, mesh.size)):
            c = mesh.coords(d)
            groups[(c["tp"], c["pp"])] = groups.get((c["tp"], c["pp"]), 0) + 1
        return sum((dp - g) / dp for g in groups.values())

    def _sync_floor(self, s: Strategy) -> float:
        """A floor on what follows a rank's last action under ``s``, whatever the order:
        the bytes its gradient exchange must move over the fastest link: an all-reduce,
        or ZeRO's reduce-scatter and all-gather -- the all-gather alone where the
        reduce-scatters run during backward (:func:`_reduces_in_backward`), nothing
        with buckets or ZeRO-3."""
        if s.dp == 1 or _compute_only(s) or s.bucket_mb > 0 or s.zero > 2:
            return 0.0
        pruner = self.pruner
        blocks = pruner.block_bytes(s)
        layers = [w for (w, _), layer in zip(blocks, pruner.is_layer, strict=True) if layer]
        weights = sum(layers) / s.pp  # the mean rank's: the largest holds at least that
        bandwidth = max(pruner.cluster.intra_node.effective_bandwidth,
                        pruner.cluster.inter_node.effective_bandwidth)  # fmt: skip
        passes = 1 if s.zero > 0 and _reduces_in_backward(s) else 2  # the gather alone
        if s.zero > 0 and s.overlap_param_gather:
            passes -= 1  # the gather runs beside the next step's forward
        return passes * (s.dp - 1) / s.dp * weights / bandwidth

    def _ranks(self, s: Strategy) -> dict[int, int]:
        """Stage -> pipeline rank of ``s``'s schedule, read off a small instance of it
        (the mapping depends on the schedule, ``pp`` and the chunks alone)."""

        def mapping() -> dict[int, int]:
            for m in (s.pp, 2 * s.pp, 4 * s.pp, s.microbatches):
                try:
                    return resolve_schedule(replace(s, microbatches=m), None).stage_to_rank()
                except SimulatorError:
                    continue
            return self.pruner.schedule_of(s).rank_of  # raises the rule that fails

        return self._memo(("ranks", s.schedule if s.pp > 1 else None, s.pp, s.chunks), mapping)

    def block_times(
        self, s: Strategy, micro_batch: int, layout: GroupLayout | None = None
    ) -> list[tuple[Times, Blocking, int]]:
        """Per block of the model: the compute seconds of its F, B, W and BW for one
        micro-batch under ``s``'s tensor parallelism and recomputation (the last block
        with the loss), the tensor-parallel collectives each waits for when the group
        sits as ``layout`` says (the first ``tp`` devices by default: the algorithms
        ``auto`` chooses depend on it), and the bytes of its output on one rank. Blocks
        of equal kind and input shapes are priced once."""
        pruner = self.pruner
        model, config, training = pruner.model, pruner.model_config, pruner.training
        x, y = config.batch(training.seed, 0, micro_batch, numerics=False)
        layout = layout or GroupLayout.of(pruner.cluster, tuple(range(s.tp))).relabelled()
        info = BatchInfo(training.seed, 0, 0, micro_batch)
        scale = 1.0 / s.microbatches
        last = len(model.blocks) - 1
        tokens = token_layout(config, s)
        if tokens is not None:  # a context-parallel rank's copy of the model and tokens
            mesh = Mesh(1, s.tp, 1, s.order, cp=s.cp)
            ranks = tuple(mesh.device(cp=c, tp=t) for c in range(s.cp) for t in range(s.tp))
            layout = GroupLayout.of(pruner.cluster, ranks)
            model = context_copies(copy.deepcopy(model), s, tokens, numerics=False)[0]
            x, y = x[:, tokens.positions(0)], y[:, tokens.positions(0)]
        ranks_count = s.tp * s.cp
        xs: list[Any] = [x] * ranks_count
        seen: dict[Hashable, tuple[tuple[Times, Blocking, int], list[Any]]] = {}
        out_times = []
        with batch(info), placed(layout):
            for i, block in enumerate(model.blocks):
                key = (signature(block), i == last, tuple(getattr(a, "shape", None) for a in xs))
                if key not in seen:
                    loss = group_loss([model.loss] * s.cp, s, tokens, False) if i == last else None
                    group = group_block([block] * s.cp, s, tokens, False)
                    chunk = Chunk(0, [group], loss, s.recompute, s.precision)
                    targets = [y] * ranks_count if i == last else None
                    seen[key] = self._price(chunk, xs, targets, scale)
                times, xs = seen[key]
                out_times.append(times)
        return out_times

    def _price(
        self, chunk: Chunk, xs: list[Any], targets: list[Any] | None, scale: float
    ) -> tuple[tuple[Times, Blocking, int], list[Any]]:
        """The chunk's F, B, W and BW: compute seconds, blocking collectives; the bytes
        of its forward's output on one rank; and that output."""

        def priced(fn: Any) -> tuple[Any, float, tuple[TransferPlan, ...]]:
            with recording() as tape:
                result = fn()
            compiled = compile_tape(tape, self.cost, False)
            return result, compiled.seconds, _unhidden(compiled, self.cost.overlap_slowdown)

        (out, ctx), f, cf = priced(lambda: chunk.forward(xs, targets))
        dys = None if targets is not None else out
        _, bw, cbw = priced(lambda: chunk.backward(dys, ctx, scale))
        (out, ctx), _, _ = priced(lambda: chunk.forward(xs, targets))
        (_, wctxs), b, cb = priced(lambda: chunk.backward_input(dys, ctx, scale))
        _, w, cw = priced(lambda: chunk.backward_weight(wctxs))
        size = nbytes(out[0]) if targets is None else 0
        return ((f, b, w, bw), (cf, cb, cw, cbw), size), out

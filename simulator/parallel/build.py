"""From a strategy to a plan: a device mesh, workers, their chunks and programs.

``build_plan`` checks the layout (it must fit the cluster and the sizes must
divide), picks the pipeline schedule (validating one written by hand), builds the model from the
seed, splits its blocks into stages, hands every worker its chunks (sharded
for tensor parallelism, copied for data parallelism) and lowers the schedule
into one program per worker.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import LayoutError
from ..hardware import ClusterSpec
from ..nn.config import ModelConfig
from ..nn.param import gradients_in
from ..ops.arrays import NUMPY_DTYPES, Array
from . import partition as partitions
from .context.checks import check_context
from .context.layer import at_positions, context_block
from .context.layout import TokenLayout
from .context.lockstep import LockstepLoss
from .data import get_variant
from .expert import check_ep, is_moe_block, shard_moe_layer
from .mesh import Mesh
from .pipeline.actions import Schedule
from .pipeline.schedules import ScheduleInfo, get_schedule
from .pipeline.validate import validate
from .program import lowered
from .stage import RECOMPUTE, Chunk
from .stages import block_costs as block_costs  # where the planner prices blocks
from .stages import split_blocks
from .strategy import FILE_SCHEDULE, Strategy
from .tensor import (
    ParallelBlock,
    ShardLoss,
    ShardMap,
    VocabParallelCrossEntropy,
    shard_block,
    shard_loss,
)
from .tied import TiedPair, stage_copies, tie_copies
from .training import TrainingConfig
from .worker import Worker


@dataclass
class Plan:
    """Everything the runtime needs to run a strategy."""

    strategy: Strategy
    cluster: ClusterSpec
    model_config: ModelConfig
    training: TrainingConfig
    mesh: Mesh
    schedule: Schedule
    #: the schedule's registry entry (its closed forms), None for a schedule file
    schedule_info: ScheduleInfo | None
    stage_rank: dict[int, int]
    stages: list[range]
    workers: list[Worker]
    micro_batch_size: int
    num_parameters: int
    tied: list[TiedPair] = field(default_factory=list)
    #: the parameters that act on one token (a mixture of experts uses top_k of its experts)
    num_active_parameters: int = 0
    #: DualPipe's copies of every stage, whose gradients are summed like tied weights'
    copies: list[TiedPair] = field(default_factory=list)  # tied weights split by the pipeline

    @property
    def messages_per_replica(self) -> int:
        """Message ids one replica's programs use (:func:`~.program.message_id`)."""
        return 2 * self.schedule.num_stages * self.strategy.microbatches

    def worker(self, dp_rank: int, pp_rank: int) -> Worker:
        return self.workers[dp_rank * self.strategy.pp + pp_rank]

    def dp_group(self, pp_rank: int) -> list[Worker]:
        """The data-parallel replicas of pipeline rank ``pp_rank``."""
        return [self.worker(d, pp_rank) for d in range(self.strategy.dp)]

    def ep_group(self, w: Worker) -> list[Worker]:
        """The expert-parallel group of ``w``: the workers of its pipeline rank that
        share out the experts with it, by expert-parallel rank."""
        return [self.worker(d, w.pp_rank) for d in self.mesh.ep_group(w.dp_rank)]

    def edp_group(self, w: Worker) -> list[Worker]:
        """The workers of ``w``'s pipeline rank that hold the same experts: where the
        experts' gradients are reduced."""
        return [self.worker(d, w.pp_rank) for d in self.mesh.edp_group(w.dp_rank)]


def check_layout(
    cluster: ClusterSpec, training: TrainingConfig, s: Strategy, model: Any = None
) -> int:
    """Raise :class:`LayoutError` for layouts that cannot run; returns the micro-batch size.
    ``model`` (its config), when given, is checked against the expert-parallel size."""
    for key in ("dp", "cp", "tp", "pp", "microbatches", "chunks", "ep"):
        if getattr(s, key) < 1:
            raise LayoutError(
                f"strategy {s.name!r}: {key} must be at least 1, got {getattr(s, key)}"
            )
    if s.num_devices > cluster.num_devices:
        axes = s.axes
        raise LayoutError(
            f"strategy {s.name!r} needs {'*'.join(axes)} = "
            f"{'*'.join(str(getattr(s, a)) for a in axes)} = {s.num_devices} "
            f"devices but the cluster has {cluster.num_devices} ({cluster.nodes} nodes x "
            f"{cluster.devices_per_node}); add nodes or use smaller {', '.join(axes[:-1])} "
            f"or {axes[-1]}"
        )
    replicas_batches = s.dp * s.microbatches
    if training.global_batch % replicas_batches:
        raise LayoutError(
            f"strategy {s.name!r}: global_batch {training.global_batch} does not divide into "
            f"dp*microbatches = {s.dp}*{s.microbatches} = {replicas_batches} equal micro-batches;"
            f" choose sizes whose product divides the batch"
        )
    if s.sequence_parallel and s.tp == 1:
        raise LayoutError(
            f"strategy {s.name!r}: sequence_parallel splits the sequence over the tensor-parallel "
            f"ranks, and tp = 1; set tp > 1 or sequence_parallel = false"
        )
    if s.tp_comm_overlap:
        check_tp_comm_overlap(s)
    if s.recompute not in RECOMPUTE:
        raise LayoutError(f"strategy {s.name!r}: recompute must be one of {RECOMPUTE}")
    get_variant(s.data_parallel).check(s)
    if s.pp_scatter_gather and s.sequence_parallel:
        raise LayoutError(
            f"strategy {s.name!r}: pp_scatter_gather has nothing to scatter with "
            "sequence_parallel: the activations are already split along the sequence; "
            "drop one of them"
        )
    if s.precision == "fp8":
        check_fp8(cluster, s)
    if s.partition not in partitions.PARTITIONS:
        raise LayoutError(f"strategy {s.name!r}: partition must be one of {partitions.PARTITIONS}")
    if s.pp > 1 and s.zero and not s.schedule.startswith(FILE_SCHEDULE):
        check_copies(s, get_schedule(s.schedule).directions)
    if model is not None:
        check_ep(s.name, s.ep, s.dp, model)
        if getattr(model, "experts", 0) and training.numerics and s.ep > 1:
            check_numerics_routing(s.name, model)
    elif s.ep > 1 and s.dp % s.ep:
        check_ep(s.name, s.ep, s.dp, None)
    return training.global_batch // replicas_batches


def check_copies(s: Strategy, directions: int) -> None:
    """A one-line :class:`LayoutError` for ZeRO with a schedule that runs ``directions``
    > 1 pipelines over copies of every stage (DualPipe): the copies' gradients are
    summed outside ZeRO's partitions."""
    if directions > 1 and s.zero:
        raise LayoutError(
            f"strategy {s.name!r}: {s.schedule} keeps two copies of every stage, whose "
            "gradients are summed outside ZeRO's partitions; use zero = 0 (or dualpipev, "
            "which keeps one)"
        )


def check_tp_comm_overlap(s: Strategy) -> None:
    """A one-line :class:`LayoutError` unless ``tp_comm_overlap`` has something to overlap:
    it pipelines sequence parallelism's all-gathers and reduce-scatters with the GEMMs
    (Megatron-Core's ``--tp-comm-overlap`` requires ``--sequence-parallel``)."""
    if s.tp == 1:
        raise LayoutError(
            f"strategy {s.name!r}: tp_comm_overlap overlaps tensor-parallel communication, "
            "and tp = 1 has none; set tp > 1 with sequence_parallel = true, or "
            "tp_comm_overlap = false"
        )
    if not s.sequence_parallel:
        raise LayoutError(
            f"strategy {s.name!r}: tp_comm_overlap pipelines sequence parallelism's "
            "all-gathers and reduce-scatters with the GEMMs (as Megatron-Core's "
            "--tp-comm-overlap requires --sequence-parallel); set sequence_parallel = true "
            "or tp_comm_overlap = false"
        )


def check_numerics(model_config: ModelConfig, training: TrainingConfig) -> None:
    """Raise :class:`LayoutError` for numerics in a dtype numpy cannot compute in."""
    dtype = model_config.dtype
    if training.numerics and dtype not in NUMPY_DTYPES:
        raise LayoutError(
            f"model dtype {dtype} has no numpy arithmetic; set [training] numerics = false to "
            f"run it shape-only, or use float64 or float32"
        )


def check_numerics_routing(name: str, model: Any) -> None:
    """In numerics mode the router decides; a shape-only routing rule is an error."""
    if getattr(model, "routing", "uniform") != "uniform":
        raise LayoutError(
            f"strategy {name!r}: [model] routing = {model.routing!r} is a shape-only rule; "
            "with numerics = true the router decides where tokens go, so drop routing or "
            "set numerics = false"
        )


def check_fp8(cluster: ClusterSpec, s: Strategy) -> None:
    """A :class:`LayoutError` unless every device of the cluster has an FP8 peak
    (Transformer Engine runs FP8 GEMMs on Hopper and newer only)."""
    kinds = (spec.device for _, spec in cluster.kinds())
    lacking = sorted({d.name for d in kinds if "fp8" not in d.peak_flops})
    if lacking:
        raise LayoutError(
            f'strategy {s.name!r}: precision = "fp8" needs FP8 tensor cores, and '
            f"{', '.join(lacking)} has none (Transformer Engine runs FP8 on Hopper and "
            f'newer); use precision = "bf16" or an H100, H200 or B200 preset'
        )


def resolve_schedule(s: Strategy, schedule: Schedule | None = None) -> Schedule:
    """The strategy's schedule: ``schedule`` (a schedule file, parsed when the scenario
    was read: :mod:`simulator.scenario.schedule_file`) or the registry's."""
    if s.schedule.startswith(FILE_SCHEDULE):
        if schedule is None:
            raise LayoutError(
                f"strategy {s.name!r} names a schedule file, {s.schedule[len(FILE_SCHEDULE) :]!r}, "
                "that was not read; run it with run_strategy (which reads it) or pass the "
                "parsed file as schedule="
            )
        if schedule.num_ranks != s.pp:
            raise LayoutError(
                f"strategy {s.name!r}: schedule file {schedule.name[len(FILE_SCHEDULE) :]} has "
                f"{schedule.num_ranks} rank rows but pp = {s.pp}"
            )
        return schedule
    return get_schedule(s.schedule)(s.pp, s.microbatches, s.chunks)


def parallelize(block: Any, s: Strategy, ep_rank: int = 0) -> ParallelBlock:
    """The block as a tensor-parallel group of ``s.tp`` ranks of expert-parallel rank
    ``ep_rank`` runs it."""
    if is_moe_block(block) and (s.tp > 1 or s.ep > 1):
        overlap = s.ep_overlap in ("shared", "both")
        return shard_moe_layer(
            block, s.tp, s.sequence_parallel, s.async_tp, s.ep, ep_rank, overlap, s.tp_comm_overlap
        )
    if s.tp == 1:
        return ShardMap([block])
    return shard_block(block, s.tp, s.sequence_parallel, s.async_tp, s.tp_comm_overlap)


def parallel_loss(loss: Any, s: Strategy) -> ShardLoss | VocabParallelCrossEntropy:
    """The loss as a tensor-parallel group of ``s.tp`` ranks computes it."""
    return shard_loss(loss, s.tp)


def token_layout(model_config: ModelConfig, s: Strategy) -> TokenLayout | None:
    """Which tokens each context-parallel rank holds (None without context parallelism)."""
    if s.cp == 1:
        return None
    return TokenLayout(model_config.seq_len, s.cp, s.cp_balance)  # type: ignore[attr-defined]


def context_copies(
    model: Any, s: Strategy, layout: TokenLayout | None, numerics: bool
) -> list[Any]:
    """One copy of ``model`` per context-parallel rank, each told the tokens it holds
    (``model`` itself alone without context parallelism). Shape-only, the copies hold
    the same shapes and do the same, so one model serves them all."""
    if layout is None:
        return [model]
    if not numerics:
        at_positions(model, layout.positions(0), layout.seq_len)
        return [model] * s.cp
    copies = [model, *(copy.deepcopy(model) for _ in range(s.cp - 1))]
    for c, each in enumerate(copies):
        at_positions(each, layout.positions(c), layout.seq_len)
    return copies


def _each(blocks: list[Any], make: Any) -> list[Any]:
    """``make`` of every copy's block; copies that are one (shape-only) make one."""
    if all(b is blocks[0] for b in blocks):
        return [make(blocks[0])] * len(blocks)
    return [make(b) for b in blocks]


def group_block(
    blocks: list[Any], s: Strategy, layout: TokenLayout | None, numerics: bool, ep_rank: int = 0
) -> ParallelBlock:
    """Block ``blocks[c]`` of every context-parallel copy as the worker's ``cp x tp``
    ranks (of expert-parallel rank ``ep_rank``) run it (:mod:`simulator.parallel.context`;
    experts and context parallelism are not built together: ``ep_rank`` is 0 with ``cp > 1``)."""
    if layout is None:
        return parallelize(blocks[0], s, ep_rank)
    copies = _each(blocks, lambda b: parallelize(b, s))
    return context_block(copies, layout, s.context_parallel, same=not numerics)


def group_loss(losses: list[Any], s: Strategy, layout: TokenLayout | None, numerics: bool) -> Any:
    """The loss of every context-parallel copy, side by side."""
    if layout is None:
        return parallel_loss(losses[0], s)
    copies = _each(losses, lambda x: parallel_loss(x, s))
    return LockstepLoss(copies, s.tp, same=not numerics)


def build_plan(
    cluster: ClusterSpec,
    model_config: ModelConfig,
    training: TrainingConfig,
    strategy: Strategy,
    schedule: Schedule | None = None,
) -> Plan:
    """Check, place and lower ``strategy``; see the module docstring. ``schedule`` is
    the parsed file of a strategy whose schedule is ``file:PATH.csv``. Every parameter
    made on the way takes the gradients of ``training.grad_precision``."""
    with gradients_in(training.grad_precision):
        return _build_plan(cluster, model_config, training, strategy, schedule)


def _build_plan(
    cluster: ClusterSpec,
    model_config: ModelConfig,
    training: TrainingConfig,
    strategy: Strategy,
    schedule: Schedule | None,
) -> Plan:
    s = strategy
    micro_batch = check_layout(cluster, training, s, model_config)
    check_numerics(model_config, training)
    check_context(s, model_config)
    mesh = Mesh(s.dp, s.tp, s.pp, s.order, cp=s.cp, ep=s.ep)
    schedule = resolve_schedule(s, schedule)
    info = None if s.schedule.startswith(FILE_SCHEDULE) else get_schedule(s.schedule)
    num_stages = schedule.num_stages
    if num_stages % s.pp:
        raise LayoutError(
            f"strategy {s.name!r}: the schedule has {num_stages} stages, which "
            f"does not divide over pp = {s.pp} ranks"
        )
    if info is None or not info.checked:
        validate(schedule, num_stages, s.microbatches)
    stage_rank = schedule.stage_to_rank()
    # DualPipe runs two pipelines the opposite ways over two copies of every model stage
    directions = schedule.directions
    half = num_stages // directions
    check_copies(s, directions)

    model = model_config.build(training.seed, numerics=training.numerics)
    stages = directions * split_blocks(
        model, model_config, cluster, training, s, mesh, stage_rank, half, micro_batch
    )

    workers: list[Worker] = []
    tied: list[TiedPair] = []
    # copies before any chunk is built: building may give a block its own copy of a
    # tied weight, and every replica must start from the same untouched model. A
    # shape-only replica holds no numbers, only shapes, the same in every replica:
    # the replicas share replica 0's chunks (planning stays independent of dp), but
    # for the experts, which differ between expert-parallel ranks.
    built = s.dp if training.numerics else 1
    tied0: list[TiedPair] = []  # replica 0's
    copies: list[TiedPair] = []
    copies0: list[TiedPair] = []
    layout = token_layout(model_config, s)
    replicas = [model if d == 0 else copy.deepcopy(model) for d in range(built)]
    # per replica, the model each direction's stages are cut from
    sources = [[m, *(copy.deepcopy(m) for _ in range(directions - 1))] for m in replicas]
    # and of each, one copy per context-parallel rank, each told which tokens it holds
    ranks = [[context_copies(m, s, layout, training.numerics) for m in ms] for ms in sources]
    experts: dict[int, dict[int, Chunk]] = {}  # shape-only: the chunks of each ep rank
    for d in range(s.dp):
        base = d * s.pp
        ep_rank = mesh.expert_coords(d)[0]
        for r in range(s.pp):
            devices = tuple(
                mesh.device(dp=d, cp=c, tp=t, pp=r) for c in range(s.cp) for t in range(s.tp)
            )
            workers.append(Worker(len(workers), d, r, devices))
        if d >= built:  # a shape-only replica: replica 0's chunks and tied pairs
            for r in range(s.pp):
                workers[base + r].chunks = workers[r].chunks
            if ep_rank:
                chunks = experts.get(ep_rank)
                if chunks is None:
                    chunks = experts[ep_rank] = _with_experts(
                        workers[: s.pp], sources[0], stages, s, ep_rank
                    )
                for c, chunk in chunks.items():
                    workers[base + stage_rank[c]].chunks = {
                        **workers[base + stage_rank[c]].chunks,
                        c: chunk,
                    }
            tied += [replace(t, owner=base + t.owner, user=base + t.user) for t in tied0]
            copies += [replace(t, owner=base + t.owner, user=base + t.user) for t in copies0]
            continue
        for c, blocks in enumerate(stages):
            held = ranks[d][c // half]
            # the last stage of each direction computes the loss
            loss = None
            if (c + 1) % half == 0:
                loss = group_loss([m.loss for m in held], s, layout, training.numerics)
            blocks_of = [
                group_block([m.blocks[i] for m in held], s, layout, training.numerics, ep_rank)
                for i in blocks
            ]
            workers[base + stage_rank[c]].chunks[c] = Chunk(
                c, blocks_of, loss, s.recompute, s.precision
            )
        pairs = tie_copies(workers[base : base + s.pp])
        twins = stage_copies(workers[base : base + s.pp], half) if directions > 1 else []
        if d == 0:
            tied0, copies0 = pairs, twins
        tied += pairs
        copies += twins
    # one program per pipeline rank, shared by its replicas (programs name ranks); a
    # schedule of blocking messages is lowered step by step (DeepSpeed's order)
    programs = [lowered(schedule, r, s.microbatches) for r in range(s.pp)]
    variant = get_variant(s.data_parallel)
    for w in workers:
        w.program = variant.lower(w, programs[w.pp_rank])
        w.peers = {r: w.dp_rank * s.pp + r for r in range(s.pp)}
    return Plan(
        strategy=s,
        cluster=cluster,
        model_config=model_config,
        training=training,
        mesh=mesh,
        schedule=schedule,
        schedule_info=info,
        stage_rank=stage_rank,
        stages=stages,
        workers=workers,
        micro_batch_size=micro_batch,
        num_parameters=model.num_parameters,
        tied=tied,
        num_active_parameters=model.num_active_parameters,
        copies=copies,
    )


def _with_experts(
    replica0: list[Worker], models: list[Any], stages: list[range], s: Strategy, ep_rank: int
) -> dict[int, Chunk]:
    """Shape-only: replica 0's chunks that hold MoE layers, rebuilt with expert-parallel
    rank ``ep_rank``'s experts (every other block shared with replica 0); ``models``
    holds the model of each direction's stages."""
    out: dict[int, Chunk] = {}
    half = len(stages) // len(models)
    for c, blocks in enumerate(stages):
        model = models[c // half]
        if not any(is_moe_block(model.blocks[i]) for i in blocks):
            continue
        chunk = next(w.chunks[c] for w in replica0 if c in w.chunks)
        blocks_of = [
            parallelize(model.blocks[i], s, ep_rank) if is_moe_block(model.blocks[i]) else block
            for i, block in zip(blocks, chunk.blocks, strict=True)
        ]
        out[c] = Chunk(c, blocks_of, chunk.loss, s.recompute, s.precision)
    return out


def gather_params(plan: Plan, dp_rank: int = 0) -> dict[str, Array]:
    """The full parameters of one replica, named as in the single-device model (the
    experts from every rank of its expert-parallel group)."""
    out: dict[str, Array] = {}
    for d in plan.mesh.ep_group(dp_rank):
        for r in range(plan.strategy.pp):
            for chunk in plan.worker(d, r).chunks.values():
                out.update(chunk.full_params())
    return out

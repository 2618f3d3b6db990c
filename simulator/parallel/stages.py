"""Which blocks each pipeline stage gets: the costs of blocks and the split a strategy asks for.

``partition = "uniform"`` gives every stage the same number of layers, the
embedding and the output layer joining the first and the last stage (as
Megatron-LM does). ``"balanced"`` prices every block -- forward and backward
of one micro-batch, shape-only, on the devices' roofline -- and minimises the
cost of the most expensive stage (:mod:`.partition`).

On a cluster whose nodes differ, a block costs each stage what it takes on
that stage's devices: on the slowest kind of device that holds the stage in
any replica or tensor-parallel rank (the step waits for the slowest replica,
and a tensor-parallel group for its slowest rank). A stage on H100s then gets
more blocks than one on A100s, where ``uniform`` leaves the A100 stage
setting the pace of the whole pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine.cost import CostModel
from ..hardware import ClusterSpec, DeviceSpec
from ..nn.config import ModelConfig
from ..ops.tape import Kernel, recording
from . import partition as partitions
from .mesh import Mesh
from .reuse import BlockReuse, reusing, run_unit
from .strategy import Strategy
from .training import TrainingConfig


def block_costs(
    model_config: ModelConfig,
    cluster: ClusterSpec,
    micro_batch: int,
    training: TrainingConfig,
    device: DeviceSpec | None = None,
) -> list[float]:
    """Seconds of forward + backward of every block for one micro-batch (shape-only), on
    ``device`` (default: the cluster's, node 0's).

    The loss is charged to the last block. Models may state them themselves
    (abstract models know their stage times, :meth:`ModelConfig.block_costs`).
    """
    stated = model_config.block_costs()
    if stated is not None:
        return stated
    cost = CostModel(device or cluster.device)
    return [
        sum(cost.kernel_time(k) for k in kernels)
        for kernels in _block_kernels(model_config, micro_batch, training)
    ]


def _block_kernels(
    model_config: ModelConfig, micro_batch: int, training: TrainingConfig
) -> list[list[Kernel]]:
    """The kernels of every block's forward and backward (the loss's in the last)."""
    model = model_config.build(training.seed, numerics=False)
    x, y = model_config.batch(training.seed, 0, micro_batch, numerics=False)
    last = len(model.blocks) - 1
    out_kernels = []

    def both(i: int, block: Any, x: Any) -> Any:
        out, ctx = block.forward(x)
        dy = out
        if i == last:
            _, lctx = model.loss.forward(out, y)
            dy = model.loss.backward(lctx, 1.0)
        block.backward(dy, ctx)
        return out

    with reusing(BlockReuse()):  # each kind of layer traced twice, not 96 times
        for i, block in enumerate(model.blocks):
            with recording() as tape:
                unit = "last" if i == last else "forward and backward"
                x = run_unit(unit, block, x, lambda i=i, block=block, x=x: both(i, block, x))
            out_kernels.append(tape.kernels())
    return out_kernels


def stage_costs(
    model_config: ModelConfig,
    cluster: ClusterSpec,
    micro_batch: int,
    training: TrainingConfig,
    kinds: list[list[DeviceSpec]],
) -> list[list[float]]:
    """Per stage, what every block costs on the slowest of the stage's ``kinds`` of
    device (block by block: the module docstring)."""
    stated = model_config.block_costs()
    if stated is not None:
        return [list(stated) for _ in kinds]
    kernels = _block_kernels(model_config, micro_batch, training)
    priced: dict[DeviceSpec, list[float]] = {}
    for kind in dict.fromkeys(k for stage in kinds for k in stage):
        cost = CostModel(kind)
        priced[kind] = [sum(cost.kernel_time(k) for k in ks) for ks in kernels]
    return [
        [max(each) for each in zip(*(priced[k] for k in stage), strict=True)] for stage in kinds
    ]


def stage_kinds(
    cluster: ClusterSpec, mesh: Mesh, stage_rank: dict[int, int], num_stages: int
) -> list[list[DeviceSpec]]:
    """The kinds of device that hold each stage, over its replicas and tensor ranks."""
    by_rank = [
        list(
            dict.fromkeys(
                cluster.device_of(mesh.device(dp=d, tp=t, pp=r))
                for d in range(mesh.dp)
                for t in range(mesh.tp)
            )
        )
        for r in range(mesh.pp)
    ]
    return [by_rank[stage_rank[c]] for c in range(num_stages)]


def uniform_layers(num_blocks: int, parts: int, ends: tuple[int, int]) -> list[range]:
    """``parts`` stages with the same number of layers each (the first ones take one more
    when they do not divide); the ``ends`` blocks before and after the layers join the
    first and the last stage (Megatron-LM places the embedding and the output layer so,
    Narayanan et al. 2021, sec. 2.2)."""
    before, after = ends
    layers = partitions.uniform(num_blocks - before - after, parts)
    shifted = [range(r.start + before, r.stop + before) for r in layers]
    shifted[0] = range(0, shifted[0].stop)
    shifted[-1] = range(shifted[-1].start, num_blocks)
    return shifted


def split_alike(
    model: Any, partition: str, num_stages: int, costs: Callable[[], list[float]]
) -> list[range]:
    """The blocks of every stage when every stage's devices are alike: ``uniform``
    layers, or the ``balanced`` split of the blocks' ``costs()`` (asked only then;
    the planner passes its cached ones)."""
    if partition == "uniform":
        return uniform_layers(len(model.blocks), num_stages, model.ends)
    if num_stages > len(model.blocks):
        partitions.uniform(len(model.blocks), num_stages)  # raises the clear error
    return partitions.balanced(costs(), num_stages)


def split_blocks(
    model: Any,
    model_config: ModelConfig,
    cluster: ClusterSpec,
    training: TrainingConfig,
    s: Strategy,
    mesh: Mesh,
    stage_rank: dict[int, int],
    num_stages: int,
    micro_batch: int,
) -> list[range]:
    """The blocks of every stage, as the strategy's ``partition`` asks (module docstring)."""
    if s.partition == "uniform" or cluster.homogeneous:
        return split_alike(
            model,
            s.partition,
            num_stages,
            lambda: block_costs(model_config, cluster, micro_batch, training),
        )
    if num_stages > len(model.blocks):
        partitions.uniform(len(model.blocks), num_stages)  # raises the clear error
    kinds = stage_kinds(cluster, mesh, stage_rank, num_stages)
    return partitions.balanced_stages(
        stage_costs(model_config, cluster, micro_batch, training, kinds)
    )

"""Models: a list of pipeline-splittable blocks, a loss, and their data.

A model config (a frozen dataclass per kind, as nanoGPT does) builds the
model in numerics mode (numpy parameters, from the seed) or in shape-only
mode (ShapeArray parameters), and draws the global batch of a step. Blocks
are the unit a pipeline partitions: a stage holds a contiguous run of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..keys import check_fields
from ..ops.arrays import Array
from ..ranges import Range
from .combinators import Sequential
from .config import ModelConfig
from .data import regression_batch, rng_for
from .layers import Layer, Linear, ReLU
from .loss import MSELoss
from .param import Param

FLOAT_DTYPES = ("float64", "float32", "bf16", "fp16")
#: A count or size of a model: a positive integer.
POSITIVE = Range(lo=1, integer=True)


def size(doc: str, limit: str | None = None) -> Any:
    """A positive integer field of a model config; ``limit`` names the
    :class:`~simulator.scenario.limits.Limits` field that bounds it (``max_width``)."""
    return {"doc": doc, "range": POSITIVE, **({"limit": limit} if limit else {})}


DTYPE = {"doc": "element type of parameters and activations", "choices": FLOAT_DTYPES}


@dataclass
class Model:
    """Blocks applied in order, then the loss on the last block's output.

    ``ends`` counts the blocks before and after the repeated layers (a GPT's
    embedding and head): a uniform pipeline split shares out the layers and
    gives those to the first and the last stage, as Megatron-LM does.
    """

    name: str
    blocks: list[Layer]
    loss: Any
    dtype: str
    ends: tuple[int, int] = (0, 0)

    def parameters(self) -> list[Param]:
        return [p for b in self.blocks for p in b.parameters()]

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    @property
    def num_active_parameters(self) -> int:
        """The parameters that act on one token: all of them, but for the routed
        experts a token does not use (:meth:`simulator.nn.moe.MoE.inactive_parameters`)."""
        idle = sum(
            layer.moe.inactive_parameters()
            for layer in self.blocks
            if getattr(layer, "moe", None) is not None
        )
        return self.num_parameters - idle


class MLPBlock(Sequential):
    """Block ``index`` of an MLP of ``depth`` blocks: ``Linear`` then ``ReLU``, or
    ``Linear`` alone for the last block.

    It knows its place in the stack because tensor parallelism pairs the blocks
    (see :mod:`simulator.parallel.tensor`).
    """

    def __init__(self, index: int, depth: int, linear: Linear) -> None:
        self.index = index
        self.depth = depth
        self.linear = linear
        last = index == depth - 1
        super().__init__(f"block{index}", [linear] if last else [linear, ReLU()])


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """A stack of ``layers`` square linear layers of ``width``, ReLU between them.

    Block ``i`` is ``Linear`` followed by ``ReLU`` (the last block has no
    ReLU), trained with MSE on a synthetic regression task.
    """

    kind: ClassVar[str] = "mlp"
    layers: int = field(default=8, metadata=size("linear layers (pipeline blocks)"))
    width: int = field(default=256, metadata=size("width of every layer", "max_width"))
    dtype: str = field(default="float64", metadata=DTYPE)

    def __post_init__(self) -> None:
        check_fields(self)  # the rules of the [model] table (raises ConfigError)

    @property
    def num_blocks(self) -> int:
        """One block per layer."""
        return self.layers

    def build(self, seed: int, numerics: bool) -> Model:
        rng = rng_for(seed, 0) if numerics else None
        blocks: list[Layer] = []
        for i in range(self.layers):
            linear = Linear.create(f"fc{i}", self.width, self.width, rng, self.dtype)
            blocks.append(MLPBlock(i, self.layers, linear))
        return Model("mlp", blocks, MSELoss(), self.dtype)

    def batch(self, seed: int, step: int, global_batch: int, numerics: bool) -> tuple[Array, Array]:
        return regression_batch(seed, step, global_batch, self.width, self.dtype, numerics)

    def tokens(self, samples: int) -> int:
        """Samples are the unit of throughput for this model."""
        return samples


def model_kinds() -> dict[str, type]:
    """Model kinds a scenario's ``[model] kind`` may name."""
    from .abstract import AbstractConfig
    from .gpt import GPTConfig
    from .llama import LlamaConfig

    return {"mlp": MLPConfig, "gpt": GPTConfig, "llama": LlamaConfig, "abstract": AbstractConfig}

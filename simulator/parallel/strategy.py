"""A parallel strategy: how one training step is spread over devices.

The fields are the keys of a ``[[strategy]]`` table in a scenario file. Each
field's metadata says what it means (``doc``), which values it allows
(``choices``, read from the registries that implement them, or ``range``) and
any other rule (``check``); :mod:`simulator.scenario.parse` derives its schema from
them, so this class is the one place the strategy options are written down, and
building one in Python checks the same rules (:func:`simulator.keys.check_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import comm
from ..errors import ConfigError, LayoutError
from ..keys import check_fields
from ..ops.precision import PRECISIONS
from ..ranges import Range
from .context import ALGORITHMS as CONTEXT_ALGORITHMS
from .data import variant_names
from .mesh import DEFAULT_ORDER, UNSUPPORTED_CP_EP, parse_order
from .partition import PARTITIONS
from .pipeline import schedule_names
from .stage import RECOMPUTE

#: ZeRO stages (Rajbhandari et al. 2020, sec. 5): 0 = plain DDP, 1 optimizer
#: state, 2 and gradients, 3 and parameters partitioned.
ZERO_STAGES = (0, 1, 2, 3)
GRAD_REDUCTIONS = ("mean", "sum")
#: What the dispatch and combine all-to-alls of expert parallelism may run under.
EP_OVERLAPS = ("none", "shared", "fb", "both")
#: Strategy names label tables and name output files: short and printable.
MAX_NAME_CHARS = 64
#: Prefix of a schedule read from a CSV file.
FILE_SCHEDULE = "file:"


def allreduce_algorithms() -> tuple[str, ...]:
    """Gradient all-reduce algorithms: every all-reduce of :data:`simulator.comm.ALGORITHMS`,
    and ``auto`` (the tuner's choice, the default)."""
    return (*comm.ALGORITHMS["all_reduce"], comm.AUTO)


def schedule_check(value: str) -> str | None:
    """None for a registered schedule or ``file:PATH``; else what is wrong."""
    if value in schedule_names() or (
        value.startswith(FILE_SCHEDULE) and value[len(FILE_SCHEDULE) :].strip()
    ):
        return None
    return (
        f"names an unknown schedule {value!r}; choose one of "
        f"{', '.join(map(repr, schedule_names()))} or 'file:PATH.csv'"
    )


def name_check(value: str) -> str | None:
    """None for a printable name of 1 to :data:`MAX_NAME_CHARS` characters; else what is wrong."""
    if 0 < len(value) <= MAX_NAME_CHARS and value.isprintable() and value.strip() == value:
        return None
    shown = repr(value) if len(value) <= 40 else repr(value[:37]) + "..."
    return (
        f"must be a name of 1 to {MAX_NAME_CHARS} printable characters without leading or "
        f"trailing spaces, got {shown}"
    )


def order_check(value: str) -> str | None:
    """None for a valid mesh order such as ``tp-dp-pp``; else what is wrong."""
    try:
        parse_order(value)
    except LayoutError:
        return (
            "must name each of tp, dp and pp once (cp and ep optional), fastest first, e.g. "
            f"'tp-dp-pp', got {value!r}"
        )
    return None


def _size(doc: str) -> dict:
    return {"doc": doc, "range": Range(lo=1, integer=True)}


@dataclass(frozen=True)
class Strategy:
    """One way to run the step; ``dp * cp * tp * pp`` devices."""

    name: str = field(
        default="single",
        metadata={"doc": "a unique name; names the output files", "check": name_check},
    )
    dp: int = field(default=1, metadata=_size("data-parallel replicas"))
    tp: int = field(default=1, metadata=_size("tensor-parallel group size"))
    pp: int = field(default=1, metadata=_size("pipeline stages (ranks)"))
    cp: int = field(
        default=1,
        metadata=_size("context-parallel ranks: each holds s/cp tokens of every sequence"),
    )
    context_parallel: str = field(
        default="ring",
        metadata={
            "doc": "how context-parallel attention exchanges keys and values: ring "
            "(point-to-point around the ring, overlapped with attention), allgather "
            "(Llama 3) or ulysses (all-to-all to heads)",
            "choices": tuple(CONTEXT_ALGORITHMS),
        },
    )
    cp_balance: bool = field(
        default=True,
        metadata={
            "doc": "cut every sequence into 2 cp chunks, rank r holding chunks r and "
            "2cp-1-r, so causal attention does equal work on every rank"
        },
    )
    microbatches: int = field(default=1, metadata=_size("micro-batches per replica per step"))
    schedule: str = field(
        default="1f1b",
        metadata={"doc": "pipeline schedule name, or file:PATH.csv", "check": schedule_check},
    )
    chunks: int = field(
        default=1, metadata=_size("model chunks per pipeline rank (interleaved, V-shape)")
    )
    partition: str = field(
        default="balanced",
        metadata={"doc": "how blocks are split into stages", "choices": PARTITIONS},
    )
    data_parallel: str = field(
        default="ddp", metadata={"doc": "data-parallel flavour", "choices": variant_names}
    )
    allreduce_algorithm: str = field(
        default="auto",
        metadata={
            "doc": "gradient all-reduce algorithm (auto: chosen as NCCL does)",
            "choices": allreduce_algorithms,
        },
    )
    bucket_mb: float = field(
        default=0.0,
        metadata={
            "doc": "DDP gradient bucket size in MB; 0 = one all-reduce",
            "range": Range(lo=0, hi=1e9),
        },
    )
    zero: int = field(default=0, metadata={"doc": "ZeRO stage", "choices": ZERO_STAGES})
    grad_reduction: str = field(
        default="mean",
        metadata={"doc": "average or add the replicas' gradients", "choices": GRAD_REDUCTIONS},
    )
    recompute: str = field(
        default="none", metadata={"doc": "activation recomputation", "choices": RECOMPUTE}
    )
    sequence_parallel: bool = field(
        default=False,
        metadata={"doc": "split layer norm and dropout along the sequence (tp > 1)"},
    )
    order: str = field(
        default=DEFAULT_ORDER,
        metadata={"doc": "rank order of the mesh axes, fastest first", "check": order_check},
    )
    pp_scatter_gather: bool = field(
        default=False, metadata={"doc": "send 1/tp of each activation and all-gather it"}
    )
    precision: str = field(
        default="bf16",
        metadata={
            "doc": "precision of the linear layers' GEMMs: bf16 (the model's dtype) or fp8 "
            "(at the FP8 peak, as Transformer Engine runs them; the numbers do not change)",
            "choices": PRECISIONS,
        },
    )
    async_tp: bool = field(
        default=True,
        metadata={
            "doc": "overlap tensor-parallel collectives with the GEMMs that do not need them "
            "(Megatron-LM's asynchronous all-reduce and sequence-parallel all-gather)"
        },
    )
    tp_comm_overlap: bool = field(
        default=False,
        metadata={
            "doc": "with sequence parallelism, cut the all-gather before each column-parallel "
            "GEMM and the reduce-scatter after each row-parallel GEMM of the transformer "
            "layers into tp chunks pipelined with the GEMM's chunks (Megatron-Core's "
            "--tp-comm-overlap, Transformer Engine's userbuffers); timing only"
        },
    )
    ep: int = field(
        default=1,
        metadata=_size("expert-parallel ranks: the experts shared out over ep data ranks"),
    )
    ep_overlap: str = field(
        default="none",
        metadata={
            "doc": "what hides the experts' all-to-alls: none, shared (the shared experts' "
            "compute), fb (the other chunk of a schedule's F&B pairs) or both",
            "choices": EP_OVERLAPS,
        },
    )

    overlap_grad_reduce: bool = field(
        default=True,
        metadata={
            "doc": "launch each gradient bucket's all-reduce or reduce-scatter as soon as "
            "backward has finished its gradients, overlapping the rest of backward (PyTorch "
            "DDP, Megatron's distributed optimizer); false: the compute stream waits for each"
        },
    )
    overlap_param_gather: bool = field(
        default=False,
        metadata={
            "doc": "ZeRO-1 and 2: all-gather the updated parameters bucket by bucket beside "
            "the next step's first forward, each block waiting for its own bucket "
            "(Megatron-Core's --overlap-param-gather); false: after the optimizer step"
        },
    )
    align_param_gather: bool = field(
        default=True,
        metadata={
            "doc": "with overlap_param_gather: launch every bucket's all-gather as the step "
            "starts, on every pipeline stage at once, each block waiting for its own "
            "(Megatron-Core's default since it has --align-param-gather); false: one bucket "
            "ahead of the forward, as Megatron-Core r0.8 does"
        },
    )
    prefetch_params: bool = field(
        default=True,
        metadata={
            "doc": "ZeRO-3: launch the next block's parameter all-gather while the current "
            "block computes (PyTorch FSDP's prefetch); false: gather each block when it starts"
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)  # the rules of a [[strategy]] table (raises ConfigError)
        self._check_axes()

    def _check_axes(self) -> None:
        if self.ep > 1 and self.cp > 1:
            raise ConfigError(f"Strategy {self.name!r}: {UNSUPPORTED_CP_EP}", "ep", "1 when cp > 1")

    def vary(self, **changes: Any) -> Strategy:
        """``dataclasses.replace(self, **changes)``, checking the rules of the changed
        fields alone (the others passed theirs when ``self`` was made): the planner
        makes hundreds of thousands of layouts from one strategy."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"Strategy has no field {sorted(unknown)[0]!r}")
        new = object.__new__(Strategy)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        check_fields(new, changes)
        new._check_axes()
        return new

    @property
    def num_devices(self) -> int:
        return self.dp * self.cp * self.tp * self.pp

    @property
    def axes(self) -> tuple[str, ...]:
        """The mesh axes whose product is the devices, as messages name them: ``dp, tp,
        pp``, and ``cp`` when the strategy splits the sequence."""
        return ("dp", "cp", "tp", "pp") if self.cp > 1 else ("dp", "tp", "pp")

    @property
    def pairs_overlap(self) -> bool:
        """Whether the two halves of a schedule's ``F&B`` pairs run overlapped, one
        computing while the other waits (``ep_overlap`` ``fb`` or ``both``); otherwise
        they run one after the other (:mod:`simulator.runtime.pairs`)."""
        return self.ep_overlap in ("fb", "both")

    @property
    def num_stages(self) -> int:
        """Model stages (chunks) of the pipeline."""
        return self.pp * self.chunks

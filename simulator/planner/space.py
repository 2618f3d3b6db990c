"""The search space: every dp x tp x pp layout of a model on a cluster, as strategies.

A layout is a :class:`~simulator.parallel.strategy.Strategy`: the sizes ``dp``,
``tp`` and ``pp`` (and ``cp``, when the search may split sequences, with the
context-parallel algorithm), the number of micro-batches (so the micro-batch size
follows from the batch), the pipeline schedule and its chunks, activation
recomputation, sequence parallelism, the ZeRO stage and the mesh order. The
keys a search does not vary (partition, bucket size, all-reduce algorithm,
...) come from a base strategy.

:func:`layouts` yields each distinct layout once. It builds them from
arithmetic only, and leaves every rule to the checks that ``run`` applies
(:mod:`simulator.planner.prune`). The arithmetic:

* ``dp * cp * tp * pp`` equals the number of devices asked for (by default every
  device of the cluster), so the sizes are the factorisations of that number
  (``cp`` up to ``max_cp``, 1 unless asked: context parallelism is for long
  sequences);
* the micro-batch size ``b`` divides the batch of a replica, ``B / dp``, and
  ``microbatches = B / (dp b)``;
* a mixture of experts tries every expert-parallel size that divides both
  ``dp`` and the experts (a dense model, or a layout with ``cp > 1``, only
  ``ep = 1``: experts and context parallelism are not built together);
* layouts that are the same run are yielded once: without a pipeline
  (``pp = 1``) there is no schedule and one chunk; ZeRO shards over the
  data-parallel replicas, so with ``dp = 1`` only ``zero = 0``; sequence
  parallelism splits over the tensor-parallel ranks, so with ``tp = 1`` only
  ``sequence_parallel = false``; ZeRO shards over ``dp x cp``, so with ``dp cp
  = 1`` only ``zero = 0``; without context parallelism (``cp = 1``) there is no
  algorithm to choose; two mesh orders that list the axes of size greater than
  1 in the same order place every rank on the same device.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError
from ..keys import Key, check_argument, check_fields, keys_of
from ..parallel.context import ALGORITHMS as CONTEXT_ALGORITHMS
from ..parallel.mesh import DEFAULT_ORDER, parse_order
from ..parallel.pipeline.schedules import get_schedule, schedule_names, searched_names
from ..parallel.strategy import ZERO_STAGES, Strategy, order_check
from ..ranges import Range

#: The strategy keys a search varies (the layout), in the order tables show them.
LAYOUT_KEYS = (
    "dp",
    "tp",
    "pp",
    "cp",
    "context_parallel",
    "microbatches",
    "schedule",
    "chunks",
    "recompute",
    "sequence_parallel",
    "zero",
    "order",
    "ep",
)
#: Every order of the three mesh axes, fastest-varying first (Megatron-LM's first).
ORDERS = (DEFAULT_ORDER, "tp-pp-dp", "dp-tp-pp", "dp-pp-tp", "pp-tp-dp", "pp-dp-tp")
RECOMPUTE = ("none", "selective", "full")
#: The keys a search may hold fixed, with the rules of their strategy keys.
FIXED = {
    **{k: keys_of(Strategy)[k] for k in LAYOUT_KEYS},
    "micro_batch_size": Key.of(int, "sequences per micro-batch", range=Range(lo=1, integer=True)),
}


def _registered(name: str) -> str | None:
    """None for a registered schedule (a search cannot try a file of its own)."""
    if name in schedule_names():
        return None
    known = ", ".join(map(repr, schedule_names()))
    return f"names an unknown schedule {name!r}; choose one of {known}"


def _positive(doc: str) -> dict[str, Any]:
    return {"doc": doc, "range": Range(lo=1, integer=True)}


@dataclass(frozen=True)
class SearchSpace:
    """Which layouts to try; every field narrows the search (None: no limit).

    Attributes:
        devices: ``dp * tp * pp``; None uses every device of the cluster.
        max_tp, max_pp: largest tensor- and pipeline-parallel sizes.
        max_cp: largest context-parallel size (1: sequences are not split).
        context_parallel: the context-parallel algorithms to try when ``cp > 1``.
        schedules: pipeline schedules to try (None: every registered one the planner
            searches, :func:`~simulator.parallel.pipeline.schedules.searched_names`).
        max_chunks: most model chunks per pipeline rank for schedules that
            take chunks (interleaved, zbv). Each chunk shrinks the bubble of
            interleaved 1F1B and multiplies its messages (Narayanan et al.
            2021, sec. 2.2.2); 4 keeps the search short.
        microbatch_sizes: micro-batch sizes ``b`` to try (None: every divisor
            of the replica's batch).
        recompute, sequence_parallel, zero, orders: the values to try.
        ep: expert-parallel sizes to try (None: for a mixture of experts every
            divisor of ``dp`` that divides the experts; 1 for a dense model).
        fixed: strategy keys held at one value, e.g. ``{"tp": 8}``; the keys
            of :data:`LAYOUT_KEYS` and ``micro_batch_size``.
    """

    devices: int | None = field(
        default=None,
        metadata=_positive("dp * cp * tp * pp (default: every device of the cluster)"),
    )
    max_tp: int | None = field(default=None, metadata=_positive("largest tensor-parallel size"))
    max_pp: int | None = field(default=None, metadata=_positive("largest pipeline-parallel size"))
    max_cp: int = field(
        default=1, metadata=_positive("largest context-parallel size (1: sequences are not split)")
    )
    context_parallel: tuple[str, ...] = field(
        default=CONTEXT_ALGORITHMS,
        metadata={
            "doc": "context-parallel algorithms to try when cp > 1",
            "choices": CONTEXT_ALGORITHMS,
        },
    )
    schedules: tuple[str, ...] | None = field(
        default=None, metadata={"doc": "pipeline schedules to try", "check": _registered}
    )
    max_chunks: int = field(
        default=4, metadata=_positive("most chunks per rank for interleaved and zbv")
    )
    microbatch_sizes: tuple[int, ...] | None = field(
        default=None, metadata=_positive("micro-batch sizes to try")
    )
    recompute: tuple[str, ...] = field(
        default=RECOMPUTE,
        metadata={"doc": "recomputation settings to try", "choices": RECOMPUTE},
    )
    sequence_parallel: tuple[bool, ...] = field(
        default=(False, True), metadata={"doc": "sequence-parallel settings to try"}
    )
    zero: tuple[int, ...] = field(
        default=ZERO_STAGES, metadata={"doc": "ZeRO stages to try", "choices": ZERO_STAGES}
    )
    orders: tuple[str, ...] = field(
        default=ORDERS,
        metadata={"doc": "mesh orders to try, e.g. tp-dp-pp", "check": order_check},
    )
    ep: tuple[int, ...] | None = field(
        default=None, metadata=_positive("expert-parallel sizes to try")
    )
    fixed: Mapping[str, Any] = field(
        default_factory=dict, metadata={"doc": "layout keys held at one value, e.g. {tp = 8}"}
    )

    def __post_init__(self) -> None:
        check_fields(self)  # the rules of the [plan] table (raises ConfigError)
        unknown = set(self.fixed) - set(FIXED)
        if unknown:
            raise ConfigError(
                f"cannot fix {', '.join(sorted(map(str, unknown)))}: the search varies "
                f"{', '.join(FIXED)}; set other strategy keys in [plan.base]",
                "fixed",
                ", ".join(FIXED),
            )
        fixed = {
            k: check_argument("SearchSpace: fixed", k, v, FIXED[k]) for k, v in self.fixed.items()
        }
        object.__setattr__(self, "fixed", fixed)

    def choices(self, key: str, default: tuple[Any, ...]) -> tuple[Any, ...]:
        """The values to try for ``key``: the fixed one, else ``default``."""
        return (self.fixed[key],) if key in self.fixed else default


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def mesh_key(order: str, dp: int, tp: int, pp: int, cp: int = 1) -> tuple[str, ...]:
    """The axes of size > 1 in the order's sequence: equal keys, equal meshes."""
    sizes = {"tp": tp, "dp": dp, "pp": pp, "cp": cp, "ep": 1}
    return tuple(a for a in parse_order(order) if sizes[a] > 1)


def sizes(devices: int, space: SearchSpace) -> Iterator[tuple[int, int, int, int]]:
    """``(dp, tp, pp, cp)`` with ``dp * cp * tp * pp = devices``, tp, pp, then cp
    ascending."""
    for tp in space.choices("tp", tuple(divisors(devices))):
        if devices % tp or (space.max_tp and tp > space.max_tp):
            continue
        for pp in space.choices("pp", tuple(divisors(devices // tp))):
            if (devices // tp) % pp or (space.max_pp and pp > space.max_pp):
                continue
            for cp in space.choices("cp", tuple(divisors(devices // (tp * pp)))):
                if (devices // (tp * pp)) % cp or (cp > space.max_cp and "cp" not in space.fixed):
                    continue
                dp = devices // (tp * pp * cp)
                if space.fixed.get("dp", dp) == dp:
                    yield dp, tp, pp, cp


def pipelines(pp: int, space: SearchSpace) -> list[tuple[str | None, int]]:
    """``(schedule, chunks)`` pairs; without a pipeline only ``(None, 1)``."""
    if pp == 1:
        return [(None, 1)]
    out = []
    # by default the schedules worth trying (not DeepSpeed's, never faster than 1f1b)
    for name in space.choices("schedule", tuple(space.schedules or searched_names())):
        # a schedule that takes chunks gets two or more (one chunk is its plain form)
        chunks = range(2, space.max_chunks + 1) if get_schedule(name).chunked else (1,)
        out += [(name, v) for v in space.choices("chunks", tuple(chunks))]
    return out


def expert_sizes(dp: int, experts: int, space: SearchSpace, cp: int = 1) -> tuple[int, ...]:
    """The expert-parallel sizes to try with ``dp`` replicas of a model of ``experts``
    experts (0: dense): what divides both, or what the space asks for (``run``'s checks
    refuse what does not fit). With context parallelism (``cp > 1``) only ``ep = 1``:
    experts and context parallelism are not built together."""
    if cp > 1:
        return tuple(e for e in space.choices("ep", (1,)) if e == 1)
    if not experts:
        return space.choices("ep", (1,))
    fits = tuple(e for e in divisors(dp) if experts % e == 0)
    return space.choices("ep", space.ep or fits)


def layout_groups(
    devices: int,
    global_batch: int,
    space: SearchSpace,
    base: Strategy | None = None,
    experts: int = 0,
) -> Iterator[tuple[Strategy, tuple[str, ...]]]:
    """Every distinct layout, grouped by what the mesh order leaves alone: each
    strategy (its order the group's first) with the distinct mesh orders it is
    tried in. Only placement depends on the order; the checks and the memory
    estimate do not, so the planner settles them once per group. A mixture of
    ``experts`` experts also tries expert-parallel sizes (:func:`expert_sizes`)."""
    base = base or Strategy()
    for dp, tp, pp, cp in sizes(devices, space):
        if global_batch % dp:
            continue
        replica = global_batch // dp
        bs = space.microbatch_sizes or tuple(divisors(replica))
        bs = space.choices("micro_batch_size", tuple(bs))
        if "microbatches" in space.fixed:
            bs = tuple(b for b in bs if b * space.fixed["microbatches"] == replica)
        seen_orders: set[tuple[str, ...]] = set()
        orders = []
        for order in space.choices("order", space.orders):
            key = mesh_key(order, dp, tp, pp, cp)
            if key not in seen_orders:
                seen_orders.add(key)
                orders.append(order)
        if not orders:
            continue
        sps = space.choices("sequence_parallel", space.sequence_parallel) if tp > 1 else (False,)
        zeros = space.choices("zero", space.zero) if dp * cp > 1 else (0,)
        algorithms = (
            space.choices("context_parallel", space.context_parallel)
            if cp > 1
            else (base.context_parallel,)
        )
        # the fields that stay, set (and checked) once per size and micro-batch size
        # (ep = 1 until the last step, which sets each layout's own)
        sized = base.vary(dp=dp, tp=tp, pp=pp, cp=cp, order=orders[0], ep=1, name="layout")
        for b in bs:
            if replica % b:
                continue
            batched = sized.vary(microbatches=replica // b)
            for (schedule, chunks), recompute, sp, zero, algorithm, ep in itertools.product(
                pipelines(pp, space),
                space.choices("recompute", space.recompute),
                sps,
                zeros,
                algorithms,
                expert_sizes(dp, experts, space, cp),
            ):
                strategy = batched.vary(
                    context_parallel=algorithm,
                    schedule=schedule or base.schedule,
                    chunks=chunks,
                    recompute=recompute,
                    sequence_parallel=sp,
                    zero=zero,
                    ep=ep,
                )  # named by the planner, once it is kept
                yield strategy, tuple(orders)


def layouts(
    devices: int,
    global_batch: int,
    space: SearchSpace,
    base: Strategy | None = None,
    experts: int = 0,
) -> Iterator[Strategy]:
    """Every distinct layout of ``devices`` devices for a batch of ``global_batch``
    (see the module docstring), in a fixed order."""
    for strategy, orders in layout_groups(devices, global_batch, space, base, experts):
        yield strategy
        for order in orders[1:]:
            yield replace(strategy, order=order)


def layout_name(s: Strategy) -> str:
    """A short unique name such as ``dp2-tp8-pp4-interleavedx2-m16-full-sp-zero1``."""
    parts = [f"dp{s.dp}", f"tp{s.tp}", f"pp{s.pp}"]
    if s.cp > 1:
        parts.append(f"cp{s.cp}-{s.context_parallel}" + ("" if s.cp_balance else "-unbalanced"))
    if s.pp > 1:
        parts.append(s.schedule + (f"x{s.chunks}" if s.chunks > 1 else ""))
    parts.append(f"m{s.microbatches}")
    if s.recompute != "none":
        parts.append(s.recompute)
    if s.sequence_parallel:
        parts.append("sp")
    if s.zero:
        parts.append(f"zero{s.zero}")
    if s.ep > 1:
        parts.append(f"ep{s.ep}")
    if mesh_key(s.order, s.dp, s.tp, s.pp, s.cp) != mesh_key(ORDERS[0], s.dp, s.tp, s.pp, s.cp):
        parts.append("by-" + ".".join(a for a in parse_order(s.order) if a not in ("cp", "ep")))
    return "-".join(parts)


def layout_keys(s: Strategy) -> dict[str, Any]:
    """The layout as scenario keys (what ``plan --json`` and ``plan.csv`` hold)."""
    return {
        "dp": s.dp,
        "tp": s.tp,
        "pp": s.pp,
        "cp": s.cp,
        "context_parallel": s.context_parallel if s.cp > 1 else None,
        "microbatches": s.microbatches,
        "schedule": s.schedule if s.pp > 1 else None,
        "chunks": s.chunks,
        "recompute": s.recompute,
        "sequence_parallel": s.sequence_parallel,
        "zero": s.zero,
        "order": s.order,
        "ep": s.ep,
    }

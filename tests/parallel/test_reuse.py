"""Shape-only runs that trace each kind of block once give what tracing every block gives.

:mod:`simulator.parallel.reuse` copies a block's tape and results to the blocks
like it. The oracle is the run that traces every block: Hypothesis draws small
shape-only layouts with every option that changes what a block records
(schedules with a B/W split, recomputation, sequence parallelism, TP
communication overlap, FP8, FlashAttention, context and expert parallelism,
ZeRO-3's per-block gathers, buckets), and each must give the same metrics to
the last bit and the same trace, event for event, labels included.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulator.errors import LayoutError, ScheduleError
from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.llama import LlamaConfig
from simulator.nn.models import MLPConfig
from simulator.ops.arrays import ShapeArray, tree_bytes
from simulator.ops.basic import emit
from simulator.ops.tape import ComputeSegment, Mark, Tape, on_rank, record, recording
from simulator.parallel import Strategy
from simulator.parallel.pipeline import schedule_names
from simulator.parallel.reuse import BlockReuse, reusing, run_unit
from simulator.parallel.stage import RECOMPUTE
from simulator.parallel.training import TrainingConfig
from simulator.runtime import replay

MODELS = {
    "mlp": MLPConfig(layers=6, width=8),  # the loss follows the last layer on the same tape
    "gpt": GPTConfig(layers=4, hidden=16, heads=2, seq_len=8, vocab=16, dropout=0.1),
    "gpt-flash": GPTConfig(layers=4, hidden=16, heads=2, seq_len=8, vocab=16, attention="flash"),
    "llama": LlamaConfig(
        layers=4, hidden=16, heads=4, kv_heads=2, ffn_hidden=12, seq_len=8, vocab=16
    ),
    "moe": LlamaConfig(
        layers=4, hidden=16, heads=4, kv_heads=2, ffn_hidden=12, seq_len=8, vocab=16,
        experts=4, top_k=2,
    ),
    # expert-parallel ranks whose experts get different loads: each prices its own tapes
    "moe-zipf": LlamaConfig(
        layers=4, hidden=16, heads=4, kv_heads=2, ffn_hidden=12, seq_len=8, vocab=16,
        experts=4, top_k=2, routing="zipf:1.2",
    ),
}  # fmt: skip
CLUSTER = preset("toy", nodes=2)  # 8 devices
SHAPES = TrainingConfig(numerics=False, global_batch=8, steps=1, optimizer="adam")


@st.composite
def layouts(draw: st.DrawFn) -> tuple[str, Strategy]:
    model = draw(st.sampled_from(sorted(MODELS)))
    tp = draw(st.sampled_from([1, 2]))
    pp = draw(st.sampled_from([1, 2]))
    dp = draw(st.sampled_from([1, 2]))
    cp = draw(st.sampled_from([1, 2])) if model not in ("moe", "moe-zipf", "mlp") else 1
    schedule = draw(st.sampled_from(schedule_names())) if pp > 1 else "1f1b"
    chunked = ("interleaved", "zbv", "dualpipe", "dualpipev")
    return model, Strategy(
        "layout",
        dp=dp,
        tp=tp,
        pp=pp,
        cp=cp,
        ep=draw(st.sampled_from([1, dp])) if model.startswith("moe") else 1,
        schedule=schedule,
        chunks=draw(st.sampled_from([1, 2])) if schedule in chunked else 1,
        microbatches=draw(st.sampled_from([1, 2, 4])),
        recompute=draw(st.sampled_from(RECOMPUTE)),
        sequence_parallel=draw(st.booleans()) if tp > 1 else False,
        tp_comm_overlap=draw(st.booleans()) if tp > 1 else False,
        precision=draw(st.sampled_from(["bf16", "fp8"])),
        zero=draw(st.sampled_from([0, 1, 2, 3])) if dp > 1 else 0,
        bucket_mb=draw(st.sampled_from([0.0, 0.0005])),
    )


def run(model: str, strategy: Strategy) -> tuple[dict, list]:
    result = run_strategy(CLUSTER, MODELS[model], SHAPES, strategy)
    return result.metrics, list(result.trace.events)


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(layouts())
def test_copying_blocks_changes_no_metric_and_no_event(case: tuple[str, Strategy]) -> None:
    model, strategy = case
    try:
        copied = run(model, strategy)
    except (LayoutError, ScheduleError):
        assume(False)  # refused up front with a clear error: not a layout to compare
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay, "BlockReuse", lambda: None)  # trace every block
        traced = run(model, strategy)
    assert copied[0] == traced[0]
    assert copied[1] == traced[1]


def tapes(model: str, strategy: Strategy, reuse: bool) -> tuple[list, BlockReuse | None]:
    """Every tape a shape-only run of ``model`` under ``strategy`` prices, as
    (kind, kernel names per rank or label, tag or handle) per item; and its
    :class:`BlockReuse` (None: every block traced)."""
    seen, made = [], []
    original = replay.compile_tape

    def compile_tape(tape, cost, keep_marks):  # type: ignore[no-untyped-def]
        seen.extend(tape.items if isinstance(tape, Tape) else tape)
        return original(tape, cost, keep_marks)

    def blocks() -> BlockReuse | None:
        made.append(BlockReuse() if reuse else None)
        return made[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay, "compile_tape", compile_tape)
        patch.setattr(replay, "BlockReuse", blocks)
        run_strategy(CLUSTER, MODELS[model], SHAPES, strategy)
    described = [
        ("segment", {r: [k.name for k in ks] for r, ks in item.kernels.items()}, item.tag)
        if isinstance(item, ComputeSegment)
        else (type(item).__name__, getattr(item, "label", None), getattr(item, "handle", None))
        for item in seen
    ]
    return described, made[0]


@pytest.mark.parametrize("recompute", RECOMPUTE)
def test_each_copied_kernel_and_collective_carries_its_own_layers_name(recompute: str) -> None:
    strategy = Strategy(
        "tp2", tp=2, microbatches=2, sequence_parallel=True, tp_comm_overlap=True,
        recompute=recompute,
    )  # fmt: skip
    copied, reuse = tapes("gpt", strategy, reuse=True)
    assert reuse is not None and reuse.copied > 0  # layers 2 and 3 copy layer 1
    traced, _ = tapes("gpt", strategy, reuse=False)
    assert copied == traced
    names = {n for kind, kernels, _ in copied if kind == "segment" for n in kernels[0]}
    assert {"layer0.attn.qkv", "layer3.attn.qkv"} <= names


class Layer:
    """A block whose ranks run different amounts of work (its segments end unequal)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def forward(self, xs: list[ShapeArray]) -> tuple[list[ShapeArray], None]:
        for r in range(len(xs)):
            with on_rank(r):
                for _ in range(r + 1):
                    emit(f"{self.name}.work", "elementwise", "float32", 0, 64)
        return [ShapeArray(x.shape, x.dtype) for x in xs], None


def recorded(reuse: BlockReuse | None) -> list:
    with recording() as tape, reusing(reuse):
        xs = [ShapeArray((4,), "float32") for _ in range(2)]
        for i in range(4):
            record(Mark("block", i))
            layer = Layer(f"layer{i}")
            xs, _ = run_unit("F", layer, xs, lambda layer=layer, xs=xs: layer.forward(xs))
        for r in range(2):  # a loss, right after the last layer
            with on_rank(r):
                emit("loss", "elementwise", "float32", 0, 64)
    return [
        {r: [k.name for k in ks] for r, ks in item.kernels.items()}
        if isinstance(item, ComputeSegment)
        else item
        for item in tape.items
    ]


def test_what_follows_a_copy_joins_its_open_segments_as_it_would_the_traced() -> None:
    reuse = BlockReuse()
    copied = recorded(reuse)
    assert reuse.copied == 2  # layers 2 and 3
    assert copied == recorded(None)
    assert copied[-1] == {0: ["layer3.work", "loss"], 1: ["layer3.work"] * 2 + ["loss"]}


class Cached(Layer):
    """A block whose result keeps an array the code hands out to every block alike."""

    TABLE = ShapeArray((64,), "float32")

    def forward(self, xs: list[ShapeArray]) -> tuple[list[ShapeArray], list]:
        ys, _ = super().forward(xs)
        return ys, [(self.TABLE, ShapeArray((4,), "float32")) for _ in xs]


def test_an_array_every_traced_block_returns_stays_shared_in_the_copies() -> None:
    def stash(reuse: BlockReuse | None) -> int:
        with recording(), reusing(reuse):
            xs, ctxs = [ShapeArray((4,), "float32") for _ in range(2)], []
            for i in range(4):
                record(Mark("block", i))
                layer = Cached(f"layer{i}")
                xs, ctx = run_unit("F", layer, xs, lambda layer=layer, xs=xs: layer.forward(xs))
                ctxs.append(ctx)
        return tree_bytes(ctxs)

    reuse = BlockReuse()
    assert stash(reuse) == stash(None) == 64 * 4 + 8 * 4 * 4  # the table once, 8 arrays
    assert reuse.copied == 2


def test_what_follows_the_traced_unit_on_its_tape_is_not_copied_with_it() -> None:
    # the last block of every worker's chunk, then the loss on the same segments; the
    # third worker copies the second's block, not the second's loss as well
    def workers(reuse: BlockReuse | None) -> list:
        tapes = []
        with reusing(reuse):
            for _ in range(4):
                with recording() as tape:
                    xs = [ShapeArray((4,), "float32") for _ in range(2)]
                    record(Mark("block", 0))
                    head = Layer("head")
                    run_unit("F", head, xs, lambda head=head, xs=xs: head.forward(xs))
                    for r in range(2):
                        with on_rank(r):
                            emit("loss", "elementwise", "float32", 0, 64)
                tapes.append(
                    [{r: [k.name for k in ks] for r, ks in item.kernels.items()}
                     for item in tape.items if isinstance(item, ComputeSegment)]
                )  # fmt: skip
        return tapes

    reuse = BlockReuse()
    assert workers(reuse) == workers(None)
    assert reuse.copied == 2

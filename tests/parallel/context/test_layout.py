"""Which tokens a context-parallel rank holds, what must divide what, and the lockstep worker."""

import numpy as np
import pytest

from simulator import Strategy, build_plan, preset
from simulator.errors import LayoutError
from simulator.nn.gpt import GPTConfig
from simulator.nn.llama import LlamaConfig
from simulator.nn.models import MLPConfig
from simulator.parallel.context.layout import TokenLayout
from simulator.parallel.training import TrainingConfig
from tests.conftest import assert_run_fails, ideal_cluster, run

LLAMA = LlamaConfig(layers=2, hidden=64, heads=8, kv_heads=2, ffn_hidden=64, seq_len=32, vocab=64)


def test_balanced_ranks_hold_an_early_and_a_late_chunk():
    layout = TokenLayout(16, cp=4)
    assert [layout.spans(r) for r in range(4)] == [
        ((0, 2), (14, 2)), ((2, 2), (12, 2)), ((4, 2), (10, 2)), ((6, 2), (8, 2)),
    ]  # fmt: skip
    assert layout.positions(1).tolist() == [2, 3, 12, 13]
    assert sorted(layout.order.tolist()) == list(range(16))
    np.testing.assert_array_equal(layout.order[layout.inverse], np.arange(16))
    unbalanced = TokenLayout(16, cp=4, balanced=False)
    assert unbalanced.spans(3) == ((12, 4),)


def test_the_worker_holds_cp_tensor_parallel_groups_in_mesh_order():
    training = TrainingConfig(global_batch=4, steps=1, numerics=False)
    plan = build_plan(ideal_cluster(2, 8), LLAMA, training, Strategy("x", dp=2, cp=2, tp=2))
    assert plan.mesh.size == 8 and len(plan.workers) == 2
    assert plan.workers[0].devices == (0, 1, 2, 3)  # tp fastest, then cp (tp-cp-dp-pp)
    assert plan.workers[1].devices == (4, 5, 6, 7)
    assert plan.mesh.groups("cp") == [[0, 2], [1, 3], [4, 6], [5, 7]]


def test_results_report_cp_and_the_table_shows_it():
    from simulator.viz.report import comparison_table

    result = run(LLAMA, Strategy("cp2", cp=2, tp=2), ideal_cluster(), global_batch=2, steps=1,
                 numerics=False)  # fmt: skip
    assert (result.metrics["dp"], result.metrics["cp"], result.metrics["tp"]) == (1, 2, 2)
    table = comparison_table([result.metrics])
    assert "dp x cp x tp x pp" in table and "1 x 2 x 2 x 1" in table
    single = run(LLAMA, Strategy("one"), ideal_cluster(), global_batch=2, steps=1,
                 numerics=False)  # fmt: skip
    assert "dp x tp x pp" in comparison_table([single.metrics])


SP24 = LlamaConfig(layers=1, hidden=64, heads=8, kv_heads=2, ffn_hidden=64, seq_len=24, vocab=64)


@pytest.mark.parametrize(
    ("model", "strategy", "message"),
    [
        (LLAMA, Strategy("x", cp=3), "seq_len = 32 does not divide by 6"),
        (LLAMA, Strategy("x", cp=3, cp_balance=False), "cuts every sequence into cp = 3 parts"),
        (SP24, Strategy("x", cp=2, tp=8, sequence_parallel=True), "tp = 8, which does not"),
        (LLAMA, Strategy("x", cp=8, tp=2, context_parallel="ulysses"), "1/cp of the 4 query"),
        (MLPConfig(layers=2, width=8), Strategy("x", cp=2), "has no sequences"),
        (LLAMA, Strategy("x", dp=2, cp=2, data_parallel="replicated"), "nn.DataParallel"),
        (LLAMA, Strategy("x", cp=2, tp=2, pp=2, pp_scatter_gather=True), "pp_scatter_gather"),
    ],
)
def test_layouts_that_cannot_split_the_sequence_are_one_clear_error(model, strategy, message):
    training = TrainingConfig(global_batch=4, steps=1, numerics=False)
    with pytest.raises(LayoutError, match=message):
        build_plan(ideal_cluster(2, 8), model, training, strategy)


def test_ulysses_repeats_key_value_heads_that_are_fewer_than_the_ranks():
    """8 query heads over 2 kv heads, cp = 4: each kv head goes to 2 ranks."""
    training = TrainingConfig(global_batch=4, steps=1, numerics=False)
    build_plan(ideal_cluster(), LLAMA, training, Strategy("x", cp=4, context_parallel="ulysses"))


def test_ulysses_needs_the_key_value_heads_to_split_or_repeat():
    model = LlamaConfig(layers=1, hidden=96, heads=12, kv_heads=3, ffn_hidden=64, seq_len=48,
                        vocab=64)  # fmt: skip
    training = TrainingConfig(global_batch=1, steps=1, numerics=False)
    ulysses = Strategy("x", cp=4, context_parallel="ulysses")
    with pytest.raises(LayoutError, match="one of cp and 3 must divide the other"):
        build_plan(ideal_cluster(), model, training, ulysses)


def test_a_scenario_with_a_bad_cp_fails_with_one_line(tmp_path, capsys):
    text = """
[cluster]
preset = "toy"
[model]
kind = "gpt"
layers = 2
hidden = 16
heads = 2
seq_len = 12
vocab = 16
[training]
global_batch = 4
steps = 1
[[strategy]]
name = "cp"
cp = 4
"""
    assert_run_fails(tmp_path, capsys, text, "seq_len = 12 does not divide by 8")


def test_the_mesh_command_lists_the_cp_groups(capsys):
    from simulator.cli import main

    assert main(["mesh", "--dp", "2", "--cp", "2", "--tp", "2", "--preset", "dgx-a100"]) == 0
    out = capsys.readouterr().out
    assert "2 x 2 x 2 x 1 (dp x cp x tp x pp) = 8 devices" in out
    assert "cp groups (keys and values in every attention layer" in out
    assert "devices [0, 2]: inside node 0" in out


def test_gpt_with_cp_splits_its_position_table_rows():
    gpt = GPTConfig(layers=1, hidden=16, heads=2, seq_len=8, vocab=16)
    training = TrainingConfig(global_batch=2, steps=1)
    plan = build_plan(preset("toy"), gpt, training, Strategy("x", cp=2))
    embedding = plan.workers[0].chunks[0].blocks[0]
    held = [copy.layers[0].held.tolist() for copy in embedding.copies]
    assert held == [[0, 1, 6, 7], [2, 3, 4, 5]]

"""Data-parallel variants before they run: registry entries, and bad input named in one
line (their execution is tested with the runtime, tests/runtime/test_data.py)."""

import pytest

from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from tests.conftest import TINY_MLP, assert_run_fails, ideal_cluster

MODEL = MLPConfig(layers=6, width=16)


BAD = (
    TINY_MLP.replace("global_batch = 8", "global_batch = 6")
    + """[[strategy]]
name = "x"
{}
"""
)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("dp = 4", "does not divide into dp*microbatches"),
        ('dp = 3\nallreduce_algorithm = "recursive"', "needs a power-of-two data-parallel group"),
        ('dp = 2\nallreduce_algorithm = "butterfly"', "allreduce_algorithm must be one of"),
        ('dp = 2\nzero = 1\nallreduce_algorithm = "tree"', "ZeRO needs reduce_scatter"),
        ("dp = 2\nzero = 4", "zero must be one of 0, 1, 2, 3"),
        ('dp = 2\ndata_parallel = "replicated"\nmicrobatches = 3', "no gradient accumulation"),
        ("dp = 2\npp = 2\nzero = 3\nmicrobatches = 1", "zero = 3 with pp > 1 is not supported"),
    ],
)
def test_bad_data_parallel_input_exits_2_with_one_line(tmp_path, capsys, lines, message):
    assert_run_fails(tmp_path, capsys, BAD.format(lines), message)


def test_the_variants_are_registry_entries():
    from simulator.errors import LayoutError
    from simulator.parallel import build_plan
    from simulator.parallel.data import VARIANTS, get_variant
    from simulator.parallel.program import Op
    from simulator.parallel.training import TrainingConfig

    assert set(VARIANTS) == {"ddp", "replicated"}
    with pytest.raises(LayoutError, match="unknown data_parallel 'fsdp'; choose one of 'ddp'"):
        get_variant("fsdp")
    training = TrainingConfig(global_batch=8, steps=1)
    for name, first in (("ddp", Op.COMPUTE), ("replicated", Op.REPLICATE)):
        plan = build_plan(
            ideal_cluster(), MODEL, training, Strategy(name, dp=2, data_parallel=name)
        )
        assert plan.workers[0].program[0][0] == first, name
        # the loss stays on the last stage; nn.DataParallel's primary applies it itself
        assert plan.workers[0].chunks[0].loss is not None

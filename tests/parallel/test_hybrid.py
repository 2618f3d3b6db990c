"""Data x tensor x pipeline parallelism together: the oracle, the traffic, the errors."""

import pytest

from simulator import GPTConfig, Strategy
from tests.conftest import assert_matches_single, assert_run_fails, run, single_device

GPT = GPTConfig(layers=4, hidden=16, heads=4, seq_len=8, vocab=32, dropout=0.1)
TRAINING = {"global_batch": 8, "steps": 2, "optimizer": "adam", "lr": 0.01}

LAYOUTS = [
    Strategy("dp2-tp2-pp2", dp=2, tp=2, pp=2, microbatches=2),
    Strategy("sp-zero1", dp=2, tp=2, pp=2, microbatches=2, sequence_parallel=True, zero=1),
    Strategy(
        "interleaved", dp=2, tp=2, pp=2, chunks=2, schedule="interleaved", microbatches=2, zero=1
    ),
    Strategy(
        "recompute", dp=2, tp=2, pp=2, microbatches=4, recompute="full", sequence_parallel=True
    ),
    Strategy("zb-h1", tp=2, pp=2, microbatches=4, schedule="zb-h1", dp=2, bucket_mb=0.001),
    Strategy("zbv-zero2", dp=2, tp=2, pp=2, chunks=2, schedule="zbv", microbatches=4, zero=2),
    Strategy("scatter-gather", tp=2, pp=2, microbatches=2, pp_scatter_gather=True, dp=2),
    Strategy("tp-pp-dp order", dp=2, tp=2, pp=2, microbatches=2, order="tp-pp-dp"),
]


@pytest.fixture(scope="module")
def single():
    return single_device(GPT, **TRAINING)


@pytest.mark.parametrize("strategy", LAYOUTS, ids=lambda s: s.name)
def test_hybrid_layouts_reproduce_single_device_training(single, strategy):
    assert_matches_single(run(GPT, strategy, **TRAINING), single)


def replica_param_bytes(result, dp_rank=0):
    s = result.plan.strategy
    return sum(
        p.nbytes
        for r in range(s.pp)
        for w in [result.plan.worker(dp_rank, r)]
        for t in range(s.tp)
        for p in w.params(t)
    )


@pytest.mark.parametrize("scatter_gather", [False, True])
def test_traffic_by_kind_follows_the_layout(scatter_gather):
    d, t, p, m, batch = 2, 2, 2, 2, 8
    b, s, h = batch // (d * m), GPT.seq_len, GPT.hidden
    item = 8  # float64
    result = run(
        GPT,
        Strategy("x", dp=d, tp=t, pp=p, microbatches=m, pp_scatter_gather=scatter_gather),
        **TRAINING,
    )
    sent = result.metrics["comm_bytes"]
    # pipeline: an activation forward and a gradient back per micro-batch and
    # boundary; every TP rank sends the whole b*s*h tensor, or 1/t of it with
    # Megatron's scatter/gather (Narayanan et al. 2021, sec. 4.1)
    per_rank = b * s * h * item // (t if scatter_gather else 1)
    assert sent["pp"] == d * m * (p - 1) * 2 * t * per_rank
    # data parallel: a ring all-reduce sends 2(d-1)/d of every rank's gradients
    assert sent["dp"] == 2 * (d - 1) * replica_param_bytes(result)
    # tied embedding: first and last stage sum their V/t x h shard; in a ring of
    # two each sends half of it twice, the whole shard
    shard = (GPT.padded_vocab(t) // t) * h * item
    assert sent["embedding"] == d * t * 2 * shard


def test_pipelining_does_not_change_tensor_parallel_traffic():
    with_pp = run(GPT, Strategy("a", tp=2, pp=2, microbatches=2), **TRAINING)
    without = run(GPT, Strategy("b", tp=2, microbatches=2), **TRAINING)
    assert with_pp.metrics["comm_bytes"]["tp"] == without.metrics["comm_bytes"]["tp"]


def test_tensor_parallelism_across_nodes_is_slower():
    inside = run(GPT, Strategy("in", dp=2, tp=2, pp=2, microbatches=2), **TRAINING)
    across = run(
        GPT, Strategy("out", dp=2, tp=2, pp=2, microbatches=2, order="pp-dp-tp"), **TRAINING
    )
    assert across.plan.mesh.group("tp") == [0, 4]  # one rank on each node
    assert across.metrics["iteration_time_s"] > inside.metrics["iteration_time_s"]


BAD = """
[cluster]
preset = "toy"
nodes = 2
[model]
kind = "gpt"
layers = 4
hidden = 16
heads = 4
seq_len = 8
vocab = 32
[training]
global_batch = 8
[[strategy]]
name = "x"
{}
"""


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("dp = 2\ntp = 4\npp = 2", "needs dp*tp*pp = 2*4*2 = 16 devices but the cluster has 8"),
        ("tp = 3", "tp = 3 does not divide"),
        ('pp = 2\nchunks = 2\nschedule = "interleaved"\nmicrobatches = 1', "multiple of"),
        ('dp = 2\norder = "tp-dp"', "must name each of tp, dp and pp once"),
        ("dp = 3", "does not divide into dp*microbatches"),
        (
            "tp = 2\nsequence_parallel = true\npp_scatter_gather = true\npp = 2",
            "pp_scatter_gather has nothing to scatter",
        ),
        ("sequence_parallel = true", "sequence"),
    ],
)
def test_bad_layouts_exit_2_with_one_clear_line(tmp_path, capsys, lines, message):
    assert_run_fails(tmp_path, capsys, BAD.format(lines), message)

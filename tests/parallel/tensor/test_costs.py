"""What tensor and model parallelism cost: traffic, activation memory, bubbles, links.

* traffic per transformer layer, micro-batch and device: ``8 b s h (t-1)/t``
  elements with ring collectives (Narayanan et al. 2021, sec. 3.2);
* activation bytes per layer in 16-bit: ``sbh(10 + 24/t + 5as/(ht))`` with
  tensor parallelism, ``sbh(34 + 5as/h)/t`` with sequence parallelism too
  (Korthikanti et al. 2022, table 2);
* layer-wise model parallelism with one micro-batch: bubble ``(p-1)/p``;
* a tensor-parallel group across two nodes is slower than one inside a node.
"""

import numpy as np
import pytest

from simulator.engine.trace import COMM
from simulator.errors import LayoutError
from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.layers import Linear
from simulator.nn.models import MLPConfig
from simulator.nn.transformer import TransformerLayer
from simulator.ops.arrays import ShapeArray
from simulator.parallel import Mesh, Strategy
from simulator.parallel.stage import Chunk
from simulator.parallel.tensor import shard_block
from simulator.parallel.training import TrainingConfig
from simulator.scenario.parse import load_scenario
from tests import REPO
from tests.conftest import assert_run_fails, ideal_cluster

ROOT = REPO
B, S, H, A = 4, 16, 32, 4  # micro-batch, sequence, hidden, heads
BF16 = 2


def gpt(layers: int) -> GPTConfig:
    return GPTConfig(
        layers=layers, hidden=H, heads=A, seq_len=S, vocab=64, dropout=0.1, dtype="bf16"
    )


def tp_run(layers: int, t: int, sequence_parallel: bool, m: int = 2):
    strategy = Strategy("tp", tp=t, microbatches=m, sequence_parallel=sequence_parallel)
    training = TrainingConfig(numerics=False, global_batch=B * m, steps=1)
    return run_strategy(preset("toy"), gpt(layers), training, strategy)


def per_layer(t: int, sequence_parallel: bool, m: int = 2) -> float:
    """Bytes one device sends per layer and micro-batch: the difference of L+1 and L layers.

    The difference leaves out what does not repeat per layer: the embedding's
    g, the head's f and the loss's three collectives of ``b s`` numbers.
    """
    one, two = (tp_run(n, t, sequence_parallel, m) for n in (1, 2))
    return (two.metrics["comm_bytes"]["tp"] - one.metrics["comm_bytes"]["tp"]) / (m * t)


@pytest.mark.parametrize("t", [2, 4])
def test_tensor_parallel_traffic_per_layer_is_8bsh(t):
    assert per_layer(t, False) == 8 * B * S * H * (t - 1) / t * BF16


@pytest.mark.parametrize("t", [2, 4])
def test_sequence_parallelism_moves_the_same_f_and_g_bytes(t):
    """Reduce-scatter + all-gather in place of every all-reduce: the same ``8bsh(t-1)/t``.

    On top of it, per layer: the all-gather of the column-parallel GEMMs'
    inputs again for their weight gradients (``2bsh(t-1)/t``), and the
    all-reduce of the layer norms' and row-parallel biases' ``6h`` gradients.
    """
    m = 2
    result = tp_run(2, t, True, m)
    sent = {"f/g": 0, "again": 0, "grads": 0}
    for e in result.trace.events:
        if e.lane == COMM and e.cat == "tp" and "layer1" in e.name:
            kind = "again" if "again" in e.name else "grads" if "layernorm" in e.name else "f/g"
            sent[kind] += e.args["bytes"] / (m * t)  # per micro-batch and device
    ring = (t - 1) / t * BF16
    assert sent == {
        "f/g": 8 * B * S * H * ring,
        "again": 2 * B * S * H * ring,
        "grads": 12 * H * ring,
    }
    assert per_layer(t, True, m) == sum(sent.values())


@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_activation_memory_per_layer_is_korthikanti_table_2(t, sequence_parallel):
    layer = shard_block(gpt(1).build(seed=0, numerics=False).blocks[1], t, sequence_parallel)
    chunk = Chunk(0, [layer], None)
    rows = S // t if sequence_parallel else S
    _, ctx = chunk.forward([ShapeArray((B, rows, H), "bf16") for _ in range(t)])
    sbh = S * B * H
    if sequence_parallel:
        expected = sbh * (34 + 5 * A * S / H) / t
    else:
        expected = sbh * (10 + 24 / t + 5 * A * S / (H * t))
    assert [chunk.stash_bytes(ctx, r) for r in range(t)] == [expected] * t


@pytest.mark.parametrize("p", [2, 4])
def test_layer_wise_model_parallelism_leaves_p_minus_1_of_p_idle(p):
    result = run_strategy(
        ideal_cluster(),
        MLPConfig(layers=4, width=32),
        TrainingConfig(global_batch=8, steps=1),
        Strategy("layerwise", pp=p, schedule="naive", microbatches=1),
    )
    assert result.metrics["bubble_fraction"] == pytest.approx((p - 1) / p, rel=1e-12)


@pytest.fixture(scope="module")
def scenario_results():
    scenario = load_scenario(ROOT / "scenarios" / "tensor_parallel.toml")
    return {
        s.name: run_strategy(scenario.cluster, scenario.model, scenario.training, s)
        for s in scenario.strategies
    }


def test_the_scenario_reproduces_the_single_device_losses(scenario_results):
    single = scenario_results["single"].losses
    for name, result in scenario_results.items():
        np.testing.assert_allclose(result.losses, single, rtol=1e-9, err_msg=name)


def test_a_tensor_parallel_group_across_two_nodes_is_slower(scenario_results):
    inside, across = scenario_results["dp2-tp4"], scenario_results["dp2-tp4-across-nodes"]
    cluster = inside.plan.cluster
    assert Mesh(2, 4, 1, "dp-tp-pp").group("tp") == [0, 2, 4, 6]
    assert {cluster.node_of(d) for d in across.plan.workers[0].devices} == {0, 1}
    assert {cluster.node_of(d) for d in inside.plan.workers[0].devices} == {0}
    assert across.metrics["iteration_time_s"] > inside.metrics["iteration_time_s"]
    assert across.metrics["comm_bytes"]["tp"] == inside.metrics["comm_bytes"]["tp"]

    # the runtime places each group's collectives where its devices are: across two
    # nodes the tuner takes NCCL's tree for some (it crosses the network once each way),
    # inside one node always the ring
    def algorithms(result):
        return {e.args["algorithm"] for e in result.trace.events if e.cat == "tp"}

    assert "tree" in algorithms(across) and algorithms(inside) == {"ring"}


GPT_TOML = """
name = "bad"
[cluster]
preset = "toy"
[model]
kind = "gpt"
layers = 1
hidden = 32
heads = 4
seq_len = 8
vocab = 64
[training]
global_batch = 4
steps = 1
[[strategy]]
name = "tp"
tp = 4
"""
MLP_TOML = (
    GPT_TOML.split("[model]")[0]
    + """[model]
kind = "mlp"
layers = 2
width = 16
[training]
global_batch = 4
steps = 1
[[strategy]]
name = "tp"
tp = 4
"""
)


@pytest.mark.parametrize(
    ("text", "changes", "message"),
    [
        (GPT_TOML, {"heads = 4": "heads = 2"}, "tp = 4 does not divide the attention heads"),
        (
            GPT_TOML,
            {"hidden = 32": "hidden = 12", "heads = 4": "heads = 6"},
            "heads (6); choose tp among the divisors of heads = 6 (hidden = 12",
        ),
        (
            GPT_TOML,
            {"seq_len = 8": "seq_len = 6", "tp = 4": "tp = 4\nsequence_parallel = true"},
            "sequence length that sequence parallelism splits (6)",
        ),
        (GPT_TOML, {"tp = 4": "sequence_parallel = true"}, "and tp = 1; set tp > 1"),
        (MLP_TOML, {"width = 16": "width = 10"}, "tp = 4 does not divide the MLP width (10)"),
        (MLP_TOML, {"tp = 4": "tp = 2\nsequence_parallel = true"}, "the MLP model has none"),
    ],
)
def test_layouts_that_do_not_divide_exit_2_with_one_line(tmp_path, capsys, text, changes, message):
    for old, new in changes.items():
        text = text.replace(old, new)
    assert_run_fails(tmp_path, capsys, text, message)


def test_an_mlp_inner_size_that_does_not_divide_is_an_error():
    layer = gpt(1).build(seed=0, numerics=False).blocks[1]
    odd = TransformerLayer(
        "odd",
        layer.ln1,
        layer.qkv,
        layer.core,
        layer.proj,
        layer.drop1,
        layer.ln2,
        Linear.create("odd.fc1", H, 6, None, "bf16"),
        Linear.create("odd.fc2", 6, H, None, "bf16"),
        layer.drop2,
    )
    with pytest.raises(LayoutError, match=r"tp = 4 does not divide the MLP inner size \(6\)"):
        shard_block(odd, 4, False)

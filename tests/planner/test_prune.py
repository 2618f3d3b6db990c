"""Pruning uses the checks ``run`` uses: a layout passes them exactly when it can be planned."""

from simulator import GPTConfig, Strategy, TrainingConfig, build_plan, preset
from simulator.errors import SimulatorError
from simulator.planner.prune import MEMORY_RULE, Pruner, rule_of
from simulator.planner.space import SearchSpace, layouts

GPT = GPTConfig(layers=2, hidden=16, heads=2, seq_len=8, vocab=32)
TRAINING = TrainingConfig(numerics=False, global_batch=8, steps=1, optimizer="adam")
CLUSTER = preset("toy", nodes=2)


def test_a_layout_survives_exactly_when_build_plan_accepts_it():
    space = SearchSpace(recompute=("none",), zero=(0, 3), orders=("tp-cp-dp-pp",), max_chunks=2)
    pruner = Pruner(CLUSTER, GPT, TRAINING)
    candidates = list(layouts(8, TRAINING.global_batch, space))
    survivors = {id(s) for s, _ in pruner.survivors(candidates)}
    assert pruner.pruned and MEMORY_RULE not in pruner.pruned  # tiny: everything fits
    for s in candidates:
        try:
            build_plan(CLUSTER, GPT, TRAINING, s)
            planned = True
        except SimulatorError:
            planned = False
        assert planned == (id(s) in survivors), s


def test_rejections_are_counted_by_rule():
    pruner = Pruner(CLUSTER, GPT, TRAINING)
    list(pruner.survivors(layouts(8, 8, SearchSpace(max_chunks=2, orders=("tp-cp-dp-pp",)))))
    rules = pruner.pruned
    assert rules["tp = N does not divide the attention heads (N)"] > 0
    assert (
        rules[
            "zero = N with pp > N is not supported (its per-block parameter gathers would "
            "have to cross pipeline stages, which DeepSpeed does not do either)"
        ]
        > 0
    )
    assert any(r.startswith("interleaved 1F1B runs micro-batches in groups of pp") for r in rules)
    assert sum(rules.values()) < pruner.checked


def test_memory_prunes_what_cannot_fit():
    big = GPTConfig(layers=8, hidden=2048, heads=16, seq_len=1024, vocab=512, dtype="bf16")
    pruner = Pruner(CLUSTER, big, TRAINING)  # toy devices hold 4 GiB
    survivors = list(pruner.survivors(layouts(8, 8, SearchSpace(max_chunks=2))))
    assert pruner.pruned[MEMORY_RULE] > 0
    assert all(estimate <= CLUSTER.device.memory_bytes for _, estimate in survivors)
    assert pruner.estimate(Strategy()) > pruner.capacity  # one device cannot hold it


def test_rule_names_drop_the_strategy_and_the_numbers():
    err = SimulatorError("strategy 'x': tp = 4 does not divide the heads (2); use tp = 1 or 2")
    assert rule_of(err) == "tp = N does not divide the heads (N)"


def test_dualpipe_with_zero_is_rejected_before_simulation():
    # DualPipe's two copies of every stage sum their gradients outside ZeRO's partitions:
    # build_plan refuses it, and so must the checks, or a search simulates it to fail
    model = GPTConfig(layers=6, hidden=16, heads=2, seq_len=8, vocab=32)
    s = Strategy(pp=2, microbatches=4, schedule="dualpipe", chunks=2, zero=1)
    pruner = Pruner(CLUSTER, model, TRAINING)
    assert list(pruner.survivors([s])) == []
    (rule,) = pruner.pruned
    assert rule.startswith("dualpipe keeps two copies of every stage")
    without = Strategy(pp=2, microbatches=4, schedule="dualpipe", chunks=2)
    assert len(list(Pruner(CLUSTER, model, TRAINING).survivors([without]))) == 1

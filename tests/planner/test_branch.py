"""The best-first search: rounds hand out the least tight bounds, in order, and working
ahead while the workers simulate changes no round."""

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import GPTConfig, TrainingConfig, preset
from simulator.planner.bound import StepBound
from simulator.planner.branch import BranchAndBound, families
from simulator.planner.prune import Pruner
from simulator.planner.space import SearchSpace, layout_groups, layout_name, layouts

GPT = GPTConfig(layers=4, hidden=32, heads=4, seq_len=16, vocab=64, dtype="bf16")
TRAINING = TrainingConfig(numerics=False, global_batch=8, steps=1, optimizer="adam")
CLUSTER = preset("toy", nodes=2)
SPACE = SearchSpace(max_chunks=2, zero=(0, 1), microbatch_sizes=(1, 2))


@functools.cache
def checks() -> tuple[Pruner, StepBound]:
    """One pruner and bound for every search (their caches hold pure values)."""
    pruner = Pruner(CLUSTER, GPT, TRAINING)
    return pruner, StepBound(pruner, 4)


def search() -> BranchAndBound:
    fams = families(layout_groups(4, TRAINING.global_batch, SPACE))
    return BranchAndBound(*checks(), fams, layout_name)


def test_rounds_hand_out_every_layout_least_tight_bound_first():
    found = search()
    given = []
    while batch := list(found.next_round(3, float("inf"))):
        assert len(batch) <= 3
        given += batch
    assert all(c.tight for c in given)
    bounds = [c.bound for c in given]
    assert bounds == sorted(bounds) and bounds[0] > 0.0
    # every layout that passes the checks, each once
    pruner = Pruner(CLUSTER, GPT, TRAINING)
    every = {layout_name(s) for s, _ in pruner.survivors(layouts(4, 8, SPACE))}
    assert sorted(c.strategy.name for c in given) == sorted(every) and len(every) > 40
    assert found.queued == found.unexpanded == 0


def test_a_round_stops_at_the_step_it_must_beat():
    found = search()
    first = list(found.next_round(4, float("inf")))
    below = first[-1].bound  # as if the 4th were the k-th fastest step
    rest = list(found.next_round(100, below))
    assert all(c.bound < below for c in rest)
    assert found.queued + found.unexpanded > 0  # what is left is skipped
    # each bound is at least the one before, and what is left is over the step by its
    # quick bound alone, or by its floor: no tight bound was worked out for it
    queued = [c for _, _, c in found._queue]
    assert all(key >= below for key, _, _ in found._queue)
    assert any(c.quick and not c.tight for c in queued)
    assert all(c.tight and c.bound >= found.bound.quick(c.strategy) for c in first + rest)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 40), min_size=5, max_size=5), st.integers(0, 4))
def test_working_ahead_changes_no_round(steps_ahead, cut_after):
    """``prepare`` between rounds (what the planner does while the workers simulate)
    gives the same rounds as choosing each round only when it is wanted, also when
    the later rounds must beat a step (here: the last bound of round ``cut_after``)."""
    plain, ahead = search(), search()
    below = float("inf")
    for r, steps in enumerate(steps_ahead):
        for _ in range(steps):
            if not ahead.prepare(3):
                break
        one = list(plain.next_round(3, below))
        two = list(ahead.next_round(3, below))
        assert [c.strategy.name for c in one] == [c.strategy.name for c in two]
        if r == cut_after and one:
            below = one[-1].bound


def test_checking_the_families_in_two_processes_finds_what_one_does():
    """Half of the families are checked in a forked process: the same members kept,
    the same floors and the same rejections, by rule, as checking all of them here."""

    def checked(workers: int) -> tuple:
        pruner = Pruner(CLUSTER, GPT, TRAINING)
        fams = families(layout_groups(4, TRAINING.global_batch, SPACE))
        found = BranchAndBound(pruner, StepBound(pruner, 4), fams, layout_name, workers)
        waiting = [(floor, i, f.members, f.floors, f.layouts) for floor, i, f in found._waiting]
        return sorted(waiting), dict(pruner.pruned), pruner.checked

    alone, shared = checked(1), checked(2)
    assert alone == shared
    assert alone[1] and len(alone[0]) > 10  # some families rejected members, many kept

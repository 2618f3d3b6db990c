"""The validator: one clear error per mistake, naming rank and step on the grid.

And the runtime's own deadlock detection, reached by bypassing validation.
"""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import DeadlockError, LayoutError, ScheduleError
from simulator.hardware import preset
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.pipeline import get_schedule, parse_csv, schedule_names, validate
from simulator.parallel.program import lower
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime


def _error(text: str, stages: int | None = None, microbatches: int | None = None) -> str:
    with pytest.raises(ScheduleError) as info:
        validate(parse_csv(text, "hand"), stages, microbatches)
    return str(info.value)


# each case: CSV, what the message must say, the marked cell
MALFORMED = {
    "missing backward": (
        "0F0,0F1,0B0\n,1F0,1B0,1F1,1B1\n",
        "rank 0, step 1: 0F1 has no backward (0BW1 is missing)",
        ">0F1<",
    ),
    "B before F": ("0F0,0B0\n1B0,1F0\n", "rank 1, step 0: 1BW0 comes before 1F0", ">1BW0<"),
    "stage on two ranks": (
        "0F0,0B0,1F1,1B1\n1F0,1B0,0F1,0B1\n",
        "rank 1, step 0: stage 1 also runs on rank 0",
        ">1F0<",
    ),
    "dependency cycle": (
        "0F0,0B0,0F1,0B1\n1F1,1B1,1F0,1B0\n",
        "deadlock at rank 0, step 1 (0BW0)",
        ">0BW0<",
    ),
    "W without its B": (
        "0F0,0B0,0W0\n1F0,1W0\n",
        "rank 1, step 1: 1W0 has no input-gradient backward (1B0 is missing)",
        ">1W0<",
    ),
    "B without its W": (
        "0F0,0B0,0W0\n1F0,1B0\n",
        "rank 1, step 1: 1B0 has no weight gradient (1W0 is missing)",
        ">1B0<",
    ),
    "full and split backward of one micro-batch": (
        "0F0,0B0,0W0,0BW0\n1F0,1BW0\n",
        "rank 0, step 3: 0BW0 is a full backward, but the same stage and micro-batch also "
        "has a split one",
        ">0BW0<",
    ),
    "halves of a pair that need each other": (
        "0F0,0BW0\n1F0&1BW0\n",
        "rank 1, step 0: the halves of 1F0&1BW0 run at once",
        ">1F0&1BW0<",
    ),
    "duplicate action": (
        "0F0,0B0,0F0\n1F0,1B0\n",
        "rank 0, step 2: 0F0 appears again (first at rank 0, step 0)",
        ">0F0<",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_each_mistake_gives_one_error_naming_rank_and_step(case: str) -> None:
    text, says, cell = MALFORMED[case]
    message = _error(text)
    assert says in message
    assert message.count(">") == 1 and cell in message
    assert "rank 0" in message.splitlines()[-2]  # the grid follows the explanation


def test_numbers_outside_the_strategy_are_named() -> None:
    text = "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n"
    assert "rank 0, step 1: 0F1 names micro-batch 1 but the step has 1" in _error(text, 2, 1)
    assert "names stage 1 but the model has 1 stages" in _error(text, 1, 2)


def test_a_missing_stage_or_micro_batch_is_reported() -> None:
    assert "no rank runs stage 1" in _error("0F0,0B0\n2F0,2B0\n")
    message = _error("0F0,0B0\n1F0,1B0\n", 2, 2)
    assert "stage 0 never processes micro-batch 1" in message


def test_huge_numbers_fail_fast_instead_of_counting() -> None:
    assert "no rank runs stage 1" in _error("0F0,999999999999B0\n")


def test_the_same_rank_needs_its_own_earlier_stage_first() -> None:
    # two chunks on one rank: stage 1's forward before stage 0's
    message = _error("1F0,0F0,0B0,1B0\n")
    assert "rank 0, step 0: 1F0 comes before 0F0" in message


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["gpipe", "1f1b", "zb-h1", "zb-h2", "interleaved"]),
    p=st.sampled_from([1, 2, 4]),  # dividing m, as interleaved needs
    m=st.sampled_from([4, 8]),
    data=st.data(),
)
def test_a_registered_schedule_missing_any_one_action_is_refused(name, p, m, data) -> None:
    """Every rule is needed: drop any single action of a valid schedule and one of them
    refuses it, marking at most one cell."""
    schedule = get_schedule(name)(p, m, 2 if name == "interleaved" else 1)
    stages = schedule.num_stages
    cells = [(r, s) for r, row in enumerate(schedule.ranks) for s, a in enumerate(row) if a]
    r, s = data.draw(st.sampled_from(cells))
    row = schedule.ranks[r]
    ranks = (*schedule.ranks[:r], (*row[:s], None, *row[s + 1 :]), *schedule.ranks[r + 1 :])
    with pytest.raises(ScheduleError) as info:
        validate(replace(schedule, ranks=ranks), stages, m)
    assert str(info.value).count(">") <= 1


@pytest.mark.parametrize("name", schedule_names())
def test_every_registered_schedule_validates(name: str) -> None:
    info = get_schedule(name)
    built = 0
    for p in (1, 2, 3, 4):
        for m in (1, 2, 4, 6, 8):
            for v in (1, 2, 3) if info.chunked else (1,):
                try:
                    schedule = info(p, m, v)
                except LayoutError:  # sizes its rules refuse, with a clear error
                    continue
                validate(schedule, p * v, m)
                built += 1
    assert built >= 4


def test_runtime_reports_a_deadlock_the_validator_was_not_asked_about() -> None:
    plan = build_plan(
        preset("toy"),
        MLPConfig(2, 8),
        TrainingConfig(global_batch=2, steps=1),
        Strategy("x", pp=2, microbatches=2, schedule="gpipe"),
    )
    cycle = parse_csv("0F0,0B0,0F1,0B1\n1F1,1B1,1F0,1B0\n", "cycle")
    for w in plan.workers:
        w.program = lower(cycle.actions(w.pp_rank), w.pp_rank, plan.stage_rank, 2)
    with pytest.raises(DeadlockError) as info:
        Runtime(plan).run()
    message = str(info.value)
    assert "worker 0 (dp 0, pp rank 0) waits for the gradient of stage 1, micro-batch 0" in message
    assert (
        "worker 1 (dp 0, pp rank 1) waits for the activation of stage 0, micro-batch 1" in message
    )

"""Every schedule: its layout rules, its closed-form bubble and peak memory on
the unit-time timeline, and the single-device oracle in numerics mode."""

from fractions import Fraction

import numpy as np
import pytest

from simulator.errors import LayoutError, ScheduleError
from simulator.hardware import preset
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy, build_plan, gather_params
from simulator.parallel.pipeline import get_schedule, run, schedule_names
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime

F = Fraction
#: (T_F, T_B, T_W) on the timeline: equal, a light W, a heavy W, a slow B, a slow F
TIMES = [(F(1), F(1), F(1)), (F(1), F(1), F(1, 2)), (F(1), F(1), F(2)), (F(1), F(2), F(1))]
TIMES += [(F(2), F(1), F(1, 2))]


def test_registry() -> None:
    assert {"gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv"} <= set(schedule_names())
    with pytest.raises(ScheduleError, match=r"unknown schedule 'zb'.*zb-h1"):
        get_schedule("zb")


def test_layout_rules_are_clear() -> None:
    with pytest.raises(LayoutError, match="multiple of 4"):
        get_schedule("interleaved")(4, 6, 2)
    with pytest.raises(LayoutError, match="set chunks = 2"):
        get_schedule("zbv")(4, 8, 3)
    with pytest.raises(LayoutError, match="one chunk per rank"):
        get_schedule("zb-h1")(4, 8, 2)


def _closed_form_holds(name: str, p: int, m: int, v: int, times: tuple[F, F, F]) -> None:
    info = get_schedule(name)
    schedule = info(p, m, v)
    t_f, t_b, t_w = times
    timeline = run(schedule, t_f, t_b, t_w)
    # fused schedules: the backward is B and W back to back
    b_arg, w_arg = (t_b, t_w) if info.split_backward else (t_b + t_w, F(0))
    expected = info.bubble(p, m, v, t_f, b_arg, w_arg)
    if expected is not None:
        measured = float(timeline.bubble_fraction())
        assert measured == pytest.approx(expected, abs=1e-15), f"{name} {p=} {m=} {v=} {times}"


@pytest.mark.parametrize("name", ["gpipe", "1f1b", "zb-h1", "zb-h2", "deepspeed"])
def test_closed_forms_are_exact_on_the_timeline(name: str) -> None:
    for p in (1, 2, 3, 4, 6):
        for m in (1, 2, p, 2 * p - 1, 3 * p + 1):
            for times in TIMES:
                _closed_form_holds(name, p, m, 1, times)


def test_interleaved_closed_form_is_exact_on_the_timeline() -> None:
    for p in (1, 2, 3, 4):
        for v in (1, 2, 3):
            for m in (p, 2 * p, 3 * p):
                for times in TIMES:
                    _closed_form_holds("interleaved", p, m, v, times)


def test_table_2_of_the_zero_bubble_paper() -> None:
    # Qi et al. 2024, Table 2, with T_W <= T_F and m >= 2p-1: the idle time inside the
    # first rank's span (the paper's "bubble"); the step's bubble adds for ZB-H2 that
    # the last rank starts (p-1) T_F later
    p, m = 4, 8
    for t_f, t_b, t_w in [(F(1), F(1), F(1)), (F(1), F(1), F(1, 2)), (F(3, 2), F(1), F(1))]:
        compute = m * (t_f + t_b + t_w)
        for name, bubble in [
            ("zb-h1", (p - 1) * (t_f + t_b - t_w)),
            ("zb-h2", (p - 1) * (t_f + t_b - 2 * t_w)),
        ]:
            timeline = run(get_schedule(name)(p, m), t_f, t_b, t_w)
            assert timeline.span(0) - timeline.busy(0) == bubble
            step = compute + max(bubble, (p - 1) * t_f if name == "zb-h2" else 0)
            assert timeline.step == step
            assert timeline.bubble_fraction() == 1 - compute / step


def test_zbv_has_no_bubble_inside_any_rank_with_equal_times() -> None:
    for p in (1, 2, 3, 4, 5, 8):
        for m in (2 * p - 1, 2 * p, 3 * p + 2):
            timeline = run(get_schedule("zbv")(p, m, 2), F(1), F(1), F(1))
            assert all(timeline.span(r) == timeline.busy(r) for r in range(p)), (p, m)
            # only the last rank's later start: (p-1) T of the step's 6m + (p-1)
            expected = F(p - 1, 6 * m + p - 1)
            assert timeline.bubble_fraction() == expected, (p, m)
            assert get_schedule("zbv").bubble(p, m, 2, 1.0, 1.0, 1.0) == pytest.approx(
                float(expected), abs=1e-15
            )
    assert get_schedule("zbv").bubble(4, 8, 2, 1.0, 1.0, 0.5) is None


def test_deepspeed_runs_trainschedules_steps_in_1f1b_order() -> None:
    # DeepSpeed's TrainSchedule: 2(m+p-1) steps; stage i's forward of b at step 2b+i, its
    # backward at 2b+2p-1-i, so neighbours always do opposite kinds; per rank, 1F1B's order
    for p in (1, 2, 3, 5):
        for m in (1, 2, p, 2 * p + 1):
            schedule = get_schedule("deepspeed")(p, m)
            assert schedule.blocking and not get_schedule("1f1b")(p, m).blocking
            for i, row in enumerate(schedule.ranks):
                assert len(row) == 2 * (m + p - 1)
                for b in range(m):
                    assert str(row[2 * b + i]) == f"{i}F{b}"
                    assert str(row[2 * b + 2 * p - 1 - i]) == f"{i}BW{b}"
                assert sum(a is not None for a in row) == 2 * m
                assert schedule.items(i) == list(get_schedule("1f1b")(p, m).ranks[i])


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (5, 15)])
def test_peak_stashes_in_flight(p: int, m: int) -> None:
    # Narayanan et al. 2021 sec. 2.2.1; Qi et al. 2024 Table 2
    assert get_schedule("gpipe")(p, m).peak_in_flight() == [m] * p
    assert get_schedule("1f1b")(p, m).peak_in_flight() == [p - i for i in range(p)]
    assert get_schedule("zb-h1")(p, m).peak_in_flight() == [p] * p
    assert get_schedule("zb-h2")(p, m).peak_in_flight() == [min(m, 2 * p - 1)] * p
    v = 2
    interleaved = get_schedule("interleaved")(p, m, v).peak_in_flight()
    assert interleaved == [2 * (p - r - 1) + (v - 1) * p + 1 for r in range(p)]
    assert get_schedule("zbv")(p, m, 2).peak_in_flight()[0] == 2 * p + 1


def test_placements() -> None:
    p = 4
    assert get_schedule("interleaved")(p, 8, 3).stage_to_rank() == {c: c % p for c in range(12)}
    zbv = get_schedule("zbv")(p, 8, 2).stage_to_rank()
    assert all(zbv[r] == r and zbv[2 * p - 1 - r] == r for r in range(p))


# -- numerics: every schedule reproduces single-device training ----------------------
MODEL = MLPConfig(layers=8, width=16, dtype="float64")
TRAINING = TrainingConfig(global_batch=8, steps=2, lr=0.05)


@pytest.fixture(scope="module")
def single() -> tuple[list[float], dict]:
    plan = build_plan(preset("toy"), MODEL, TRAINING, Strategy("single"))
    return Runtime(plan).run().losses, gather_params(plan)


CASES = [
    ("naive", 2, 2, 1),
    ("gpipe", 4, 4, 1),
    ("1f1b", 4, 8, 1),
    ("1f1b", 3, 2, 1),
    ("interleaved", 2, 4, 2),
    ("interleaved", 4, 4, 2),
    ("zb-h1", 4, 8, 1),
    ("zb-h1", 4, 2, 1),
    ("zb-h2", 4, 8, 1),
    ("zb-h2", 2, 2, 1),
    ("zbv", 2, 4, 2),
    ("zbv", 4, 8, 2),
    ("zbv", 4, 2, 2),
    ("deepspeed", 4, 8, 1),
    ("deepspeed", 3, 2, 1),
    ("deepspeed", 2, 1, 1),
]


@pytest.mark.parametrize(("name", "p", "m", "v"), CASES)
def test_reproduces_single_device_training(name: str, p: int, m: int, v: int, single) -> None:
    losses, weights = single
    strategy = Strategy("x", pp=p, microbatches=m, chunks=v, schedule=name)
    plan = build_plan(preset("toy"), MODEL, TRAINING, strategy)
    np.testing.assert_allclose(Runtime(plan).run().losses, losses, rtol=1e-9)
    got = gather_params(plan)
    assert got.keys() == weights.keys()
    for key, value in weights.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-12)


def test_a_schedule_is_built_once_per_size_and_lowered_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from simulator.parallel.pipeline import schedules
    from simulator.parallel.program import lower, lowered

    monkeypatch.setattr(schedules, "_KEEP_ACTIONS", 100)
    monkeypatch.setattr(schedules, "_BUILT", {})

    info = get_schedule("1f1b")
    first = info(4, 8)
    assert info(4, 8) is first  # kept: the generator is pure and a schedule immutable
    assert info(4, 9) is not first
    program = lowered(first, 1, 8)
    assert lowered(first, 1, 8) is program
    assert program == lower(first.items(1), 1, first.stage_to_rank(), 8)
    # what is kept stays within its budget, and one schedule too large is not kept
    too_large = schedules._KEEP_ACTIONS // (2 * 2) + 1
    big = info(2, too_large)
    assert info(2, too_large) is not big
    kept = sum(len(r) for entry in schedules._BUILT.values() for r in entry[1].ranks)
    assert kept <= schedules._KEEP_ACTIONS

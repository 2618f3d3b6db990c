"""The Zero Bubble paper's bubble rate (Qi et al. 2024, sec. 5.3, Table 2) and the
steady state without a barrier between steps (sec. 4, optimizer post-validation)."""

import pytest

from simulator.nn.abstract import AbstractConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from tests.conftest import assert_matches_single, run, single_device


def _run(schedule: str, p: int, m: int, times, barrier: bool = True, v: int = 1, steps: int = 1):
    t_f, t_b, t_w = times
    model = AbstractConfig(
        stages=p * v, forward_ms=t_f / v, backward_ms=t_b / v, weight_ms=t_w / v, comm_ms=0.0
    )
    strategy = Strategy(schedule, pp=p, microbatches=m, schedule=schedule, chunks=v)
    return run(
        model, strategy, numerics=False, global_batch=m, steps=steps, step_barrier=barrier
    ).metrics


def _rate(bubble: float, m: int, times) -> float:
    """Table 2's bubble size over the longest span: the bubble plus ``m (T_F+T_B+T_W)``."""
    return bubble / (bubble + m * sum(times))


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (4, 12)])
@pytest.mark.parametrize("times", [(1.0, 1.0, 1.0), (1.0, 1.5, 0.5)])
def test_zero_bubble_rates_are_table_2(p, m, times):
    """ZB-H1: ``(p-1)(T_F+T_B-T_W)``; ZB-H2: ``(p-1)(T_F+T_B-2T_W)``, zero with equal
    times; ZB-V: zero with equal times -- each over the longest rank's span."""
    t_f, t_b, t_w = times
    h1 = _run("zb-h1", p, m, times)
    assert h1["pipeline_bubble_rate"] == pytest.approx(
        _rate((p - 1) * (t_f + t_b - t_w), m, times), rel=1e-9
    )
    h2 = _run("zb-h2", p, m, times)
    assert h2["pipeline_bubble_rate"] == pytest.approx(
        _rate((p - 1) * (t_f + t_b - 2 * t_w), m, times), rel=1e-9, abs=1e-12
    )
    if times == (1.0, 1.0, 1.0):
        assert h1["pipeline_bubble_rate"] == pytest.approx((p - 1) / (3 * m + p - 1), rel=1e-9)
        assert h2["pipeline_bubble_rate"] == pytest.approx(0.0, abs=1e-12)
        # the step still pays the (p-1) T_F the last rank starts later
        assert h2["bubble_fraction"] == pytest.approx(h2["bubble_fraction_analytic"], rel=1e-9)
        assert h2["bubble_fraction"] == pytest.approx((p - 1) / (3 * m + p - 1), rel=1e-9)
        zbv = _run("zbv", p, m, times, v=2)
        assert zbv["pipeline_bubble_rate"] == pytest.approx(0.0, abs=1e-12)
        assert zbv["bubble_fraction"] == pytest.approx(zbv["bubble_fraction_analytic"], rel=1e-9)
        assert zbv["bubble_fraction"] > 0


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_gpipe_and_1f1b_rate_is_the_bubble_fraction(schedule):
    p, m = 4, 8
    metrics = _run(schedule, p, m, (1.0, 1.0, 1.0))
    assert metrics["pipeline_bubble_rate"] == pytest.approx(metrics["bubble_fraction"], rel=1e-9)
    assert metrics["pipeline_bubble_rate"] == pytest.approx((p - 1) / (m + p - 1), rel=1e-9)


@pytest.mark.parametrize(("schedule", "v"), [("zb-h2", 1), ("zbv", 2)])
def test_without_a_barrier_later_steps_have_no_bubble(schedule, v):
    """Equal times, free communication: with the barrier every step pays the skew;
    without it the third step is exactly ``m (T_F+T_B+T_W)``, bubble 0."""
    p, m = 4, 8
    times = (1.0, 1.0, 1.0)
    barrier = _run(schedule, p, m, times, v=v, steps=3)
    free = _run(schedule, p, m, times, barrier=False, v=v, steps=3)
    assert barrier["step_barrier"] and not free["step_barrier"]
    assert barrier["bubble_fraction"] == pytest.approx(barrier["bubble_fraction_analytic"])
    assert free["iteration_time_s"] == pytest.approx(m * 3e-3, rel=1e-9)
    assert free["bubble_fraction"] == pytest.approx(0.0, abs=1e-9)
    assert free["compute_fraction"] == pytest.approx(1.0, rel=1e-9)
    assert free["pipeline_bubble_rate"] == pytest.approx(0.0, abs=1e-12)
    assert barrier["pipeline_bubble_rate"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b", "zb-h1"])
def test_without_a_barrier_rank_0_still_sets_the_pace(schedule):
    """The first rank ends every step last in these schedules: the barrier costs nothing."""
    times = (1.0, 1.0, 1.0)
    barrier = _run(schedule, 4, 8, times, steps=3)
    free = _run(schedule, 4, 8, times, barrier=False, steps=3)
    assert free["iteration_time_s"] == pytest.approx(barrier["iteration_time_s"], rel=1e-9)


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("zb-h2", pp=2, microbatches=4, schedule="zb-h2"),
        Strategy("dp2-pp2-zero2", dp=2, pp=2, microbatches=2, zero=2, bucket_mb=0.001),
    ],
    ids=lambda s: s.name,
)
def test_without_a_barrier_training_equals_one_device(strategy):
    """Steps overlap in time, never in data: each worker draws its own step's batch."""
    model = MLPConfig(4, 16)
    result = run(model, strategy, steps=3, step_barrier=False)
    assert_matches_single(result, single_device(model, steps=3))

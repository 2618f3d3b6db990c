"""DualPipe and DualPipeV on the unit-time timeline: the DualPipe repository's closed
forms (bubble ``(PP/2 - 1)(F&B + B - 3W)``, ``PP + 1`` activations per device) hold
exactly, as every other schedule's do (DeepSeek-AI 2024, sec. 3.2.1)."""

from fractions import Fraction

import pytest

from simulator.parallel.pipeline import get_schedule, run

F = Fraction
#: (T_F, T_B, T_W) where the closed form is exact: F equals the input-gradient part
#: B, and W <= F (simulator.parallel.pipeline.dualpipe)
EXACT = [(F(1), F(1), F(1)), (F(1), F(1), F(1, 2)), (F(2), F(2), F(1)), (F(3), F(3), F(0))]

CASES = [("dualpipe", p, m) for p in (2, 4, 6, 8) for m in (2 * p, 2 * p + 2, 6 * p)]
CASES += [("dualpipev", p, m) for p in (1, 2, 3, 4, 5, 8) for m in (2 * p, 2 * p + 1, 3 * p + 2)]


@pytest.mark.parametrize(("name", "p", "m"), CASES)
def test_bubble_and_activations_equal_the_closed_forms(name: str, p: int, m: int) -> None:
    info = get_schedule(name)
    schedule = info(p, m, 2)
    for t_f, t_b, t_w in EXACT:
        timeline = run(schedule, t_f, t_b, t_w)
        # the repository's bubble, in time, is every rank's idle time
        pp = p if name == "dualpipe" else 2 * p  # DualPipeV: 2p chunks on p devices
        full = t_b + t_w
        idle = (pp // 2 - 1) * ((t_f + full) + full - 3 * t_w)
        assert all(timeline.step - timeline.busy(r) == idle for r in range(p)), (t_f, t_b, t_w)
        expected = info.bubble(p, m, 2, t_f, t_b, t_w)
        assert float(timeline.bubble_fraction()) == pytest.approx(expected, abs=1e-15)
    assert schedule.peak_in_flight() == [pp + 1] * p


def test_the_closed_form_is_not_claimed_where_it_is_not_exact() -> None:
    assert get_schedule("dualpipev").bubble(4, 8, 2, 1.0, 2.0, 1.0) is None
    assert get_schedule("dualpipe").bubble(4, 8, 2, 1.0, 1.0, 2.0) is None

"""The abstract (timing-only) model replays the papers' closed forms exactly."""

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.errors import ScenarioError
from simulator.experiment.metrics import summarize
from simulator.hardware import ClusterSpec, preset
from simulator.nn.abstract import AbstractConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.pipeline import get_schedule
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime

MB = 1000  # activation bytes per micro-batch per stage


def _free_cluster() -> ClusterSpec:
    """Two toy nodes with links that cost nothing (the abstract model sets message times)."""
    cluster = preset("toy", nodes=2)
    link = replace(cluster.intra_node, bandwidth=float("inf"), latency=0.0)
    return replace(cluster, intra_node=link, inter_node=link)


def _run(
    name: str, p: int, m: int, v: int = 1, t: tuple = (1.0, 1.0, 1.0), comm: float = 0.0
) -> dict:
    # a chunk is 1/v of a stage, so its times are 1/v of the stage's
    model = AbstractConfig(
        stages=p * v,
        forward_ms=t[0] / v,
        backward_ms=t[1] / v,
        weight_ms=t[2] / v,
        comm_ms=comm,
        activation_bytes=MB,
    )
    training = TrainingConfig(numerics=False, global_batch=m, steps=1)
    strategy = Strategy("x", pp=p, microbatches=m, chunks=v, schedule=name)
    plan = build_plan(_free_cluster(), model, training, strategy)
    return summarize(plan, Runtime(plan).run())


FLUSH = [(name, p, m) for name in ("gpipe", "1f1b") for p, m in [(2, 1), (2, 4), (4, 4), (4, 8)]]


@pytest.mark.parametrize(("name", "p", "m"), FLUSH)
def test_gpipe_and_1f1b_bubble(name: str, p: int, m: int) -> None:
    # Huang et al. 2019 sec. 2.3; Narayanan et al. 2021 sec. 2.2.1
    result = _run(name, p, m)
    assert result["bubble_fraction"] == pytest.approx((p - 1) / (m + p - 1), abs=1e-12)
    assert result["bubble_fraction_analytic"] == pytest.approx((p - 1) / (m + p - 1), abs=1e-15)


def test_naive_model_parallel_bubble() -> None:
    # one stage busy at a time (Ultra-Scale Playbook, pipeline section)
    result = _run("naive", 4, 3)
    assert result["bubble_fraction"] == pytest.approx(3 / 4, abs=1e-12)
    assert result["bubble_fraction_analytic"] == pytest.approx(3 / 4, abs=1e-15)


@pytest.mark.parametrize(("p", "m", "v"), [(2, 2, 2), (2, 4, 3), (4, 4, 2), (4, 8, 2)])
def test_interleaved_bubble(p: int, m: int, v: int) -> None:
    # Narayanan et al. 2021 sec. 2.2.2
    result = _run("interleaved", p, m, v)
    assert result["bubble_fraction"] == pytest.approx((p - 1) / (v * m + p - 1), abs=1e-12)
    assert result["bubble_fraction_analytic"] == pytest.approx(result["bubble_fraction"], abs=1e-12)


@pytest.mark.parametrize("times", [(1.0, 1.0, 1.0), (1.0, 1.0, 0.5), (1.5, 1.0, 1.0)])
@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8)])
def test_zero_bubble_table_2(times: tuple, p: int, m: int) -> None:
    # Qi et al. 2024, Table 2: the first rank's idle time inside its span; for ZB-H2 the
    # step is longer by the last rank's later start, (p-1) T_F, when that is larger
    t_f, t_b, t_w = times
    for name, bubble in [
        ("zb-h1", (p - 1) * (t_f + t_b - t_w)),
        ("zb-h2", max((p - 1) * (t_f + t_b - 2 * t_w), (p - 1) * t_f)),
    ]:
        result = _run(name, p, m, t=times)
        expected = bubble / (m * (t_f + t_b + t_w) + bubble)
        assert result["bubble_fraction"] == pytest.approx(expected, abs=1e-12)
        assert result["bubble_fraction_analytic"] == pytest.approx(expected, abs=1e-12)


def test_equal_times_leave_no_bubble_but_the_fill_in_zb_h2_and_zbv() -> None:
    # every rank busy from its first action to its last; the last starts (p-1) T_F later
    p, m = 4, 8
    assert _run("zb-h2", p, m)["bubble_fraction"] == pytest.approx(
        (p - 1) / (3 * m + p - 1), abs=1e-12
    )
    zbv = _run("zbv", p, m, v=2)
    # a chunk takes half a stage's time: (p-1)/2 of the 3m stage-times every rank computes
    expected = (p - 1) / 2 / (3 * m + (p - 1) / 2)
    assert zbv["bubble_fraction"] == pytest.approx(expected, abs=1e-12)
    assert zbv["bubble_fraction_analytic"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8)])
def test_peak_activation_memory(p: int, m: int) -> None:
    def stashes(name: str) -> list[int]:
        return [d["memory"]["activations_peak"] // MB for d in _run(name, p, m)["devices"]]

    # Narayanan et al. 2021 sec. 2.2.1; Qi et al. 2024 Table 2
    assert stashes("gpipe") == [m] * p
    assert stashes("1f1b") == [p - i for i in range(p)]
    assert stashes("zb-h1")[0] == p
    assert stashes("zb-h2")[0] == 2 * p - 1


def test_the_optimizer_step_and_the_loss_add_no_time() -> None:
    p, m = 4, 8
    result = _run("1f1b", p, m)
    # rank 0 is busy or waiting from its first forward to its last backward
    assert result["iteration_time_s"] == pytest.approx((m + p - 1) * 3e-3, abs=1e-15)
    assert all(d["compute_s"] == pytest.approx(m * 3e-3) for d in result["devices"])


def test_messages_take_comm_ms_on_the_links() -> None:
    result = _run("gpipe", 2, 1, comm=0.25)
    # F, activation, F, B+W, gradient, B+W
    assert result["iteration_time_s"] == pytest.approx((1 + 0.25 + 1 + 2 + 0.25 + 2) * 1e-3)
    assert result["devices"][0]["compute_s"] == pytest.approx(3e-3)


def test_per_stage_values_and_block_costs() -> None:
    model = AbstractConfig(stages=3, forward_ms=[1, 2, 3], weight_ms=0, comm_ms=[0.5, 0.5, 0])
    assert model.block_costs() == pytest.approx([2e-3, 3e-3, 4e-3])
    assert model.transfer_seconds(1, "gradient") == pytest.approx(0.5e-3)
    assert model.tokens(7) == 7
    with pytest.raises(ScenarioError, match="forward_ms has 2 values but stages = 3"):
        AbstractConfig(stages=3, forward_ms=[1, 2])
    with pytest.raises(ScenarioError, match=r"weight_ms must be a number in \[0, "):
        AbstractConfig(weight_ms=-1)


def test_numerics_are_refused_with_a_clear_error() -> None:
    strategy = Strategy("x", pp=2, microbatches=2)
    with pytest.raises(ScenarioError, match="set numerics = false"):
        build_plan(
            preset("toy"), AbstractConfig(stages=2), TrainingConfig(global_batch=2), strategy
        )


def _layouts() -> st.SearchStrategy:
    """Any (schedule, p, m, v) the registry accepts."""

    @st.composite
    def draw(draw_: st.DrawFn) -> tuple[str, int, int, int]:
        name = draw_(
            st.sampled_from(["naive", "gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv"])
        )
        p = draw_(st.integers(1, 4))
        v = {"interleaved": draw_(st.integers(1, 2)), "zbv": 2}.get(name, 1)
        m = draw_(st.integers(1, 6))
        if name == "interleaved":
            m = p * draw_(st.integers(1, 3))
        return name, p, m, v

    return draw()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=_layouts(),
    times=st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=3, max_size=3),
    comm=st.sampled_from([0.0, 0.1, 0.7]),
)
def test_any_valid_layout_finishes_and_conserves_time(layout, times, comm) -> None:
    name, p, m, v = layout
    get_schedule(name)(p, m, v)  # accepted by the registry
    result = _run(name, p, m, v, t=tuple(times), comm=comm)
    iteration = result["iteration_time_s"]
    for d in result["devices"]:
        total = d["compute_s"] + d["exposed_comm_s"] + d["bubble_s"]
        assert total == pytest.approx(iteration, rel=1e-12, abs=1e-15)
        assert d["compute_s"] == pytest.approx(m * sum(times) * 1e-3, rel=1e-9)

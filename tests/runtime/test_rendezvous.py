"""Blocking messages (DeepSpeed's pipeline engine): the program keeps DeepSpeed's step
order, the step meets its closed forms, and a send no receive matches is a deadlock."""

from dataclasses import replace

import pytest

from simulator.errors import DeadlockError
from simulator.experiment.metrics import summarize
from simulator.hardware import ClusterSpec, preset
from simulator.nn.abstract import AbstractConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.pipeline import parse_csv
from simulator.parallel.program import describe
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime


def _free_cluster() -> ClusterSpec:
    """Toy nodes whose links cost nothing (the abstract model sets the message times)."""
    cluster = preset("toy", nodes=2)
    link = replace(cluster.intra_node, bandwidth=float("inf"), latency=0.0)
    return replace(cluster, intra_node=link, inter_node=link)


def _step(name: str, p: int, m: int, t_f: float, t_b: float, comm: float = 0.0) -> dict:
    # the full backward is B and W back to back: W takes (almost) nothing
    model = AbstractConfig(
        stages=p, forward_ms=t_f, backward_ms=t_b, weight_ms=0.0, comm_ms=comm,
        activation_bytes=1000,
    )  # fmt: skip
    training = TrainingConfig(numerics=False, global_batch=m, steps=1)
    plan = build_plan(_free_cluster(), model, training, Strategy("x", pp=p, microbatches=m,
                                                                  schedule=name))  # fmt: skip
    return summarize(plan, Runtime(plan).run())


def test_the_program_keeps_deepspeeds_step_order() -> None:
    # TrainSchedule, p = 2, m = 2: a step sends what the step before made, then receives
    # (forward step) or receives, then sends (backward step), then computes
    training = TrainingConfig(global_batch=2, steps=1)
    strategy = Strategy("x", pp=2, microbatches=2, schedule="deepspeed")
    plan = build_plan(preset("toy"), MLPConfig(layers=2, width=4), training, strategy)
    programs = [[describe(ins) for ins in plan.worker(0, r).program] for r in range(2)]
    assert programs[0] == [
        "0F0",  # step 0
        "send activation 0/0 -> w1",  # step 1: idle, sends what step 0 made
        "0F1",  # step 2
        "recv gradient 1/0 <- w1", "send activation 0/1 -> w1", "0BW0",  # step 3
        "recv gradient 1/1 <- w1", "0BW1",  # step 5 (step 4 idle, nothing to send)
        "sync grads", "optimizer step",
    ]  # fmt: skip
    assert programs[1] == [
        "recv activation 0/0 <- w0", "1F0",  # step 1
        "1BW0",  # step 2
        "send gradient 1/0 -> w0", "recv activation 0/1 <- w0", "1F1",  # step 3
        "1BW1",  # step 4
        "send gradient 1/1 -> w0",  # step 5
        "sync grads", "optimizer step",
    ]  # fmt: skip


@pytest.mark.parametrize(("t_f", "t_b"), [(1.0, 1.0), (1.0, 3.0), (2.0, 1.0)])
def test_with_free_messages_the_lockstep_costs_what_1f1b_costs(t_f: float, t_b: float) -> None:
    # the neighbours that meet in a step swap what each needs for that step's compute:
    # step = (m+p-1)(T_F+T_B), bubble (p-1)/(m+p-1) (Narayanan et al. 2021, sec. 2.2.1)
    for p, m in [(1, 3), (2, 1), (2, 4), (3, 2), (4, 4), (4, 9), (5, 3)]:
        result = _step("deepspeed", p, m, t_f, t_b)
        assert result["iteration_time_s"] == pytest.approx((m + p - 1) * (t_f + t_b) / 1e3,
                                                           rel=1e-12), (p, m)  # fmt: skip
        assert result["bubble_fraction"] == pytest.approx((p - 1) / (m + p - 1), abs=1e-12)
        assert result["bubble_fraction_analytic"] == pytest.approx((p - 1) / (m + p - 1), abs=1e-15)


@pytest.mark.parametrize("m", [1, 2, 5])
def test_blocking_sits_through_every_message(m: int) -> None:
    # with two stages every step's meeting is on the critical path: the m activations
    # and m gradients each hold both ranks for their time c, one after the other
    t_f, t_b, c = 1.0, 3.0, 0.25
    blocking = _step("deepspeed", 2, m, t_f, t_b, comm=c)["iteration_time_s"]
    assert blocking == pytest.approx(((m + 1) * (t_f + t_b) + 2 * m * c) / 1e3, rel=1e-12)
    asynchronous = _step("1f1b", 2, m, t_f, t_b, comm=c)["iteration_time_s"]
    assert asynchronous < blocking if m > 1 else asynchronous == pytest.approx(blocking)


def test_a_send_no_receive_matches_is_reported_as_a_deadlock() -> None:
    # rank 0 sends micro-batch 0 (blocking) while rank 1 waits for micro-batch 1 first:
    # asynchronous sends run it, blocking ones wait for each other for ever
    text = "0F0,0F1,0BW0,0BW1\n1F1,1F0,1BW0,1BW1\n"
    training = TrainingConfig(global_batch=2, steps=1)
    strategy = Strategy("x", pp=2, microbatches=2, schedule="file:mine.csv")
    model = MLPConfig(layers=2, width=4)
    schedule = parse_csv(text, "file:mine.csv")
    Runtime(build_plan(preset("toy"), model, training, strategy, schedule)).run()
    blocking = build_plan(
        preset("toy"), model, training, strategy, replace(schedule, blocking=True)
    )
    sender = "waits for worker 1 to receive the activation of stage 0, micro-batch 0"
    receiver = "waits for the activation of stage 0, micro-batch 1 from worker 0"
    with pytest.raises(DeadlockError, match=rf"{sender}.*{receiver}"):
        Runtime(blocking).run()

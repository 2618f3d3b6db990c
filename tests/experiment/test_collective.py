"""Timing a collective on its own: inputs, traced messages, closed forms, errors."""

from __future__ import annotations

import pytest

from simulator import LayoutError, ScenarioError, comm, preset
from simulator.comm import closed_forms
from simulator.engine import Engine
from simulator.engine.trace import COMM
from simulator.experiment.collective import (
    collective_inputs,
    predicted_time,
    simulate_collective,
    time_collective,
)
from tests.comm_helpers import ALPHA, BANDWIDTH, switch


def test_inputs_are_float32_when_the_size_allows_it() -> None:
    assert collective_inputs("all_reduce", 3, 40)[0].dtype == "float32"
    assert collective_inputs("all_reduce", 3, 41)[0].nbytes == 41
    pieces = collective_inputs("all_gather", 4, 10)
    assert [x.nbytes for x in pieces] == [3, 3, 2, 2]


def test_every_message_is_traced_with_step_bytes_and_link() -> None:
    cluster = preset("dgx-a100", nodes=2)
    engine = Engine(cluster)
    end = simulate_collective(engine, "all_reduce", "ring", tuple(range(16)), 16 * 8 * 4 * 10)
    events = [e for e in engine.trace.events if e.lane == COMM]
    layout = comm.GroupLayout.of(cluster, tuple(range(16)))
    inputs = collective_inputs("all_reduce", 16, 16 * 8 * 4 * 10)
    _, plan = comm.collective("all_reduce", inputs, "ring", layout=layout)
    assert plan.channels == 8  # one ring per NIC
    assert len(plan.transfers) == 8 * 30 * 16
    assert len(events) == 2 * len(plan.transfers)  # a send and a receive each
    for e in events:
        assert e.cat == "all_reduce"
        assert e.args["op"] == "all_reduce" and e.args["algorithm"] == "ring"
        assert 0 <= e.args["step"] < 30
        assert e.args["bytes"] == 40  # a chunk of a channel's share
        crosses = (e.device < 8) != (e.args["peer"] < 8)
        assert e.args["link"] == ("inter" if crosses else "intra")
    assert max(e.end for e in events) == end


@pytest.mark.parametrize(("op", "algorithm"), sorted(closed_forms.FLAT))
def test_predicted_time_matches_the_simulation_on_one_switch(op: str, algorithm: str) -> None:
    for p in (2, 4, 8):
        n = 4 * p * 512
        cluster = switch(p)
        simulated = time_collective(op, algorithm, cluster, p, n)
        assert predicted_time(op, algorithm, cluster, p, n) == pytest.approx(simulated, rel=1e-9)


def test_predicted_time_across_nodes_only_for_hierarchical() -> None:
    cluster = preset("dgx-a100", nodes=2)
    assert predicted_time("all_reduce", "ring", cluster, 16, 1 << 20) is None
    assert predicted_time("all_reduce", "hierarchical", cluster, 12, 1 << 20) is None
    assert predicted_time("all_reduce", "hierarchical", cluster, 16, 1 << 20) == pytest.approx(
        time_collective("all_reduce", "hierarchical", cluster, 16, 1 << 20), rel=1e-9
    )


def test_zero_bytes_cost_only_latency() -> None:
    assert time_collective("all_reduce", "ring", switch(4), 4, 0) == pytest.approx(6 * ALPHA)


def test_bad_requests() -> None:
    with pytest.raises(LayoutError, match=r"16 devices requested but cluster 'dgx-a100' has 8"):
        time_collective("all_reduce", "ring", preset("dgx-a100"), 16, 100)
    with pytest.raises(ScenarioError, match=r"at least 0 bytes, got -1"):
        time_collective("all_reduce", "ring", switch(4), 4, -1)
    with pytest.raises(LayoutError, match=r"power-of-two"):
        predicted_time("all_reduce", "recursive", switch(6), 6, 100)


def test_bandwidth_of_the_switch_is_reached() -> None:
    n = 8 * 4 * 10**8  # large enough for latency to be under 1%
    t = time_collective("all_gather", "ring", switch(8), 8, n)
    busbw = closed_forms.busbw("all_gather", 8, n, t)
    assert 0.99 * BANDWIDTH < busbw < BANDWIDTH

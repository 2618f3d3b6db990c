"""Transfers take latency + bytes/bandwidth; a port carries one message at a time."""

import pytest

from simulator.engine import Engine
from simulator.engine.network import describe_port
from simulator.hardware import GB, single_switch

ALPHA, BW = 5e-6, 10 * GB


def engine():
    return Engine(single_switch(4, BW, ALPHA))


def test_one_transfer_takes_latency_plus_bytes_over_bandwidth():
    e = engine()
    assert e.send(0, 1, 10**6, "pp", "x") == pytest.approx(ALPHA + 10**6 / BW, rel=1e-12)


def test_two_transfers_through_one_port_queue():
    e = engine()
    one = ALPHA + 10**6 / BW
    e.send(0, 1, 10**6, "pp", "a")
    assert e.send(0, 2, 10**6, "pp", "b") == pytest.approx(2 * one, rel=1e-12)  # same out-port
    assert e.send(3, 1, 10**6, "pp", "c") == pytest.approx(2 * one, rel=1e-12)  # same in-port


def test_disjoint_ports_and_full_duplex_do_not_interact():
    e = engine()
    one = ALPHA + 10**6 / BW
    e.send(0, 1, 10**6, "pp", "a")
    assert e.send(1, 0, 10**6, "pp", "b") == pytest.approx(one)  # the other direction
    assert e.send(2, 3, 10**6, "pp", "c") == pytest.approx(one)


def test_messages_are_traced_on_both_ends_and_counted():
    e = engine()
    e.send(0, 1, 1000, "pp", "act")
    sent, received = e.trace.events
    assert (sent.device, sent.args["direction"], sent.args["peer"]) == (0, "send", 1)
    assert (received.device, received.args["direction"]) == (1, "recv")
    assert dict(e.bytes_sent) == {0: 1000} and e.comm_bytes["pp"] == 1000


def test_inter_node_route_uses_network_ports():
    from simulator.hardware import preset

    e = Engine(preset("dgx-a100", nodes=2))
    route = e.network.route(0, 8)
    assert route.kind == "inter" and describe_port(route.out_port) == "device 0 inter out"
    assert describe_port(route.in_port) == "device 8 inter in"
    assert e.network.route(0, 1).kind == "intra"

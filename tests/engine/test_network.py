"""Transfers take latency + bytes/bandwidth; a port carries one message of a stream at a
time, and streams share it."""

import numpy as np
import pytest

from simulator.engine import Engine
from simulator.engine.network import describe_port
from simulator.engine.streams import lane, lanes_of, shared, stream_of
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


def test_streams_share_a_port_instead_of_queueing():
    # a gradient bucket's message holds device 0's out-port for 10 transfers' worth; a
    # pipeline message through that port runs beside it at half the bandwidth
    e = engine()
    one = ALPHA + 10**6 / BW
    bucket = e.send(0, 1, 10 * 10**6, "dp", "bucket")
    assert bucket == pytest.approx(ALPHA + 10 * 10**6 / BW)
    assert e.send(0, 2, 10**6, "pp", "act") == pytest.approx(2 * one, rel=1e-12)
    # what is booked keeps its end; the same stream still queues
    assert e.send(0, 3, 10**6, "dp", "next bucket") == pytest.approx(bucket + one, rel=1e-12)


def test_sharing_lasts_only_while_both_run():
    # a 1-unit message beside another stream busy for 0.5 more: 0.5 shared, then alone
    assert shared(0.0, 1.0, 0.5) == pytest.approx(1.5)
    assert shared(0.0, 1.0, 3.0) == pytest.approx(2.0)  # shared all along: twice as long
    assert shared(2.0, 1.0, 1.0) == 3.0  # the other stream was done: alone
    assert len({stream_of(k) for k in ("tp", "pp", "dp", "tied", "other")}) == 4


def test_a_collective_shares_the_ports_another_stream_holds():
    from simulator import comm
    from simulator.ops.arrays import ShapeArray

    e = engine()
    xs = [ShapeArray((4 * 10**5,), "float32")] * 4
    _, plan = comm.collective("all_reduce", xs, "ring")
    alone = Engine(single_switch(4, BW, ALPHA)).network.time_plan(plan, (0, 1, 2, 3), 0.0)
    e.send(0, 1, 10**8, "pp", "a long pipeline message")
    beside = e.network.time_plan(plan, (0, 1, 2, 3), 0.0, stream=stream_of("dp"))
    # every message through device 0's out-port or device 1's in-port shares them; no
    # message waits for the pipeline message to end
    slowest = max(end for _, end in beside)
    assert max(end for _, end in alone) < slowest < 2 * max(end for _, end in alone) + 1e-9
    assert slowest < 10**8 / BW


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


def test_devices_that_share_a_nic_share_its_bandwidth():
    """4 NICs for 8 GPUs: GPUs 0 and 1 leave their node through NIC 0."""
    from simulator.hardware import preset

    shared = Engine(preset("dgx-a100", nodes=2).with_nics(4))
    own = Engine(preset("dgx-a100", nodes=2))
    one = own.network.route(0, 8).seconds(10**6)
    for e in (shared, own):
        e.send(0, 8, 10**6, "pp", "a")
    assert shared.send(1, 9, 10**6, "pp", "b") == pytest.approx(2 * one, rel=1e-12)
    assert own.send(1, 9, 10**6, "pp", "b") == pytest.approx(one, rel=1e-12)
    # NVLink is still every device's own
    assert shared.send(1, 2, 10**6, "pp", "c") == pytest.approx(
        shared.network.route(1, 2).seconds(10**6), rel=1e-12
    )
    assert describe_port(shared.network.route(1, 9).out_port) == "device 0 inter out"
    assert describe_port(shared.network.route(3, 9).in_port) == "device 8 inter in"


def test_ports_of_device_list_its_nvlink_and_its_nic():
    from simulator.hardware import preset

    net = Engine(preset("dgx-a100", nodes=2).with_nics(2)).network
    names = [describe_port(p) for p in net.ports_of_device(13)]
    assert names == ["device 13 intra out", "device 13 intra in", "device 12 inter out",
                     "device 12 inter in"]  # fmt: skip
    # every port a device's traffic can use is among them
    for dst in (0, 12, 14):
        route = net.route(13, dst)
        assert {route.out_port} <= set(net.ports_of_device(13))
    assert set(net.ports_of_device(12)) & set(net.ports_of_device(13)) == set(
        net.ports_of_device(13)[2:]
    )


def test_mirrored_nic_ports_catch_up_with_their_twins():
    from simulator.hardware import preset

    e = Engine(preset("dgx-a100", nodes=4).with_nics(4))
    net = e.network
    end = e.send(0, 8, 10**6, "pp", "twin's traffic")  # devices 0 and 8 ...
    net.fold({16: 0, 24: 8})  # ... stand for 16 and 24
    own = {
        q: end
        for d in (0, 8)
        for p in net.ports_of_device(d)
        for q in lanes_of(p)
        if net.free_at[q] == end
    }
    assert len(own) == 2  # the pipeline lanes of device 0's NIC out and device 8's NIC in
    net.catch_up((16, 24), own)
    for mirrored, twin in ((16, 0), (24, 8)):
        for mine, theirs in zip(
            net.ports_of_device(mirrored), net.ports_of_device(twin), strict=True
        ):
            for a, b in zip(lanes_of(mine), lanes_of(theirs), strict=True):
                assert net.free_at[a] == net.free_at[b]
    assert net.free_at[lane(net.nic_port(16, 0), stream_of("pp"))] == end


def test_vectors_and_one_by_one_book_alike(monkeypatch):
    """Large rounds are booked as numpy vectors, small ones message by message;
    on busy ports, with channels and shared NICs, both give the same times."""
    from simulator import comm
    from simulator.engine import booking
    from simulator.hardware import preset
    from simulator.ops.arrays import ShapeArray

    cluster = preset("dgx-a100", nodes=8).with_nics(4)
    devices = tuple(range(64))
    layout = comm.GroupLayout.of(cluster, devices)
    xs = [ShapeArray((64 * 8 * 100 + 3,), "float32")] * 64
    _, plan = comm.collective("all_reduce", xs, "ring", layout=layout)

    def book(threshold: int) -> list[tuple[float, float]]:
        monkeypatch.setattr(booking, "_VECTOR_MIN", threshold)
        e = Engine(cluster)
        e.send(5, 40, 10**7, "pp", "in the way")
        return e.network.time_plan(plan, devices, 1e-6)

    np.testing.assert_allclose(np.array(book(1)), np.array(book(10**9)), rtol=1e-12)

import pytest

from simulator.errors import LayoutError
from simulator.parallel.mesh import Mesh


@pytest.mark.parametrize("order", ["tp-cp-dp-pp", "tp-pp-dp", "dp-tp-pp", "pp-dp-tp"])
def test_groups_of_each_axis_partition_the_devices(order):
    mesh = Mesh(dp=2, tp=4, pp=2, order=order)
    for axis in ("dp", "tp", "pp"):
        groups = mesh.groups(axis)
        flat = sorted(d for g in groups for d in g)
        assert flat == list(range(16))
    for d in range(16):
        assert mesh.device(**mesh.coords(d)) == d


def test_default_order_keeps_tensor_parallel_ranks_adjacent():
    mesh = Mesh(dp=2, tp=4, pp=2)
    assert mesh.groups("tp")[0] == [0, 1, 2, 3]
    assert mesh.group("dp") == [0, 4] and mesh.group("pp") == [0, 8]
    assert Mesh(dp=2, tp=4, pp=2, order="tp-pp-dp").group("pp") == [0, 4]


def test_bad_orders_and_sizes():
    with pytest.raises(LayoutError, match="must name each of tp, dp and pp once"):
        Mesh(order="tp-dp")
    with pytest.raises(LayoutError, match="dp must be at least 1"):
        Mesh(dp=0)

"""Everything the package says it exports is there."""

import simulator


def test_every_exported_name_exists():
    missing = [name for name in simulator.__all__ if not hasattr(simulator, name)]
    assert not missing


def test_describe_mesh_names_the_links_of_every_group():
    lines = simulator.describe_mesh(
        simulator.Mesh(dp=2, tp=4, pp=2), simulator.preset("dgx-a100", nodes=2)
    )
    assert "  devices [0, 1, 2, 3]: inside node 0" in lines
    assert "  devices [0, 8]: across nodes 0, 1 (network links)" in lines
